"""A worker process's metrics, served on its own port and scraped over HTTP."""

from __future__ import annotations

import httpx
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


def test_port_zero_serves_nothing() -> None:
    serve_metrics("127.0.0.1", 0)  # no server, no error
