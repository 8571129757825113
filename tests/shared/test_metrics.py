"""A worker process's metrics, served on its own port and scraped over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cli.stack import free_port
from shared.metrics import observe_batch, serve_metrics


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_batches_are_counted_and_timed_by_stage() -> None:
    port = free_port()
    serve_metrics("127.0.0.1", port)
    before = scrape(port)
    observe_batch(7, 1, {"read": 0.2, "encode": 1.5, "write": 0.1})
    after = scrape(port)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert moved("assetrag_embed_images_total", outcome="stored") == 7
    assert moved("assetrag_embed_images_total", outcome="failed") == 1
    assert moved("assetrag_embed_batch_stage_seconds_count", stage="encode") == 1
    assert moved("assetrag_embed_batch_stage_seconds_sum", stage="encode") == 1.5


def test_port_zero_serves_nothing_and_a_busy_port_is_logged_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    serve_metrics("127.0.0.1", 0)  # no server, no error
    port = free_port()
    serve_metrics("127.0.0.1", port)
    serve_metrics("127.0.0.1", port)  # a second worker configured onto the same port
    assert f"cannot serve metrics on 127.0.0.1:{port}" in caplog.text


def test_gemini_calls_are_timed_and_retries_counted(fake_gemini: Any) -> None:
    from shared.gemini import GeminiConfig, GeminiGenerator

    config = GeminiConfig(
        "test-key",
        "gemini-3.1-flash-image",
        base_url=fake_gemini.base_url,
        timeout_s=10,
        max_attempts=3,
        retry_budget_s=20,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
    )
    generator = GeminiGenerator(config)
    port = free_port()
    serve_metrics("127.0.0.1", port)
    before = scrape(port)
    out = asyncio.run(generator.generate(f"overloaded [fail:503x1] {uuid.uuid4()}", []))
    assert out.images
    after = scrape(port)
    ok = ("assetrag_gemini_request_seconds_count", (("outcome", "ok"),))
    retries = ("assetrag_gemini_retries_total", ())
    assert after[ok] - before.get(ok, 0.0) == 1
    assert after[retries] - before.get(retries, 0.0) == 1
