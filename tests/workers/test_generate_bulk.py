"""Bulk generation in one process: the real app (TestClient), the workers' plain functions run
off the real Redis queues, the real google-genai SDK against the fake Gemini (its Batch and
Files APIs included), Milvus Lite and the tiny CLIP model."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared import keys, webhooks
from shared.settings import Settings
from tests.support.fake_gemini import FakeGemini
from tests.support.http import receive_posts
from tests.support.images import make_image
from tests.support.inline import follow_batch, run_queued
from workers.background import backoff_s, deliver_due
from workers.context import WorkerContext, build_context

SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM="  # base64 of b"secret-key-for-tests"
COLLECTION = "bulk"


@pytest.fixture
def bulk_settings(settings: Settings, fake_gemini: FakeGemini) -> Settings:
    return settings.model_copy(
        update={
            "gemini_base_url": fake_gemini.base_url,
            "gemini_rpm": 0,
            "generate_batch_size": 4,
            "webhook_secret": SECRET,
            "webhook_allow_hosts": ["127.0.0.1"],
        }
    )


@pytest.fixture
def ctx(bulk_settings: Settings) -> Iterator[WorkerContext]:
    context = build_context(bulk_settings)
    yield context
    context.close()


@pytest.fixture
def client(bulk_settings: Settings) -> Iterator[TestClient]:
    from api.main import create_app

    with TestClient(create_app(bulk_settings)) as test_client:
        yield test_client


def submit(client: TestClient, **body: Any) -> dict[str, Any]:
    body.setdefault("collection", COLLECTION)
    response = client.post("/v1/jobs/generate", json=body)
    assert response.status_code == 202, response.text
    return dict(response.json())


def job(client: TestClient, job_id: str) -> dict[str, Any]:
    return dict(client.get(f"/v1/jobs/{job_id}").json())


def results(client: TestClient, job_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/jobs/{job_id}/results")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def test_interactive_items_complete_with_per_item_results(
    client: TestClient, ctx: WorkerContext, fake_gemini: FakeGemini
) -> None:
    items = [
        {"prompt": f"bulk item {i}" + (" [fail:400]" if i == 3 else ""), "metadata": {"n": i}}
        for i in range(10)
    ]
    items[5] |= {"count": 2, "aspect_ratio": "4:1", "image_size": "512"}
    created = submit(client, items=items, aspect_ratio="16:9")
    ran = run_queued(ctx)
    assert [name for name, _ in ran].count("assetrag.generate.items") == 3  # 10 items by 4
    done = job(client, created["id"])
    assert done["state"] == "completed", done
    assert done["progress"] == {"total": 10, "succeeded": 9, "failed": 1}
    [error] = done["errors"]
    assert (error["index"], error["code"]) == (3, "upstream_error")
    result = done["result"]
    assert [item["index"] for item in result["items"]] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert len(result["images"]) == 10  # item 5 made two
    five = next(item for item in result["items"] if item["index"] == 5)
    assert five["metadata"] == {"n": 5} and len(five["images"]) == 2
    # the item's own options won; the others took the request's
    ratios = {r.prompt: r.image_config for r in fake_gemini.requests_for("bulk item")}
    assert ratios["bulk item 5"] == {"aspectRatio": "4:1", "imageSize": "512"}
    assert ratios["bulk item 0"] == {"aspectRatio": "16:9"}
    for image in five["images"]:
        png = client.get(image["content_url"])
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    lines = results(client, created["id"])
    assert [line["index"] for line in lines] == list(range(10))
    assert lines[3]["status"] == "failed" and lines[3]["error"]["code"] == "upstream_error"
    assert lines[5]["status"] == "succeeded" and len(lines[5]["result"]["images"]) == 2


def test_a_batch_maps_answers_back_and_reports_a_blocked_item(
    client: TestClient, ctx: WorkerContext, fake_gemini: FakeGemini
) -> None:
    upload = client.post(
        "/v1/uploads", files=[("files", ("ref.png", io.BytesIO(make_image(3)), "image/png"))]
    ).json()["uploads"][0]
    embed = client.post(
        "/v1/jobs/embed",
        json={"collection": COLLECTION, "items": [{"upload_id": upload["upload_id"]}]},
    ).json()
    run_queued(ctx)
    [ref] = job(client, embed["id"])["result"]["asset_ids"]
    items = [{"prompt": f"batched {i}" + (" [block:prompt]" if i == 2 else "")} for i in range(6)]
    items[0]["references"] = {"asset_ids": [ref]}
    created = submit(client, items=items, mode="batch", save_to_collection=True)
    follow_batch(ctx, created["id"])
    done = job(client, created["id"])
    assert done["state"] == "completed", done
    assert done["progress"] == {"total": 6, "succeeded": 5, "failed": 1}
    assert [(e["index"], e["code"]) for e in done["errors"]] == [(2, "blocked")]
    result = done["result"]
    assert result["mode"] == "batch" and result["batch"].startswith("batches/")
    assert result["batch_state"] == "JOB_STATE_SUCCEEDED"
    assert fake_gemini.batch_requests(result["batch"]) == 6
    batched = [r for r in fake_gemini.requests if r.batch == result["batch"]]
    assert {r.prompt for r in batched} == {i["prompt"] for i in items}
    assert next(r for r in batched if r.prompt == "batched 0").reference_count == 1
    first = result["items"][0]
    assert first["references"] == [ref]
    saved = client.get(f"/v1/collections/{COLLECTION}/assets/{first['images'][0]['asset_id']}")
    lineage = saved.json()["metadata"]["lineage"]
    assert lineage["job_id"] == created["id"] and lineage["item"] == 0
    assert [line["status"] for line in results(client, created["id"])] == [
        "succeeded",
        "succeeded",
        "failed",
        "succeeded",
        "succeeded",
        "succeeded",
    ]


def test_a_large_batch_goes_as_a_file(
    bulk_settings: Settings, fake_gemini: FakeGemini, ctx: WorkerContext, client: TestClient
) -> None:
    ctx.settings = bulk_settings.model_copy(update={"gemini_batch_inline_bytes": 10})
    created = submit(client, items=[{"prompt": f"filed {i}"} for i in range(3)], mode="batch")
    follow_batch(ctx, created["id"])
    done = job(client, created["id"])
    assert done["progress"]["succeeded"] == 3, done
    name = done["result"]["batch"]
    assert fake_gemini.batches[name].from_file
    assert ctx.jobs.ledger.info(created["id"])["input"] == "file"


def test_cancelling_a_batch_job_cancels_the_gemini_batch(
    client: TestClient, ctx: WorkerContext, fake_gemini: FakeGemini
) -> None:
    created = submit(client, items=[{"prompt": "held [batch:hold]"}, {"prompt": "x"}], mode="batch")
    run_queued(ctx)
    name = ctx.jobs.ledger.info(created["id"])["name"]
    assert ctx.redis.sismember(keys.GEMINI_BATCHES, created["id"])
    assert client.post(f"/v1/jobs/{created['id']}/cancel").json()["state"] == "cancelling"
    follow_batch(ctx, created["id"])
    assert fake_gemini.batch_cancels.count(name) == 1  # the fake serves the whole session
    done = job(client, created["id"])
    assert done["state"] == "cancelled"
    assert [line["status"] for line in results(client, created["id"])] == ["cancelled"] * 2
    assert not ctx.redis.sismember(keys.GEMINI_BATCHES, created["id"])


def test_the_single_prompt_form_keeps_its_shape(client: TestClient, ctx: WorkerContext) -> None:
    created = submit(client, prompt="one poster", count=2)
    run_queued(ctx)
    done = job(client, created["id"])
    assert done["state"] == "completed"
    assert done["progress"] == {"total": 2, "succeeded": 2, "failed": 0}
    assert done["result"]["items"] is None and len(done["result"]["images"]) == 2
    [line] = results(client, created["id"])
    assert line["status"] == "succeeded" and len(line["result"]["images"]) == 2


def test_results_wait_for_the_end_and_cover_every_kind(
    client: TestClient, ctx: WorkerContext
) -> None:
    created = submit(client, prompt="not yet")
    early = client.get(f"/v1/jobs/{created['id']}/results")
    assert early.status_code == 409 and early.json()["error"]["code"] == "job_not_finished"
    run_queued(ctx)
    embed = client.post(
        "/v1/jobs/embed",
        json={"collection": COLLECTION, "items": [{"path": "/nope.png"}, {"path": "/no.png"}]},
    ).json()
    run_queued(ctx)
    lines = results(client, embed["id"])
    assert [(line["index"], line["status"]) for line in lines] == [(0, "failed"), (1, "failed")]
    assert lines[0]["error"]["code"] == "path_outside_roots"
    assert client.get("/v1/jobs/" + "x" * 24 + "/results").status_code == 404


@pytest.mark.parametrize(
    ("model", "body", "message"),
    [
        ("gemini-3.1-flash-image", {"image_size": "8K"}, None),  # outside the contract: 422
        ("gemini-3-pro-image-preview", {"image_size": "512"}, "image_size 512"),
        ("gemini-3-pro-image-preview", {"aspect_ratio": "1:8"}, "aspect_ratio 1:8"),
        ("gemini-2.5-flash-image", {"image_size": "2K"}, "makes one size"),
        ("gemini-2.5-flash-image", {"references": {"query": "x", "top_k": 4}}, "at most 3"),
    ],
)
def test_options_the_model_does_not_take_are_refused_at_submit(
    bulk_settings: Settings, model: str, body: dict[str, Any], message: str | None
) -> None:
    from api.main import create_app

    settings = bulk_settings.model_copy(update={"gemini_model": model})
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/jobs/generate",
            json={"collection": COLLECTION, "items": [{"prompt": "a"}, {"prompt": "b", **body}]},
        )
    assert response.status_code == 422, response.text
    if message is not None:
        error = response.json()["error"]
        assert error["code"] == "option_not_supported"
        assert message in error["message"] and error["message"].startswith("item 1:")


def test_submit_refusals(client: TestClient, bulk_settings: Settings) -> None:
    fifteen = {"asset_ids": [f"{i:064x}" for i in range(15)]}
    too_many_refs = client.post(
        "/v1/jobs/generate", json={"collection": COLLECTION, "prompt": "p", "references": fifteen}
    )
    assert too_many_refs.status_code == 422
    assert "14" in too_many_refs.json()["error"]["message"]
    both = client.post(
        "/v1/jobs/generate",
        json={"collection": COLLECTION, "prompt": "p", "items": [{"prompt": "q"}]},
    )
    assert both.status_code == 422
    over = bulk_settings.max_generate_items + 1
    many = client.post(
        "/v1/jobs/generate",
        json={"collection": COLLECTION, "items": [{"prompt": "q"}] * over},
    )
    assert many.status_code == 413 and many.json()["error"]["code"] == "too_many_items"
    private = client.post(
        "/v1/jobs/generate",
        json={"collection": COLLECTION, "prompt": "p", "webhook": "http://10.1.2.3/hook"},
    )
    assert private.status_code == 422 and private.json()["error"]["code"] == "forbidden_address"


def test_webhooks_need_a_secret(settings: Settings) -> None:
    from api.main import create_app

    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/jobs/generate",
            json={"collection": COLLECTION, "prompt": "x", "webhook": "https://example.com/h"},
        )
    # a request this server will never take: a 4xx, not a 5xx that clients retry for ever
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "webhook_not_configured"


def test_a_finished_job_posts_one_signed_webhook_retried_until_taken(
    client: TestClient, ctx: WorkerContext
) -> None:
    # the receiver fails the first attempt, then takes the next
    with receive_posts(lambda n: 500 if n == 1 else 204) as (url, received):
        created = submit(client, prompt="hooked", webhook=f"{url}/hook")
        run_queued(ctx)
        assert [ok for _, ok in deliver_due(ctx)] == [False]
        due = ctx.redis.zscore(keys.WEBHOOKS_DUE, created["id"])
        assert due is not None and due > time.time()
        assert deliver_due(ctx, now=due + 1) == [(created["id"], True)]
        assert deliver_due(ctx, now=time.time() + 3600) == []  # delivered: never again
    assert len(received) == 2
    first, second = received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"msg_{created['id']}"
    assert webhooks.verify(SECRET, second.headers, second.body)
    assert not webhooks.verify(SECRET, second.headers, second.body + b" ")
    assert not webhooks.verify("whsec_b3RoZXI=", second.headers, second.body)
    event = json.loads(second.body)
    assert event["type"] == "job.completed"
    assert event["data"]["id"] == created["id"] and event["data"]["state"] == "completed"


def test_signatures_follow_the_standard_webhooks_example() -> None:
    # the specification's own test vector (standard-webhooks, libraries/python tests)
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = webhooks.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_webhook_backoff_grows_and_is_bounded() -> None:
    assert 1 <= backoff_s(1) <= 2
    assert backoff_s(4) > backoff_s(1)
    assert backoff_s(50) <= 601


def test_a_job_cancelled_while_its_batch_is_sent_cancels_the_batch(
    client: TestClient,
    ctx: WorkerContext,
    fake_gemini: FakeGemini,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batches = ctx.batches()
    send = batches.create
    ids: list[str] = []

    def send_then_cancel(requests: Any, display_name: str, **options: Any) -> tuple[str, bool]:
        made = send(requests, display_name, **options)
        assert client.post(f"/v1/jobs/{ids[0]}/cancel").json()["state"] == "cancelling"
        return made

    monkeypatch.setattr(batches, "create", send_then_cancel)
    ids.append(submit(client, items=[{"prompt": "late"}], mode="batch")["id"])
    run_queued(ctx)
    done = job(client, ids[0])
    assert done["state"] == "cancelled"
    [name] = [n for n, b in fake_gemini.batches.items() if b.display_name == f"assetrag-{ids[0]}"]
    assert name in fake_gemini.batch_cancels
    assert not ctx.redis.sismember(keys.GEMINI_BATCHES, ids[0])


def test_answers_that_cannot_be_read_are_read_again_later(
    client: TestClient, ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.contract import ErrorCode
    from shared.gemini import GenerationError

    batches = ctx.batches()
    read = batches.results
    calls: list[str] = []

    def flaky(name: str, keys_: list[str]) -> Any:
        calls.append(name)
        if len(calls) == 1:
            raise GenerationError(ErrorCode.upstream_error, "download failed", status=503)
        return read(name, keys_)

    monkeypatch.setattr(batches, "results", flaky)
    created = submit(client, items=[{"prompt": "patient"}], mode="batch")
    follow_batch(ctx, created["id"])
    done = job(client, created["id"])
    assert done["state"] == "completed" and done["progress"]["succeeded"] == 1, done
    assert len(calls) == 2


def test_a_redelivered_first_task_sends_no_second_batch(
    client: TestClient, ctx: WorkerContext, fake_gemini: FakeGemini
) -> None:
    from shared.contract import GenerateRequest
    from workers.generate_batch import submit_batch

    created = submit(client, items=[{"prompt": "once"}, {"prompt": "only"}], mode="batch")
    run_queued(ctx)
    name = ctx.jobs.ledger.info(created["id"])["name"]
    request = GenerateRequest.model_validate(ctx.jobs.request(created["id"]))
    assert submit_batch(ctx, created["id"], request) == name  # as a redelivery would
    mine = [b for b in fake_gemini.batches.values() if b.display_name.endswith(created["id"])]
    assert len(mine) == 1
    follow_batch(ctx, created["id"])
    assert job(client, created["id"])["progress"]["succeeded"] == 2


def test_a_redelivered_group_resends_only_the_items_a_crash_lost(
    client: TestClient, ctx: WorkerContext, fake_gemini: FakeGemini
) -> None:
    """Item 0 was answered and recorded before the crash; item 1 was claimed and sent, and its
    answer lost; item 2 had not started. The group's task, delivered again, sends item 1 (its
    attempt 2) and item 2, never item 0; usage counts every call, the lost one too."""
    from shared.contract import GenerateRequest
    from shared.gemini.pricing import price_per_image
    from shared.tasks import GENERATE_ITEMS
    from tests.support.inline import take
    from workers.generate import run_item
    from workers.tasks import HANDLERS

    ctx.encoder()  # a worker has loaded the model: its dimension is known
    made = client.post("/v1/collections", json={"name": "paid"})
    assert made.status_code in (200, 201), made.text
    items = [{"prompt": f"paid once {n}"} for n in range(3)]
    created = submit(client, collection="paid", items=items, save_to_collection=True)
    job_id = created["id"]
    [(name, args)] = take(ctx)
    HANDLERS[name](ctx, *args)  # the plan: one group of three items
    [(name, args)] = take(ctx)
    assert name == GENERATE_ITEMS and args[2] == [0, 1, 2]
    # the first delivery, up to the crash
    assert ctx.jobs.start_work(job_id, args[1], "dead-worker")
    request = GenerateRequest.model_validate(ctx.jobs.request(job_id))
    run_item(ctx, ctx.scoped(None), job_id, request, 0, {})
    assert ctx.jobs.claims.claim(job_id, 1) == 1  # sent; the answer died with the worker
    # delivered again
    HANDLERS[name](ctx, *args)
    run_queued(ctx)
    done = job(client, job_id)
    assert done["state"] == "completed", done
    assert [len(fake_gemini.requests_for(f"paid once {n}")) for n in range(3)] == [1, 1, 1]
    by_index = {item["index"]: item for item in done["result"]["items"]}
    assert [by_index[n]["attempts"] for n in range(3)] == [1, 2, 1]
    price = price_per_image("gemini-3.1-flash-image", None, batch=False)
    assert price is not None
    assert by_index[1]["usage"] == {
        "calls": 2,
        "images_returned": 1,
        "images_billed": 2,
        "estimated_cost_usd": round(2 * price, 6),
    }
    usage = done["result"]["usage"]
    assert (usage["calls"], usage["images_returned"], usage["images_billed"]) == (4, 3, 4)
    assert usage["estimated_cost_usd"] == pytest.approx(4 * price)
    lines = results(client, job_id)
    assert [line["result"]["attempts"] for line in lines] == [1, 2, 1]
    # each image saved once, its asset id the one its item reports
    saved = [image["asset_id"] for item in done["result"]["items"] for image in item["images"]]
    assert len(set(saved)) == 3
    assert client.get("/v1/collections/paid").json()["count"] == 3
    for asset_id in saved:
        assert client.get(f"/v1/collections/paid/assets/{asset_id}").status_code == 200


def test_a_redelivered_single_prompt_is_not_paid_twice(
    client: TestClient, ctx: WorkerContext, fake_gemini: FakeGemini
) -> None:
    from tests.support.inline import take
    from workers.tasks import HANDLERS

    created = submit(client, prompt="single paid once", count=2)
    [(name, args)] = take(ctx)
    HANDLERS[name](ctx, *args)
    HANDLERS[name](ctx, *args)  # delivered again after it ran: the job has ended
    run_queued(ctx)
    done = job(client, created["id"])
    assert done["state"] == "completed", done
    assert len(fake_gemini.requests_for("single paid once")) == 2
    assert done["result"]["usage"]["calls"] == 2
    assert done["result"]["usage"]["images_billed"] == 2
