"""The front end: the `pipeline` command line and the local demo, which drive the parts."""
