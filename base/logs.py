"""One log format for every part, configured once: by the front end (``pipeline/cli.py``), from ``--log-level`` /
``--log-format`` or LOG_LEVEL / LOG_FORMAT. Parts only log (``logging.getLogger(__name__)``); none configures
logging itself.

Every line goes to stderr (stdout is for results: a ``--json`` document stays clean). ``text`` is
``%(asctime)s %(levelname)s %(name)s: %(message)s``; ``json`` is one object per line with ``time`` (UTC, ISO 8601,
milliseconds), ``level``, ``logger`` and ``message`` (plus ``exception`` when a traceback is logged).
The level applies to the project's own loggers; libraries (kafka-python, waitress, py4j, ...) log warnings and above
only, except at ``debug``, which shows everything.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from base.errors import UserError

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries whose own warnings are noise here: each failure they retry is reported once by the part that called them
# (e.g. a refused ClickHouse connection is one UserError line). Shown at debug.
QUIET_LIBRARIES = ("urllib3.connectionpool", "clickhouse_connect")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a newline in a message is escaped by JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (a test's capture, a redirected stream)."""

    _pipeline = True  # the handler configure() installed, replaced by the next call

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def check(level: str, fmt: str) -> tuple[str, str]:
    """``(level, fmt)`` normalised (lower case); an unknown one is a UserError naming the choices."""
    if str(level).lower() not in LEVELS:
        raise UserError(f"LOG_LEVEL: '{level}' is not one of {', '.join(LEVELS)}")
    if str(fmt).lower() not in FORMATS:
        raise UserError(f"LOG_FORMAT: '{fmt}' is not one of {', '.join(FORMATS)}")
    return str(level).lower(), str(fmt).lower()


def configure(level: str = "info", fmt: str = "text", own: tuple[str, ...] = ()) -> None:
    """Send every log record to stderr in ``fmt`` (text or json): the project's loggers ``own`` (top-level package
    names) at ``level``, libraries at warning and above (everything at debug). Calling it again replaces what the
    previous call set up (handlers others added, e.g. a test runner's, are left alone)."""
    level, fmt = check(level, fmt)
    number = getattr(logging, level.upper())
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_pipeline", False)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    debug = number == logging.DEBUG
    root.setLevel(number if debug else max(number, logging.WARNING))
    for name in own:
        logging.getLogger(name).setLevel(number)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET if debug else max(number, logging.ERROR))
