"""Shared plumbing of the pipeline: configuration, errors and the command-line entry point."""
