"""The CLI's API client against ``httpx.MockTransport``, and the commands over a fake API.

These are unit tests: the end-to-end CLI tests run against the real stack elsewhere.
"""

from __future__ import annotations

import io
import json
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

import cli.main as cli_main
from cli.client import ApiError, AssetragClient, chunk_paths, parse_sse

Handler = Callable[[httpx.Request], httpx.Response]


def _png(colour: tuple[int, int, int] = (255, 0, 0), size: tuple[int, int] = (16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _client(handler: Handler, **kwargs: Any) -> AssetragClient:
    return AssetragClient("http://api.test", transport=httpx.MockTransport(handler), **kwargs)


def _multipart_files(request: httpx.Request) -> list[tuple[str, str]]:
    """(field name, filename) of each file part of a multipart request."""
    body = request.read()
    return [
        (m.group(1).decode(), m.group(2).decode())
        for m in re.finditer(
            rb'Content-Disposition: form-data; name="([^"]+)"; filename="([^"]*)"', body
        )
    ]


def _job(job_id: str = "job1", state: str = "queued", **extra: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "id": job_id,
        "kind": "embed",
        "state": state,
        "progress": {"total": 0, "succeeded": 0, "failed": 0},
        "created_at": 1767261600.0,
        "started_at": None,
        "finished_at": None,
        "result": None,
        "error": None,
        "errors": [],
    }
    job.update(extra)
    return job


# -- client ---------------------------------------------------------------------------------


def test_bearer_header_only_with_a_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": [{"name": "c", "count": 1}], "count": 1})

    assert _client(handler, api_key="k1").list_collections() == [{"name": "c", "count": 1}]
    assert _client(handler).list_collections()
    assert seen[0].headers["authorization"] == "Bearer k1"
    assert "authorization" not in seen[1].headers
    assert seen[0].url == "http://api.test/v1/collections"


def test_upload_chunks_by_count_with_files_field(tmp_path: Path) -> None:
    paths = []
    for i in range(5):
        p = tmp_path / f"img{i}.png"
        p.write_bytes(_png())
        paths.append(p)
    requests: list[list[tuple[str, str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST" and request.url.path == "/v1/uploads"
        assert request.headers["content-type"].startswith("multipart/form-data")
        parts = _multipart_files(request)
        requests.append(parts)
        return httpx.Response(
            201,
            json={"uploads": [{"upload_id": f"u-{name}", "filename": name} for _, name in parts]},
        )

    chunks: list[int] = []
    client = _client(handler, chunk_files=2)
    uploads = client.upload(paths, on_chunk=lambda chunk, records: chunks.append(len(records)))
    assert [len(r) for r in requests] == [2, 2, 1] == chunks
    assert all(field == "files" for r in requests for field, _ in r)
    assert [u["upload_id"] for u in uploads] == [f"u-img{i}.png" for i in range(5)]


def test_chunk_paths_by_bytes(tmp_path: Path) -> None:
    sizes = [40, 40, 40, 200, 10]
    paths = []
    for i, n in enumerate(sizes):
        p = tmp_path / f"f{i}"
        p.write_bytes(b"x" * n)
        paths.append(p)
    groups = list(chunk_paths(paths, max_files=10, max_bytes=100))
    assert [[p.name for p in g] for g in groups] == [["f0", "f1"], ["f2"], ["f3"], ["f4"]]


def test_error_shapes_are_parsed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/missing"):
            return httpx.Response(
                404, json={"error": {"code": "not_found", "message": "no such job"}}
            )
        if request.url.path.endswith("/fastapi"):
            return httpx.Response(422, json={"detail": [{"loc": ["body"], "msg": "bad"}]})
        return httpx.Response(502, text="Bad Gateway from proxy")

    client = _client(handler)
    with pytest.raises(ApiError) as info:
        client.get_job("missing")
    assert (info.value.status, info.value.code, info.value.message) == (
        404,
        "not_found",
        "no such job",
    )
    with pytest.raises(ApiError) as info:
        client.get_job("fastapi")
    assert info.value.status == 422 and info.value.code == "http_422"
    assert "bad" in info.value.message
    with pytest.raises(ApiError) as info:
        client.get_job("other")
    assert info.value.code == "http_502" and "Bad Gateway" in info.value.message


def test_429_is_retried_after_retry_after() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            return httpx.Response(
                429,
                headers={"Retry-After": "0"},
                json={"error": {"code": "rate_limited", "message": "slow down"}},
            )
        return httpx.Response(200, json=_job(state="completed"))

    assert _client(handler).get_job("job1")["state"] == "completed"
    assert len(calls) == 3

    calls.clear()
    with pytest.raises(ApiError) as info:
        _client(handler, max_retries=1).get_job("job1")
    assert info.value.status == 429 and info.value.code == "rate_limited"


def test_submit_bodies_and_wait_param() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json=_job())

    client = _client(handler)
    client.submit_search(
        "c", [{"text": "red shawl"}], top_k=5, filter={"a": "b"}, min_score=0.2, wait=30
    )
    client.submit_embed("c", items=[{"upload_id": "u1"}], idempotency_key="key-1")
    client.submit_embed("c", directory={"path": "/lib", "recursive": True})
    client.submit_generate(
        prompt="p", collection="c", references={"asset_ids": ["a"]}, aspect_ratio=None, wait=45
    )
    search, embed, directory, generate = seen
    assert search.url.path == "/v1/jobs/search" and search.url.params["wait"] == "30"
    assert json.loads(search.content) == {
        "collection": "c",
        "queries": [{"text": "red shawl"}],
        "top_k": 5,
        "filter": {"a": "b"},
        "min_score": 0.2,
    }
    assert json.loads(embed.content) == {"collection": "c", "items": [{"upload_id": "u1"}]}
    assert embed.headers["idempotency-key"] == "key-1" and "wait" not in embed.url.params
    assert json.loads(directory.content)["directory"] == {"path": "/lib", "recursive": True}
    assert json.loads(generate.content) == {
        "prompt": "p",
        "collection": "c",
        "references": {"asset_ids": ["a"]},
    }
    assert generate.url.params["wait"] == "30"  # capped at the server's maximum


def test_list_jobs_params_and_cancel() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/jobs":
            return httpx.Response(200, json={"data": [_job()], "count": 1, "next_cursor": "n2"})
        return httpx.Response(200, json=_job(state="cancelled"))

    client = _client(handler)
    page = client.list_jobs(kind="embed", limit=5)
    assert page["next_cursor"] == "n2" and page["data"][0]["id"] == "job1"
    assert dict(seen[0].url.params) == {"kind": "embed", "limit": "5"}
    assert client.cancel_job("job1")["state"] == "cancelled"
    assert (seen[1].method, seen[1].url.path) == ("POST", "/v1/jobs/job1/cancel")


def test_parse_sse() -> None:
    lines = [
        ": keep-alive",
        "event: progress",
        'data: {"a":',
        "data: 1}",
        "",
        "id: 7\r",
        'data: {"b": 2}\r',
        "\r",
        "retry: 100",
        "",
        'data:{"c":3}',
    ]
    assert list(parse_sse(lines)) == [
        ("progress", '{"a":\n1}'),
        ("message", '{"b": 2}'),
        ("message", '{"c":3}'),
    ]


def _sse(*jobs: dict[str, Any]) -> bytes:
    chunks = [": hello\n\n"]
    for job in jobs:
        event = "done" if job["state"] in ("completed", "failed", "cancelled") else "progress"
        chunks.append(f"event: {event}\ndata: {json.dumps(job)}\n\n")
    return "".join(chunks).encode()


def test_events_and_wait_job_follow_the_stream() -> None:
    running = _job(state="running", progress={"total": 3, "succeeded": 1, "failed": 0})
    done = _job(state="completed", progress={"total": 3, "succeeded": 2, "failed": 1})

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/jobs/job1/events"
        assert request.headers["accept"] == "text/event-stream"
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=_sse(running, done)
        )

    client = _client(handler)
    assert [j["state"] for j in client.events("job1")] == ["running", "completed"]
    updates: list[dict[str, Any]] = []
    final = client.wait_job("job1", on_progress=updates.append)
    assert final == done and [u["state"] for u in updates] == ["running", "completed"]


def test_wait_job_falls_back_to_long_polling() -> None:
    states = iter(["running", "running", "failed"])
    polls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "x"}})
        polls.append(request)
        return httpx.Response(200, json=_job(state=next(states)))

    updates: list[str] = []
    final = _client(handler).wait_job("job1", on_progress=lambda j: updates.append(j["state"]))
    assert final["state"] == "failed" and updates == ["running", "running", "failed"]
    assert all(p.url.params["wait"] == "10" for p in polls)


def test_wait_job_polls_when_the_stream_ends_early() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, content=_sse(_job(state="running")))
        return httpx.Response(200, json=_job(state="completed"))

    assert _client(handler).wait_job("job1")["state"] == "completed"


def test_content_relative_url() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/collections/c/assets/a1/content"
        assert request.headers["authorization"] == "Bearer k"
        return httpx.Response(200, content=b"PNGDATA", headers={"content-type": "image/png"})

    client = _client(handler, api_key="k")
    assert client.content("/v1/collections/c/assets/a1/content") == b"PNGDATA"
    assert client.content("http://api.test/v1/collections/c/assets/a1/content") == b"PNGDATA"


# -- commands over a fake API -------------------------------------------------------------


class FakeApi:
    """An in-memory stand-in for the HTTP API, enough to drive every command."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.upload_batches: list[list[str]] = []
        self.submitted: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.final: dict[str, dict[str, Any]] = {}
        self.refuse_names: set[str] = set()
        self.image = _png((0, 128, 0), (40, 20))
        self.events = True

    def finish_as(self, kind: str, **final: Any) -> None:
        self.final[kind] = final

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/v1/uploads":
            names = [name for _, name in _multipart_files(request)]
            self.upload_batches.append(names)
            bad = [n for n in names if n in self.refuse_names]
            if bad:
                return httpx.Response(
                    415, json={"error": {"code": "unsupported", "message": f"{bad[0]} refused"}}
                )
            return httpx.Response(
                201, json={"uploads": [{"upload_id": f"up-{n}", "filename": n} for n in names]}
            )
        m = re.fullmatch(r"/v1/jobs/(embed|search|generate)", path)
        if m:
            kind = m.group(1)
            body = json.loads(request.content)
            self.submitted[kind] = body
            job_id = f"{kind}-job"
            final = _job(job_id, kind=kind, **self.final.get(kind, {"state": "completed"}))
            self.jobs[job_id] = final
            queued = _job(job_id, kind=kind, state="queued")
            if kind in ("search", "generate") and request.url.params.get("wait"):
                return httpx.Response(200, json=final)
            return httpx.Response(202, json=queued)
        m = re.fullmatch(r"/v1/jobs/([^/]+)/events", path)
        if m:
            if not self.events:
                return httpx.Response(404, json={"error": {"code": "not_found", "message": "-"}})
            final = self.jobs[m.group(1)]
            total = final["progress"]["total"]
            running = _job(
                final["id"], state="running", progress={"total": total, "succeeded": 1, "failed": 0}
            )
            return httpx.Response(200, content=_sse(running, final))
        m = re.fullmatch(r"/v1/jobs/([^/]+)/cancel", path)
        if m:
            return httpx.Response(200, json=self.jobs[m.group(1)])
        m = re.fullmatch(r"/v1/jobs/([^/]+)", path)
        if m:
            job = self.jobs.get(m.group(1))
            if job is None:
                return httpx.Response(
                    404, json={"error": {"code": "not_found", "message": "no such job"}}
                )
            return httpx.Response(200, json=job)
        if path == "/v1/jobs":
            jobs = list(self.jobs.values())
            return httpx.Response(200, json={"data": jobs, "count": len(jobs), "next_cursor": None})
        if path.endswith("/content"):
            if "broken" in path:
                return httpx.Response(404, json={"error": {"code": "not_found", "message": "-"}})
            return httpx.Response(200, content=self.image, headers={"content-type": "image/png"})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": path}})


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    api = FakeApi()
    made: list[tuple[str, str | None]] = []

    def make_client(url: str, key: str | None) -> AssetragClient:
        made.append((url, key))
        return AssetragClient(url, api_key=key, transport=httpx.MockTransport(api))

    monkeypatch.setattr(cli_main, "make_client", make_client)
    monkeypatch.setattr(cli_main, "console", Console(width=200, highlight=False))
    monkeypatch.setattr(cli_main, "err", Console(stderr=True, width=200, highlight=False))
    api.made = made  # type: ignore[attr-defined]
    return api


runner = CliRunner()


def _run(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(cli_main.app, ["--api-url", "http://api.test", *args], env=env)


def _library(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(_png())
    (root / "B.JPG").write_bytes(_png())
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "c.webp").write_bytes(_png())
    return root


def test_ingest_folder_uploads_images_and_follows_the_job(fake: FakeApi, tmp_path: Path) -> None:
    root = _library(tmp_path)
    fake.finish_as(
        "embed",
        state="completed",
        progress={"total": 3, "succeeded": 2, "failed": 1},
        errors=[{"index": 2, "source": "c.webp", "code": "corrupt_image", "message": "bad"}],
    )
    result = _run(
        "ingest", str(root), "--collection", "art", "--wait", env={"ASSETRAG_API_KEY": "sekrit"}
    )
    assert result.exit_code == 0, result.output
    assert fake.made == [("http://api.test", "sekrit")]  # type: ignore[attr-defined]
    assert fake.upload_batches == [["B.JPG", "a.png", "c.webp"]]
    assert fake.submitted["embed"] == {
        "collection": "art",
        "items": [{"upload_id": "up-B.JPG"}, {"upload_id": "up-a.png"}, {"upload_id": "up-c.webp"}],
    }
    submit = next(r for r in fake.requests if r.url.path == "/v1/jobs/embed")
    assert submit.headers.get("idempotency-key")
    assert "embed-job" in result.output
    assert "2 succeeded, 1 failed, 3 total" in result.output
    assert "corrupt_image" in result.output and "c.webp" in result.output


def test_ingest_no_recursive_pattern_and_failed_job(fake: FakeApi, tmp_path: Path) -> None:
    root = _library(tmp_path)
    fake.finish_as("embed", state="failed", error={"code": "milvus_down", "message": "gone"})
    result = _run(
        "ingest", str(root), "-c", "art", "--no-recursive", "--pattern", "*.PNG", "--wait"
    )
    assert result.exit_code == 1, result.output
    assert fake.upload_batches == [["a.png"]]
    assert "error milvus_down: gone" in result.output


def test_ingest_skips_refused_files_and_keeps_the_rest(fake: FakeApi, tmp_path: Path) -> None:
    root = _library(tmp_path)
    fake.refuse_names = {"a.png"}
    result = _run("ingest", str(root), "-c", "art")
    assert result.exit_code == 0, result.output
    # the refused batch is retried file by file
    assert fake.upload_batches[0] == ["B.JPG", "a.png", "c.webp"]
    assert sorted(b[0] for b in fake.upload_batches[1:]) == ["B.JPG", "a.png", "c.webp"]
    assert [i["upload_id"] for i in fake.submitted["embed"]["items"]] == ["up-B.JPG", "up-c.webp"]
    assert "skipped" in result.output and "a.png" in result.output


def test_ingest_without_wait_and_missing_path(fake: FakeApi, tmp_path: Path) -> None:
    result = _run("ingest", str(tmp_path / "nope"), "-c", "art")
    assert result.exit_code == 2 and "no such file" in result.output
    (tmp_path / "empty").mkdir()
    result = _run("ingest", str(tmp_path / "empty"), "-c", "art")
    assert result.exit_code == 1 and "no images" in result.output


def test_ingest_server_paths_sends_directory(fake: FakeApi, tmp_path: Path) -> None:
    root = _library(tmp_path)
    single = root / "a.png"
    result = _run(
        "ingest", str(root), str(single), "-c", "art", "--server-paths", "--pattern", "*.png"
    )
    assert result.exit_code == 0, result.output
    assert fake.upload_batches == []
    assert fake.submitted["embed"] == {
        "collection": "art",
        "items": [{"path": str(single)}],
        "directory": {"path": str(root), "recursive": True, "pattern": "*.png"},
    }


def test_search_text_prints_a_table_and_writes_a_sheet(fake: FakeApi, tmp_path: Path) -> None:
    hits = [
        {
            "asset_id": "a" * 40,
            "score": 0.91234,
            "filename": "shawl.png",
            "source": "upload",
            "metadata": {"filename": "shawl.png", "colour": "red"},
            "content_url": "/v1/collections/art/assets/aaa/content",
        },
        {
            "asset_id": "b" * 40,
            "score": 0.5,
            "filename": "gone.png",
            "source": "upload",
            "metadata": {},
            "content_url": "/v1/collections/art/assets/broken/content",
        },
    ]
    fake.finish_as("search", state="completed", result={"results": [hits]})
    sheet = tmp_path / "out" / "sheet.png"
    result = _run(
        "search",
        "red silk shawl",
        "-c",
        "art",
        "--top-k",
        "2",
        "--filter",
        "colour=red",
        "--filter",
        "year:=2024",
        "--min-score",
        "0.1",
        "--sheet",
        str(sheet),
    )
    assert result.exit_code == 0, result.output
    assert fake.submitted["search"] == {
        "collection": "art",
        "queries": [{"text": "red silk shawl"}],
        "top_k": 2,
        "filter": {"colour": "red", "year": 2024},
        "min_score": 0.1,
    }
    assert (
        "0.912" in result.output and "shawl.png" in result.output and "colour=red" in result.output
    )
    assert "a" * 12 in result.output and "a" * 13 not in result.output
    with Image.open(sheet) as img:
        assert img.width > img.height > 0
    assert str(sheet) in result.output

    result = _run("search", "red silk shawl", "-c", "art", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == hits


def test_search_by_image_uploads_first(fake: FakeApi, tmp_path: Path) -> None:
    query = tmp_path / "q.png"
    query.write_bytes(_png())
    fake.finish_as("search", state="completed", result={"results": [[]]})
    result = _run("search", "--image", str(query), "-c", "art")
    assert result.exit_code == 0, result.output
    assert fake.upload_batches == [["q.png"]]
    assert fake.submitted["search"]["queries"] == [{"upload_id": "up-q.png"}]
    assert "no results" in result.output


def test_search_needs_exactly_one_query(fake: FakeApi, tmp_path: Path) -> None:
    result = _run("search", "-c", "art")
    assert result.exit_code == 2
    assert fake.requests == []


def test_generate_saves_numbered_images(fake: FakeApi, tmp_path: Path) -> None:
    fake.finish_as(
        "generate",
        state="completed",
        result={
            "images": [
                {
                    "content_url": "/v1/blobs/1/content",
                    "mime_type": "image/png",
                    "width": 40,
                    "height": 20,
                },
                {"content_url": "/v1/blobs/2/content", "mime_type": "image/png", "asset_id": "g2"},
            ],
            "text": "here you go",
            "references": ["r1", "r2"],
            "model": "gemini-3.1-flash-image",
        },
    )
    out = tmp_path / "out.png"
    result = _run(
        "generate",
        "a poster",
        "-c",
        "art",
        "--query",
        "red shawl",
        "--count",
        "2",
        "--aspect-ratio",
        "16:9",
        "--save",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert fake.submitted["generate"] == {
        "prompt": "a poster",
        "collection": "art",
        "references": {"query": "red shawl", "top_k": 3},
        "save_to_collection": True,
        "count": 2,
        "aspect_ratio": "16:9",
    }
    assert (tmp_path / "out-1.png").read_bytes() == fake.image
    assert (tmp_path / "out-2.png").exists() and not out.exists()
    for text in ("here you go", "r1, r2", "gemini-3.1-flash-image", "g2"):
        assert text in result.output


def test_generate_converts_to_the_requested_suffix(fake: FakeApi, tmp_path: Path) -> None:
    fake.finish_as(
        "generate",
        state="completed",
        result={
            "images": [{"content_url": "/x/content", "mime_type": "image/png"}],
            "references": [],
        },
    )
    out = tmp_path / "one.jpg"
    result = _run("generate", "p", "-c", "art", "--ref", "a1", "--ref", "a2", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert fake.submitted["generate"]["references"] == {"asset_ids": ["a1", "a2"]}
    with Image.open(out) as img:
        assert img.format == "JPEG"


def test_generate_failure_and_usage(fake: FakeApi) -> None:
    fake.finish_as("generate", state="failed", error={"code": "blocked", "message": "SAFETY"})
    result = _run("generate", "p", "-c", "art", "--ref", "a1")
    assert result.exit_code == 1
    assert "error blocked: SAFETY" in result.output
    result = _run("generate", "p", "-c", "art", "--ref", "a1", "--query", "q")
    assert result.exit_code == 2 and "not both" in result.output


def test_jobs_list_and_show(fake: FakeApi) -> None:
    fake.jobs["j-1"] = _job(
        "j-1",
        state="completed",
        progress={"total": 4, "succeeded": 3, "failed": 1},
        started_at=1767261600.0,
        finished_at=1767261602.5,
    )
    result = _run("jobs", "--kind", "embed", "--limit", "5")
    assert result.exit_code == 0, result.output
    assert "j-1" in result.output and "4/4 (1 failed)" in result.output and "2.5s" in result.output
    listing = next(r for r in fake.requests if r.url.path == "/v1/jobs")
    assert dict(listing.url.params) == {"kind": "embed", "limit": "5"}

    result = _run("jobs", "j-1")
    assert result.exit_code == 0 and json.loads(result.stdout)["id"] == "j-1"


def test_cancel(fake: FakeApi) -> None:
    fake.jobs["j-2"] = _job("j-2", state="cancelled")
    result = _run("cancel", "j-2")
    assert result.exit_code == 0 and "j-2 cancelled" in result.output
    assert any(r.method == "POST" and r.url.path == "/v1/jobs/j-2/cancel" for r in fake.requests)


def test_api_error_exits_2(fake: FakeApi) -> None:
    result = _run("jobs", "missing")
    assert result.exit_code == 2
    assert "error not_found: no such job" in result.output


def test_connection_error_points_at_assetrag_up(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    monkeypatch.setattr(
        cli_main,
        "make_client",
        lambda url, key: AssetragClient(url, transport=httpx.MockTransport(refuse)),
    )
    monkeypatch.setattr(cli_main, "err", Console(stderr=True, width=200))
    result = _run("jobs")
    assert result.exit_code == 2
    assert "assetrag up" in result.output and "http://api.test" in result.output


def test_stack_commands_call_cli_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    stack = types.ModuleType("cli.stack")

    def recorder(name: str, code: int | None) -> Callable[..., int | None]:
        def run(**kwargs: Any) -> int | None:
            calls.append((name, kwargs))
            return code

        return run

    stack.run_stack = recorder("stack", 3)  # type: ignore[attr-defined]
    stack.run_api = recorder("api", None)  # type: ignore[attr-defined]
    stack.run_worker = recorder("worker", 0)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cli.stack", stack)

    assert runner.invoke(cli_main.app, ["up", "--port", "9000"]).exit_code == 3
    assert runner.invoke(cli_main.app, ["api", "--host", "0.0.0.0"]).exit_code == 0
    result = runner.invoke(
        cli_main.app, ["worker", "--queues", "embed, query", "--concurrency", "2", "--pool", "solo"]
    )
    assert result.exit_code == 0
    assert calls == [
        ("stack", {"host": "127.0.0.1", "port": 9000}),
        ("api", {"host": "0.0.0.0", "port": 8000}),
        ("worker", {"queues": ["embed", "query"], "concurrency": 2, "pool": "solo"}),
    ]
