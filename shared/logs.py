"""Log set-up for every process: text lines for people, or one JSON object per line
(`ASSETRAG_LOG_FORMAT=json`) for a log pipeline, each carrying the job and batch it is about.

The job and batch ids live in context variables that the worker sets around each task
(`bound`), so any log call inside a task, in any module, carries them without passing them
down.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

JOB_ID: ContextVar[str | None] = ContextVar("assetrag_job_id", default=None)
BATCH_ID: ContextVar[str | None] = ContextVar("assetrag_batch_id", default=None)
TEXT_FORMAT = "[%(asctime)s %(levelname)s %(name)s%(ids)s] %(message)s"
# LogRecord attributes that are not extra fields a caller passed.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "job_id",
    "batch_id",
    "ids",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colours
}


@contextmanager
def bound(job_id: str | None, batch_id: str | None = None) -> Iterator[None]:
    """Log records made inside carry these ids."""
    job_token = JOB_ID.set(job_id)
    batch_token = BATCH_ID.set(batch_id)
    try:
        yield
    finally:
        BATCH_ID.reset(batch_token)
        JOB_ID.reset(job_token)


class ContextIds(logging.Filter):
    """Puts the current job and batch ids on every record (None outside a task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = getattr(record, "job_id", None) or JOB_ID.get()
        batch = getattr(record, "batch_id", None) or BATCH_ID.get()
        record.__dict__.update(
            job_id=job,
            batch_id=batch,
            ids=(f" job={job}" if job else "") + (f" batch={batch}" if batch else ""),
        )
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, job_id, batch_id, process,
    any `extra` fields, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "job_id": getattr(record, "job_id", None),
            "batch_id": getattr(record, "batch_id", None),
            "process": record.processName,
            "pid": record.process,
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def handler(log_format: str) -> logging.Handler:
    out = logging.StreamHandler(sys.stderr)
    out.addFilter(ContextIds())
    out.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    return out


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    """The root logger writes to stderr in this format; everything else propagates to it."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler(log_format))
    root.setLevel(level)
    # Warnings (Celery's, the libraries') become log records too, so a JSON log stays JSON.
    logging.captureWarnings(True)


def adopt_loggers(prefix: str) -> None:
    """A library that installs handlers of its own (pymilvus does, when imported) writes
    through the root handler instead, in this process's format."""
    for name in list(logging.root.manager.loggerDict):
        if name == prefix or name.startswith(prefix + "."):
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
