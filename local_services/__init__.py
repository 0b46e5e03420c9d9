"""Local services as plain processes bound to 127.0.0.1, each with a PID file under DATA_DIR/run."""
