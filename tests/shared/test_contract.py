"""The shared contract: importable anywhere for free, and its shapes round-trip."""

from __future__ import annotations

import secrets
import subprocess
import sys

import pytest

from shared.contract import (
    EmbedResult,
    GenerateResult,
    Job,
    JobKind,
    JobState,
    SearchResult,
    asset_content_url,
    new_token,
    thumbnail_url,
    valid_token,
)


def test_the_contract_imports_no_outside_system() -> None:
    code = (
        "import sys, shared.contract, shared.errors, shared.keys, shared.rules\n"
        "heavy = [m for m in ('redis', 'pymilvus', 'torch', 'celery', 'PIL') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_job_result_is_read_back_as_its_kinds_shape() -> None:
    hit = {
        "asset_id": "a" * 64,
        "score": 0.5,
        "filename": "x.png",
        "source": "upload:u",
        "metadata": {},
        "content_url": asset_content_url("c", "a" * 64),
        "thumbnail_url": thumbnail_url("c", "a" * 64),
    }
    image = {
        "content_url": "/v1/jobs/j/images/0",
        "mime_type": "image/png",
        "width": 1,
        "height": 1,
    }
    shapes = [
        ({"collection": "c", "asset_ids": ["a", None]}, EmbedResult),
        ({"collection": "c"}, EmbedResult),
        ({"results": [[hit]]}, SearchResult),
        ({"images": [image], "text": "", "references": [], "model": "m"}, GenerateResult),
    ]
    for result, shape in shapes:
        job = Job.model_validate(
            {"id": "j" * 20, "kind": JobKind.embed, "state": JobState.completed, "created_at": 1.0}
            | {"result": result}
        )
        assert isinstance(job.result, shape)
        assert job.model_dump(mode="json")["result"] == shape.model_validate(result).model_dump(
            mode="json"
        )


def test_a_new_token_never_begins_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # `assetrag jobs -x…` reads as an option: one id in 64 used to break the CLI.
    drawn = iter(["-leading-dash-0000000000", "plain-id-000000000000000"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n: next(drawn))
    assert new_token() == "plain-id-000000000000000"


def test_new_tokens_are_valid_tokens() -> None:
    tokens = [new_token() for _ in range(2000)]
    assert all(valid_token(t) and not t.startswith("-") for t in tokens)
