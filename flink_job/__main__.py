"""``python -m flink_job``, and the file given to ``flink run -py`` (which runs it as a plain script)."""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script by `flink run -py`: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flink_job.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
