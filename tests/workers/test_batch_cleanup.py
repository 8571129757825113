"""Clean ends for Gemini batches, through the workers' functions against the fake Gemini (its
Batch and Files APIs): input files deleted when a batch ends, and a batch whose job no longer
wants it cancelled upstream, whatever crashed or failed in between."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared import keys
from shared.contract import ErrorCode, GenerateRequest, JobState
from shared.gemini import GenerationError
from shared.settings import Settings
from tests.support.fake_gemini import FakeGemini
from tests.support.inline import follow_batch, run_queued
from workers.context import WorkerContext, build_context
from workers.generate import run_generate
from workers.generate_batch import poll_batches, submit_batch

COLLECTION = "cleanup"


class Crash(Exception):
    """The worker dies here (nothing after this line of the task runs)."""


@pytest.fixture
def batch_settings(settings: Settings, fake_gemini: FakeGemini) -> Settings:
    # 1 byte: every batch goes as an input file
    return settings.model_copy(
        update={
            "gemini_base_url": fake_gemini.base_url,
            "gemini_rpm": 0,
            "gemini_batch_inline_bytes": 1,
        }
    )


@pytest.fixture
def ctx(batch_settings: Settings) -> Iterator[WorkerContext]:
    context = build_context(batch_settings)
    yield context
    context.close()


@pytest.fixture
def client(batch_settings: Settings) -> Iterator[TestClient]:
    from api.main import create_app

    with TestClient(create_app(batch_settings)) as test_client:
        yield test_client


def submit(client: TestClient, *prompts: str) -> str:
    body = {"collection": COLLECTION, "mode": "batch", "items": [{"prompt": p} for p in prompts]}
    response = client.post("/v1/jobs/generate", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def cancel(client: TestClient, job_id: str) -> None:
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200


def batches_of(fake: FakeGemini, job_id: str) -> list[str]:
    return [n for n, b in fake.batches.items() if b.display_name == f"assetrag-{job_id}"]


def input_files_of(fake: FakeGemini, job_id: str) -> list[str]:
    return fake.live_files(f"assetrag-{job_id}.jsonl")


def waiting(ctx: WorkerContext, job_id: str) -> bool:
    return bool(ctx.redis.sismember(keys.GEMINI_BATCHES, job_id))


def failing_once(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> list[str]:
    """`target.name` raises as a network failure would the first time, then works."""
    real: Callable[..., Any] = getattr(target, name)
    calls: list[str] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(str(args[0]) if args else "")
        if len(calls) == 1:
            raise GenerationError(ErrorCode.upstream_error, f"{name}: connection reset")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, flaky)
    return calls


def test_a_batch_leaves_no_input_file_once_its_answers_are_read(
    client: TestClient, ctx: WorkerContext, fake_gemini: FakeGemini
) -> None:
    job_id = submit(client, "filed a", "filed b")
    follow_batch(ctx, job_id)
    assert ctx.jobs.state(job_id) == JobState.completed
    [name] = batches_of(fake_gemini, job_id)
    assert fake_gemini.batches[name].from_file
    info = ctx.jobs.ledger.info(job_id)
    assert info["input_file"] in fake_gemini.deleted_files and info["input_deleted"] == "1"
    assert input_files_of(fake_gemini, job_id) == []
    assert not waiting(ctx, job_id)
    # the results file stays: Gemini refuses to delete it (its id is over 40 characters), and
    # the Files API drops it after 48 hours
    results = f"files/batch-{name.removeprefix('batches/')}"
    assert results in fake_gemini.live_files()
    with pytest.raises(GenerationError) as refused:
        ctx.batches().delete_file(results)
    assert refused.value.status == 400


def test_deleting_an_input_file_again_is_fine(ctx: WorkerContext, fake_gemini: FakeGemini) -> None:
    from shared.gemini import BatchRequest

    name = ctx.batches().upload([BatchRequest("0:0", "twice", [])], "assetrag-twice")
    assert name is not None and name in fake_gemini.live_files()
    ctx.batches().delete_file(name)
    ctx.batches().delete_file(name)  # Gemini answers 403 for a file that is gone: no error
    assert name not in fake_gemini.live_files()


def test_an_input_file_not_deleted_at_collection_is_deleted_by_the_poller(
    client: TestClient,
    ctx: WorkerContext,
    fake_gemini: FakeGemini,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = failing_once(monkeypatch, ctx.batches(), "delete_file")
    job_id = submit(client, "kept a while")
    follow_batch(ctx, job_id)
    assert ctx.jobs.state(job_id) == JobState.completed
    assert len(calls) == 1 and input_files_of(fake_gemini, job_id) == [calls[0]]
    assert waiting(ctx, job_id)  # the file's name stays in the ledger, for the poller
    poll_batches(ctx)
    assert input_files_of(fake_gemini, job_id) == []
    assert not waiting(ctx, job_id)


def test_a_cancelled_job_cancels_its_batch_and_deletes_its_input_file(
    client: TestClient, ctx: WorkerContext, fake_gemini: FakeGemini
) -> None:
    job_id = submit(client, "held [batch:hold]", "other")
    run_queued(ctx)
    cancel(client, job_id)
    follow_batch(ctx, job_id)
    assert ctx.jobs.state(job_id) == JobState.cancelled
    [name] = batches_of(fake_gemini, job_id)
    assert fake_gemini.batch_cancels.count(name) == 1
    assert input_files_of(fake_gemini, job_id) == []
    assert not waiting(ctx, job_id)


def test_a_cancel_that_did_not_reach_gemini_is_sent_again_next_round(
    client: TestClient,
    ctx: WorkerContext,
    fake_gemini: FakeGemini,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id = submit(client, "held again [batch:hold]")
    run_queued(ctx)
    [name] = batches_of(fake_gemini, job_id)
    cancel(client, job_id)
    calls = failing_once(monkeypatch, ctx.batches(), "cancel")
    poll_batches(ctx)
    assert calls == [name] and name not in fake_gemini.batch_cancels
    assert "cancel_sent" not in ctx.jobs.ledger.info(job_id)
    poll_batches(ctx)
    assert calls == [name, name] and fake_gemini.batch_cancels.count(name) == 1
    assert ctx.jobs.ledger.info(job_id)["cancel_sent"] == "1"
    follow_batch(ctx, job_id)
    assert ctx.jobs.state(job_id) == JobState.cancelled
    assert fake_gemini.batch_cancels.count(name) == 1  # once taken, never sent again
    assert input_files_of(fake_gemini, job_id) == []


def test_a_job_cancelled_before_its_batch_was_recorded_has_it_cancelled_even_if_gemini_failed(
    client: TestClient,
    ctx: WorkerContext,
    fake_gemini: FakeGemini,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batches = ctx.batches()
    send = batches.create
    ids: list[str] = []

    def send_then_cancel(*args: Any, **kwargs: Any) -> tuple[str, bool]:
        made = send(*args, **kwargs)
        cancel(client, ids[0])
        return made

    monkeypatch.setattr(batches, "create", send_then_cancel)
    calls = failing_once(monkeypatch, batches, "cancel")
    ids.append(submit(client, "late [batch:hold]"))
    run_queued(ctx)  # submit_batch: await_upstream finds the job cancelled; the cancel fails
    assert ctx.jobs.state(ids[0]) == JobState.cancelled
    [name] = batches_of(fake_gemini, ids[0])
    assert calls == [name] and name not in fake_gemini.batch_cancels
    assert waiting(ctx, ids[0])  # left to the poller
    poll_batches(ctx)
    assert fake_gemini.batch_cancels.count(name) == 1
    assert input_files_of(fake_gemini, ids[0]) == []
    assert not waiting(ctx, ids[0])


@pytest.mark.parametrize("crash", ["after_create", "before_create"])
def test_a_batch_being_created_when_the_worker_died_is_never_created_twice(
    client: TestClient,
    ctx: WorkerContext,
    fake_gemini: FakeGemini,
    monkeypatch: pytest.MonkeyPatch,
    crash: str,
) -> None:
    batches = ctx.batches()
    send = batches.create

    def dies(*args: Any, **kwargs: Any) -> tuple[str, bool]:
        if crash == "after_create":
            send(*args, **kwargs)  # Gemini has the batch; its name is never recorded
        raise Crash

    monkeypatch.setattr(batches, "create", dies)
    job_id = submit(client, "crashed a", "crashed b")
    with pytest.raises(Crash):
        run_queued(ctx)
    [left] = input_files_of(fake_gemini, job_id)  # uploaded and noted before the crash
    assert len(batches_of(fake_gemini, job_id)) == (1 if crash == "after_create" else 0)
    assert "name" not in ctx.jobs.ledger.info(job_id)
    monkeypatch.setattr(batches, "create", send)
    run_generate(ctx, job_id)  # the task delivered again (the watchdog resends lost work)
    follow_batch(ctx, job_id)
    done = ctx.jobs.get(job_id)
    assert done is not None and done.state == JobState.completed
    assert done.progress.succeeded == 2, done
    [name] = batches_of(fake_gemini, job_id)
    assert done.result is not None and done.result.batch == name  # type: ignore[union-attr]
    assert input_files_of(fake_gemini, job_id) == []
    assert left in fake_gemini.deleted_files
    request = GenerateRequest.model_validate(ctx.jobs.request(job_id))
    assert submit_batch(ctx, job_id, request) == name  # delivered once more: still that one
    assert batches_of(fake_gemini, job_id) == [name]


def test_a_job_that_ended_while_its_batch_was_unrecorded_has_the_batch_cancelled(
    client: TestClient,
    ctx: WorkerContext,
    fake_gemini: FakeGemini,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batches = ctx.batches()
    send = batches.create

    def dies(*args: Any, **kwargs: Any) -> tuple[str, bool]:
        send(*args, **kwargs)
        raise Crash

    monkeypatch.setattr(batches, "create", dies)
    job_id = submit(client, "orphan [batch:hold]")
    with pytest.raises(Crash):
        run_queued(ctx)
    monkeypatch.setattr(batches, "create", send)
    [name] = batches_of(fake_gemini, job_id)
    cancel(client, job_id)
    run_generate(ctx, job_id)  # the resent task finds the job cancelling and drops its work
    assert ctx.jobs.state(job_id) == JobState.cancelled
    assert waiting(ctx, job_id) and "name" not in ctx.jobs.ledger.info(job_id)
    poll_batches(ctx)  # the ledger knows a batch was being created: found by display name
    assert fake_gemini.batch_cancels.count(name) == 1
    assert fake_gemini.batches[name].state() == "BATCH_STATE_CANCELLED"
    assert input_files_of(fake_gemini, job_id) == []
    assert not waiting(ctx, job_id)
    assert batches_of(fake_gemini, job_id) == [name]
