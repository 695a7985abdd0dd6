"""A node's log on stderr: ``--log-format text`` (for people) or ``json`` (for collectors).

Both go through the standard ``logging`` module; only the formatter
differs. ``json`` writes one JSON object per line with ``ts`` (UTC, ISO
8601, milliseconds), ``level``, ``node``, ``logger`` and ``msg``, then the
record's structured fields: what the code passed as ``extra`` (``event``,
``ballot``, ``slot``, ...; see docs/operations.md, "Monitoring"), and
``exc`` with the traceback, if any. A field never replaces one of the five
above. Newlines inside a message or a traceback are escaped, so a line is
always one record.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from .config import LOG_FORMATS

__all__ = ["JsonFormatter", "configure_logging", "text_formatter"]

#: The attributes every ``LogRecord`` has: anything else came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "node": self.node_id,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # default=str: a field of another type (a Ballot, a Path) is written as its text.
        return json.dumps(out, default=str, ensure_ascii=False)


def text_formatter(node_id: str) -> logging.Formatter:
    return logging.Formatter(f"%(asctime)s %(levelname)s node {node_id} %(name)s: %(message)s")


def configure_logging(
    level: str, log_format: str, node_id: str, stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record of the process to ``stream`` (stderr) in ``log_format``.

    Replaces the root logger's handlers (a node is the whole process) and
    returns the one installed.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format must be one of {LOG_FORMATS}, not {log_format!r}")
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(
        JsonFormatter(node_id) if log_format == "json" else text_formatter(node_id)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
