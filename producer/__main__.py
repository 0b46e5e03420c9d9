"""``python -m producer [flags]`` is ``pipeline produce [flags]``."""

import sys

from pipeline.cli import main

sys.exit(main(["produce", *sys.argv[1:]]))
