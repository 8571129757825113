"""Standard Webhooks signing (https://www.standardwebhooks.com): what a job's webhook carries
and how a receiver checks it.

- ``webhook-id``: the message id, the same on every retry of one message (receivers dedupe
  on it); here ``msg_<job id>``, since a job ends once.
- ``webhook-timestamp``: Unix seconds of this attempt.
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``; several
  space-separated signatures may come while a secret is rotated.
- The secret is ``whsec_`` followed by the base64 of the key's bytes, as the specification
  writes it; any other text is used as the key's bytes (UTF-8).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

from shared.contract import Job

SECRET_PREFIX = "whsec_"
# A receiver refuses messages older (or newer) than this, against replays.
TOLERANCE_S = 300


def signing_key(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    return secret.encode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return f"v1,{base64.b64encode(digest).decode()}"


def verify(secret: str, headers: dict[str, str], body: bytes, now: float | None = None) -> bool:
    """What a receiver does: the timestamp is recent and one of the signatures matches."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        message_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
        signatures = lowered["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_S:
        return False
    expected = sign(secret, message_id, timestamp, body)
    return any(hmac.compare_digest(expected, s) for s in signatures)


def message_id(job_id: str) -> str:
    return f"msg_{job_id}"


def payload(job: Job) -> bytes:
    """The body: an event type, when it was sent, and the final job."""
    event = {
        "type": f"job.{job.state.value}",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "data": json.loads(job.model_dump_json()),
    }
    return json.dumps(event, separators=(",", ":")).encode()


def headers(secret: str, job_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    msg = message_id(job_id)
    return {
        "content-type": "application/json",
        "webhook-id": msg,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg, timestamp, body),
        "user-agent": "assetrag-webhooks/1",
    }
