"""The CLI's client and commands against the real app in-process (tests/support/inline.py): real
Redis, Milvus Lite and the workers' functions, the real google-genai SDK against the fake
Gemini server. The same commands run against the whole stack in tests/integration/test_cli.py.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner, Result

from cli.app import CliContext, app
from cli.client import ApiError, AssetragClient, chunk_paths, parse_sse
from shared.contract import (
    EmbedItem,
    EmbedRequest,
    EmbedResult,
    JobKind,
    JobState,
    SearchQuery,
    SearchRequest,
    SearchResult,
    Upload,
)
from tests.support.images import make_image
from tests.support.stack import InProcess

runner = CliRunner()
Run = Callable[..., Result]


def client_for(inproc: InProcess, api_key: str | None = None) -> AssetragClient:
    return AssetragClient("http://testserver", api_key=api_key, transport=inproc.transport())


def invoke(obj: CliContext, *args: str) -> Result:
    """A command run with its consoles and API client handed in through the typer context."""
    return runner.invoke(app, ["--api-url", "http://testserver", *args], obj=obj)


@pytest.fixture
def cli(inproc: InProcess) -> InProcess:
    """The in-process app the commands (`run`) are pointed at."""
    return inproc


@pytest.fixture
def run(cli: InProcess) -> Run:
    """The commands, pointed at the in-process app, printing at a fixed width."""
    obj = CliContext(
        console=Console(width=200, highlight=False),
        err=Console(stderr=True, width=200, highlight=False),
        make_client=lambda url, key: client_for(cli, key),
    )
    return lambda *args: invoke(obj, *args)


def library(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(make_image(1))
    (root / "B.JPG").write_bytes(make_image(2, fmt="JPEG"))
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "c.webp").write_bytes(make_image(3, fmt="WEBP"))
    return root


def ingest(run: Run, tmp_path: Path, collection: str, count: int = 6) -> list[str]:
    folder = tmp_path / f"shots-{collection}"
    folder.mkdir()
    for seed in range(count):
        (folder / f"img_{seed}.png").write_bytes(make_image(100 + seed))
    result = run("ingest", str(folder), "--collection", collection, "--wait")
    assert result.exit_code == 0, result.output
    return sorted(p.name for p in folder.iterdir())


# ── the client ──────────────────────────────────────────────────────────────────────────────


def test_uploads_and_jobs_come_back_as_contract_models(inproc: InProcess, tmp_path: Path) -> None:
    paths = []
    for seed in range(3):
        paths.append(tmp_path / f"u{seed}.png")
        paths[-1].write_bytes(make_image(seed))
    with client_for(inproc) as client:
        uploads = client.upload(paths)
        assert all(isinstance(u, Upload) for u in uploads)
        assert [u.filename for u in uploads] == ["u0.png", "u1.png", "u2.png"]
        assert (
            uploads[0].content_type == "image/png" and uploads[0].bytes == paths[0].stat().st_size
        )
        request = EmbedRequest(
            collection="typed", items=[EmbedItem(upload_id=u.upload_id) for u in uploads]
        )
        job = client.wait_job(client.submit(JobKind.embed, request).id)
        assert job.state == JobState.completed and isinstance(job.result, EmbedResult)
        assert job.result.asset_ids is not None and len(job.result.asset_ids) == 3
        search = SearchRequest(collection="typed", queries=[SearchQuery(text="a shoe")], top_k=2)
        found = client.submit(JobKind.search, search, wait=20)
        assert isinstance(found.result, SearchResult) and len(found.result.results[0]) == 2
        page = client.list_jobs(kind=JobKind.embed)
        assert [summary.id for summary in page.data] == [job.id]
        [collection] = client.list_collections()
        assert (collection.name, collection.count) == ("typed", 3)
        hit = found.result.results[0][0]
        assert client.content(hit.content_url) in {p.read_bytes() for p in paths}


def test_errors_are_the_contracts_and_keys_are_sent(settings: Any, fake_gemini: Any) -> None:
    from fastapi.testclient import TestClient

    from api.main import create_app
    from tests.support.inline import SharedTransport

    keyed = settings.model_copy(update={"api_keys": ["k1:alpha"]})
    with TestClient(create_app(keyed)) as app:
        transport = SharedTransport(app._transport)
        with AssetragClient("http://testserver", api_key="k1", transport=transport) as client:
            with pytest.raises(ApiError) as missing:
                client.get_job("no-such-job-0000000000")
            assert (missing.value.status, missing.value.code) == (404, "job_not_found")
        with AssetragClient("http://testserver", transport=transport) as anonymous:
            with pytest.raises(ApiError) as refused:
                anonymous.list_jobs()
            assert (refused.value.status, refused.value.code) == (401, "unauthorized")


def test_an_answer_that_is_not_the_apis_keeps_its_status() -> None:
    response = httpx.Response(502, text="Bad Gateway from proxy")
    error = ApiError.from_response(response)
    assert (error.status, error.code, error.message) == (502, "http_502", "Bad Gateway from proxy")


def test_chunk_paths_by_count_and_bytes(tmp_path: Path) -> None:
    paths = []
    for i, n in enumerate([40, 40, 40, 200, 10]):
        paths.append(tmp_path / f"f{i}")
        paths[-1].write_bytes(b"x" * n)
    groups = list(chunk_paths(paths, max_files=10, max_bytes=100))
    assert [[p.name for p in g] for g in groups] == [["f0", "f1"], ["f2"], ["f3"], ["f4"]]
    assert [len(g) for g in chunk_paths(paths, max_files=2)] == [2, 2, 1]


def test_parse_sse() -> None:
    lines = [": keep-alive", "event: progress", 'data: {"a": 1}', "", "data: x", "data: y", ""]
    assert list(parse_sse(lines)) == [("progress", '{"a": 1}'), ("message", "x\ny")]


# ── the commands ────────────────────────────────────────────────────────────────────────────


def test_ingest_folder_follows_the_job_and_lists_bad_files(
    cli: InProcess, run: Run, tmp_path: Path
) -> None:
    root = library(tmp_path)
    (root / "broken.png").write_bytes(make_image(4)[:100])
    result = run("ingest", str(root), "--collection", "lib", "--wait")
    # the upload of broken.png is refused alone; its chunk-mates go through
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "broken.png" in result.output
    assert "3 succeeded, 0 failed, 3 total" in result.output
    assert cli.ctx.vectors.count("lib") == 3
    [job] = cli.ctx.jobs.list_jobs(None, kind=JobKind.embed)[0]
    assert cli.ctx.jobs.request(job.id)["items"][0].keys() == {"upload_id", "metadata"}


def test_ingest_no_recursive_pattern_without_wait_and_missing_path(
    run: Run, tmp_path: Path
) -> None:
    root = library(tmp_path)
    result = run("ingest", str(root), "-c", "flat", "--no-recursive", "--pattern", "*.png")
    assert result.exit_code == 0, result.output
    assert "1 item(s)" in result.output and "assetrag jobs" in result.output
    missing = run("ingest", str(tmp_path / "nope"), "-c", "flat")
    assert missing.exit_code == 2 and "no such file" in missing.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("ingest", str(empty), "-c", "flat").exit_code == 1


def test_ingest_server_paths_sends_a_directory(cli: InProcess, run: Run, tmp_path: Path) -> None:
    root = cli.settings.library_roots[0] / "served"
    root.mkdir()
    for seed in range(3):
        (root / f"s{seed}.png").write_bytes(make_image(200 + seed))
    result = run(
        "ingest", str(root), "-c", "served", "--server-paths", "--pattern", "*.png", "--wait"
    )
    assert result.exit_code == 0, result.output
    [job] = cli.ctx.jobs.list_jobs(None)[0]
    request = cli.ctx.jobs.request(job.id)
    assert request["directory"] == {"path": str(root), "pattern": "*.png", "recursive": True}
    assert cli.ctx.vectors.count("served") == 3


def test_a_job_that_stores_nothing_exits_1_with_its_errors(run: Run, tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(make_image(9))
    result = run("ingest", str(outside), "-c", "fails", "--server-paths", "--wait")
    assert result.exit_code == 1, result.output
    assert "0 succeeded, 1 failed" in result.output and "path_outside_roots" in result.output
    folder = run("ingest", str(tmp_path), "-c", "fails", "--server-paths")
    assert folder.exit_code == 2 and "error path_outside_roots" in folder.output


def test_search_by_text_prints_a_table_writes_a_sheet_and_json(run: Run, tmp_path: Path) -> None:
    names = ingest(run, tmp_path, "s1")
    sheet = tmp_path / "sheet.png"
    result = run("search", "a red shawl", "-c", "s1", "--top-k", "4", "--sheet", str(sheet))
    assert result.exit_code == 0, result.output
    assert "4 hit(s) in s1" in result.output and any(name in result.output for name in names)
    with Image.open(sheet) as image:
        assert image.width > image.height > 0
    as_json = run("search", "a red shawl", "-c", "s1", "--json", "--top-k", "3")
    hits = json.loads(as_json.stdout)
    assert len(hits) == 3 and [h["score"] for h in hits] == sorted(
        (h["score"] for h in hits), reverse=True
    )


def test_search_by_image_finds_it_first(run: Run, tmp_path: Path) -> None:
    ingest(run, tmp_path, "s2")
    probe = tmp_path / "probe.png"
    probe.write_bytes(make_image(102))
    result = run("search", "--image", str(probe), "-c", "s2", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["filename"] == "img_2.png"


def test_search_by_keyword_and_hybrid_finds_a_filename(run: Run, tmp_path: Path) -> None:
    ingest(run, tmp_path, "s3")
    keyword = run("search", "img_4.png", "-c", "s3", "--mode", "keyword", "--json")
    assert keyword.exit_code == 0, keyword.output
    hits = json.loads(keyword.stdout)
    assert hits[0]["filename"] == "img_4.png" and hits[0]["found_by"] == ["keyword"]
    hybrid = run("search", "img_4.png", "-c", "s3", "--mode", "hybrid", "--top-k", "3")
    assert hybrid.exit_code == 0, hybrid.output
    first_row = next(line for line in hybrid.output.splitlines() if line.strip().startswith("│ 1"))
    assert "img_4.png" in first_row and "keyword" in first_row


def test_duplicates_prints_clusters_and_json_lines(run: Run, tmp_path: Path) -> None:
    folder = tmp_path / "dupes"
    folder.mkdir()
    for seed in (1, 2, 3):
        (folder / f"img_{seed}.png").write_bytes(make_image(300 + seed))
    (folder / "copy.png").write_bytes(make_image(301, fmt="JPEG"))
    assert run("ingest", str(folder), "-c", "d1", "--wait").exit_code == 0
    table = run("duplicates", "-c", "d1")
    assert table.exit_code == 0, table.output
    assert "1 cluster(s), 2 of 4 assets, at similarity >= 0.95" in table.output
    lines = run("duplicates", "-c", "d1", "--threshold", "0.5", "--json")
    assert lines.exit_code == 0, lines.output
    clusters = [json.loads(line) for line in lines.stdout.splitlines()]
    assert clusters and all(c["min_similarity"] >= 0.5 for c in clusters)
    assert run("duplicates", "-c", "d1", "--threshold", "2").exit_code == 2
    missing = run("duplicates", "-c", "missing")
    assert missing.exit_code == 2 and "collection_not_found" in missing.output


def test_search_usage_errors_send_nothing(cli: InProcess, run: Run, tmp_path: Path) -> None:
    probe = tmp_path / "q.png"
    probe.write_bytes(make_image(1))
    assert run("search", "text", "--image", str(probe), "-c", "x").exit_code == 2
    moded = run("search", "--image", str(probe), "-c", "x", "--mode", "keyword")
    assert moded.exit_code == 2 and "take a TEXT query" in moded.output
    blank = run("search", "   ", "-c", "x")
    assert blank.exit_code == 2 and "text: must not be blank" in blank.output
    assert run("search", "x", "-c", "missing").exit_code == 2
    assert cli.ctx.jobs.list_jobs(None)[0] == []


def test_generate_saves_numbered_images_and_converts_suffixes(run: Run, tmp_path: Path) -> None:
    ingest(run, tmp_path, "g1", count=3)
    out = tmp_path / "out.png"
    made = run("generate", "a poster", "-c", "g1", "--query", "red", "--count", "2", "-o", str(out))
    assert made.exit_code == 0, made.output
    assert (tmp_path / "out-1.png").exists() and (tmp_path / "out-2.png").exists()
    assert "references:" in made.output and "model: gemini-3.1-flash-image" in made.output
    assert "usage: 2 Gemini call(s), 2 image(s) returned, 2 billed, about $0.134" in made.output
    jpeg = tmp_path / "one.jpg"
    converted = run("generate", "a mug", "-c", "g1", "--save", "-o", str(jpeg))
    assert converted.exit_code == 0, converted.output
    assert "(asset " in converted.output
    with Image.open(jpeg) as image:
        assert image.format == "JPEG"


def test_generate_failure_and_usage(run: Run) -> None:
    blocked = run("generate", "nope [block:prompt]", "-c", "g2")
    assert blocked.exit_code == 1 and "error blocked" in blocked.output
    twice = run("generate", "x", "-c", "g2", "--formats", "1:1,1:1")
    assert twice.exit_code == 2 and "each aspect ratio once" in twice.output
    badly = run("generate", "x", "-c", "g2", "--item", "a shawl", "--base", "not-an-id")
    assert badly.exit_code == 2 and "asset_ids" in badly.output
    bad_ratio = run("generate", "x", "-c", "g2", "--aspect-ratio", "7:3")
    assert bad_ratio.exit_code == 2 and "aspect_ratio" in bad_ratio.output


def test_generate_from_a_prompts_file_in_each_mode(
    cli: InProcess, run: Run, tmp_path: Path
) -> None:
    from workers.generate_batch import poll_batches

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        '"a red shawl"\n# a comment\n\n'
        '{"prompt": "a blue mug", "count": 2, "metadata": {"sku": "m1"}}\n'
        '{"prompt": "nope [block:prompt]"}\n'
    )
    out = tmp_path / "bulk"
    made = run("generate", "--from", str(prompts), "-c", "g3", "-o", str(out))
    assert made.exit_code == 0, made.output
    assert "2 of 3 item(s) made images, 1 failed" in made.output
    assert sorted(p.name for p in out.iterdir()) == [
        "item-0000-0.png",
        "item-0001-0.png",
        "item-0001-1.png",
        "results.jsonl",
    ]
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [line["status"] for line in lines] == ["succeeded", "succeeded", "failed"]
    assert lines[1]["result"]["metadata"] == {"sku": "m1"}

    queued = run("generate", "--from", str(prompts), "-c", "g3", "--batch", "--no-wait")
    assert queued.exit_code == 0, queued.output
    job_id = queued.stdout.strip().splitlines()[-1]
    assert cli.ctx.jobs.get(job_id).kind == JobKind.generate
    for _ in range(200):
        cli.queue.drain()
        if cli.ctx.jobs.get(job_id).finished:
            break
        poll_batches(cli.ctx)
    listed = run("results", job_id)
    assert listed.exit_code == 0, listed.output
    statuses = [json.loads(line)["status"] for line in listed.stdout.splitlines()]
    assert statuses == ["succeeded", "succeeded", "failed"]

    both = run("generate", "x", "--from", str(prompts), "-c", "g3")
    assert both.exit_code == 2 and "one of them" in both.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("# nothing\n")
    assert "holds no items" in run("generate", "--from", str(empty), "-c", "g3").output


def test_jobs_list_show_and_cancel(cli: InProcess, run: Run, tmp_path: Path) -> None:
    ingest(run, tmp_path, "j1", count=2)
    listed = run("jobs", "--kind", "embed", "--limit", "5")
    assert listed.exit_code == 0, listed.output
    [job] = cli.ctx.jobs.list_jobs(None)[0]
    assert job.id in listed.output and "2/2" in listed.output
    shown = run("jobs", job.id)
    assert shown.exit_code == 0 and json.loads(shown.stdout)["result"]["collection"] == "j1"
    finished = run("cancel", job.id)
    assert finished.exit_code == 2 and "job_finished" in finished.output
    missing = run("jobs", "no-such-job-0000000000")
    assert missing.exit_code == 2 and "error job_not_found" in missing.output
    collections = run("collections")
    assert "j1" in collections.output and "48" in collections.output


def test_connection_error_points_at_assetrag_up() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    obj = CliContext(
        err=Console(stderr=True, width=200),
        make_client=lambda url, key: AssetragClient(url, transport=httpx.MockTransport(refuse)),
    )
    result = invoke(obj, "jobs")
    assert result.exit_code == 2
    assert "assetrag up" in result.output and "http://testserver" in result.output


def test_stack_commands_call_cli_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    stack = types.ModuleType("cli.stack")

    def recorder(name: str, code: int | None) -> Callable[..., int | None]:
        def record(**kwargs: Any) -> int | None:
            calls.append((name, kwargs))
            return code

        return record

    stack.run_stack = recorder("stack", 3)  # type: ignore[attr-defined]
    stack.run_api = recorder("api", None)  # type: ignore[attr-defined]
    stack.run_worker = recorder("worker", 0)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cli.stack", stack)

    assert runner.invoke(app, ["up", "--port", "9000"]).exit_code == 3
    assert runner.invoke(app, ["api", "--host", "0.0.0.0"]).exit_code == 0
    result = runner.invoke(
        app, ["worker", "--queues", "embed, query", "--concurrency", "2", "--pool", "solo"]
    )
    assert result.exit_code == 0
    assert calls == [
        ("stack", {"host": "127.0.0.1", "port": 9000}),
        ("api", {"host": "0.0.0.0", "port": 8000}),
        (
            "worker",
            {
                "queues": ["embed", "query"],
                "concurrency": 2,
                "pool": "solo",
                "gpu": None,
                "metrics_port": None,
            },
        ),
    ]
