"""Structured logs: JSON lines carrying the job and batch ids bound around a task, and the
text format naming them too."""

from __future__ import annotations

import json
import logging

import pytest

from shared.logs import bound, handler


def capture(log_format: str, emit: object) -> str:
    import io

    out = handler(log_format)
    buffer = io.StringIO()
    out.setStream(buffer)  # type: ignore[attr-defined]
    logger = logging.getLogger(f"assetrag.test.{log_format}")
    logger.addHandler(out)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        emit(logger)  # type: ignore[operator]
    finally:
        logger.removeHandler(out)
    return buffer.getvalue()


def test_json_lines_carry_the_bound_job_and_batch() -> None:
    def emit(logger: logging.Logger) -> None:
        with bound("job-1", "b3"):
            logger.info("stored %d", 8, extra={"images": 8})
        logger.warning("outside")

    first, second = map(json.loads, capture("json", emit).splitlines())
    assert first["message"] == "stored 8" and first["level"] == "INFO"
    assert (first["job_id"], first["batch_id"], first["images"]) == ("job-1", "b3", 8)
    assert first["logger"] == "assetrag.test.json" and first["time"].endswith("+00:00")
    assert (second["job_id"], second["batch_id"]) == (None, None)


def test_json_lines_keep_the_traceback() -> None:
    def emit(logger: logging.Logger) -> None:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")

    [line] = capture("json", emit).splitlines()
    assert "ValueError: boom" in json.loads(line)["exc_info"]


@pytest.mark.parametrize("ids", [("job-2", None), ("job-2", "b0")])
def test_text_lines_name_the_ids(ids: tuple[str, str | None]) -> None:
    def emit(logger: logging.Logger) -> None:
        with bound(*ids):
            logger.info("hello")

    text = capture("text", emit)
    assert "job=job-2" in text and text.rstrip().endswith("hello")
    assert ("batch=b0" in text) == (ids[1] is not None)


def test_a_library_with_its_own_handler_writes_through_ours() -> None:
    from shared.milvus.schema import pymilvus

    pymilvus()  # importing pymilvus installs a text handler on its loggers
    logger = logging.getLogger("pymilvus")
    assert logger.propagate and not logger.handlers
