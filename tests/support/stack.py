"""The service under test: in-process (the app and the workers' functions) or as real processes
(`RunningStack`), and the few calls every test makes against it."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from cli.stack import Stack
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output"
# The stack's Standard Webhooks secret (base64 of b"secret-key-for-tests").
# A log record's first line: "[2026-12-03 16:30:30,652 WARNING assetrag.watchdog] ..."
LOG_HEADER = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+ (\w+) ([\w.]+)\]")
WEBHOOK_SECRET = "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM="


@dataclass
class InProcess:
    """The app and the workers' functions in this process (see tests/support/inline.py)."""

    api: TestClient
    ctx: Any
    queue: Any
    settings: Settings

    def transport(self) -> httpx.BaseTransport:
        from tests.support.inline import SharedTransport

        return SharedTransport(self.api._transport)


@dataclass
class RunningStack:
    stack: Stack
    url: str
    library: Path
    client: httpx.Client
    backend: str  # "lite" or "milvus"

    def tag(self, text: str) -> str:
        """The text made this stack's own (the fake Gemini serves every stack of the run)."""
        return f"{text} ~{self.backend}"

    def logged_errors(self, lines: int = 80) -> str:
        """The last warnings, errors and tracebacks the stack's processes logged, for a
        failed test's report (CI keeps no stack logs)."""
        if self.stack.log_dir is None:
            return ""
        kept: list[str] = []
        for log in sorted(self.stack.log_dir.glob("*.log")):
            in_error = False
            for line in log.read_text(errors="replace").splitlines()[-2000:]:
                if header := LOG_HEADER.match(line):
                    level, logger = header.groups()
                    in_error = level in ("ERROR", "CRITICAL") or (
                        level == "WARNING" and logger.startswith("assetrag")
                    )
                if in_error:
                    kept.append(f"{log.stem}: {line}")
        return "\n".join(kept[-lines:])

    def wait_job(self, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.client.get(f"/v1/jobs/{job_id}", params={"wait": 10}).json()
            if job["state"] in ("completed", "failed", "cancelled"):
                return job
        raise AssertionError(f"job {job_id} did not finish in {timeout_s}s")

    def ingest(self, collection: str, files: list[tuple[str, bytes]]) -> list[str]:
        """Uploads PNGs under their names and embeds them, as a script would; the asset ids."""
        parts = [("files", (name, io.BytesIO(data), "image/png")) for name, data in files]
        uploads = self.client.post("/v1/uploads", files=parts).json()["uploads"]
        items = [{"upload_id": u["upload_id"]} for u in uploads]
        job = self.client.post("/v1/jobs/embed", json={"collection": collection, "items": items})
        done = self.wait_job(job.json()["id"])
        assert done["state"] == "completed", done
        return list(done["result"]["asset_ids"])


def upload(stack: RunningStack, blobs: list[bytes], name: str = "img") -> list[str]:
    files = [
        ("files", (f"{name}_{i}.png", io.BytesIO(b), "image/png")) for i, b in enumerate(blobs)
    ]
    response = stack.client.post("/v1/uploads", files=files)
    assert response.status_code == 201, response.text
    return [u["upload_id"] for u in response.json()["uploads"]]


def embed(stack: RunningStack, collection: str, items: list[dict], **extra: object) -> dict:
    response = stack.client.post(
        "/v1/jobs/embed", json={"collection": collection, "items": items, **extra}
    )
    assert response.status_code in (200, 202), response.text
    return stack.wait_job(response.json()["id"])


def assetrag(
    stack: RunningStack, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """The `assetrag` command, as a user runs it, against the stack's API."""
    env = {**os.environ, "ASSETRAG_API_URL": stack.url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
