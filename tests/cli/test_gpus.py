"""One embed worker per visible GPU: which GPUs `assetrag up` sees, the worker commands it
runs, and `assetrag worker --gpu`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from cli.stack import WORKER_KINDS, metrics_ports, visible_gpus, worker_commands
from shared.settings import Settings


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("listed", "gpus"),
    [
        ("0,1", ["0", "1"]),
        (" 2 , 3 ", ["2", "3"]),
        ("", []),
        (
            "GPU-8f2c1a3e-1111-2222-3333-444455556666,1",
            ["GPU-8f2c1a3e-1111-2222-3333-444455556666", "1"],
        ),
        ("0,not-a-gpu,1", ["0"]),  # CUDA ignores everything after an entry it cannot parse
    ],
)
def test_cuda_visible_devices_decides(listed: str, gpus: list[str]) -> None:
    assert visible_gpus(settings(cuda_visible_devices=listed)) == gpus


def test_no_gpus_on_the_cpu_or_without_a_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert visible_gpus(settings(device="cpu", cuda_visible_devices="0,1")) == []
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi here
    assert visible_gpus(settings()) == []


def test_nvidia_smi_lists_the_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # This machine has no GPU: a stand-in for the driver's tool, printing what it prints.
    smi = tmp_path / "nvidia-smi"
    smi.write_text('#!/bin/sh\ntest "$1" = --query-gpu=index || exit 9\nprintf "0\\n1\\n2\\n"\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert visible_gpus(settings()) == ["0", "1", "2"]


def test_up_runs_one_embed_worker_per_gpu_each_with_its_metrics_port() -> None:
    commands = worker_commands(
        settings(cuda_visible_devices="0,1", metrics_port=9100), WORKER_KINDS
    )
    assert list(commands) == [
        "worker-embed-gpu0",
        "worker-embed-gpu1",
        "worker-query",
        "worker-generate",
        "worker-default",
    ]
    assert commands["worker-embed-gpu1"][-6:] == [
        "--queues",
        "embed",
        "--gpu",
        "1",
        "--metrics-port",
        "9101",
    ]
    assert list(metrics_ports(commands).values()) == ["9100", "9101", "9102", "9103", "9104"]


def test_up_on_one_gpu_or_none_runs_one_embed_worker() -> None:
    one = worker_commands(settings(cuda_visible_devices="3"), ("embed",))
    assert list(one) == ["worker-embed"] and one["worker-embed"][-2:] == ["--gpu", "3"]
    none = worker_commands(settings(device="cpu"), ("embed",))
    assert none["worker-embed"][-2:] == ["--queues", "embed"]  # no --gpu, no metrics port


def test_worker_refuses_a_gpu_that_is_not_one() -> None:
    result = CliRunner().invoke(app, ["worker", "--queues", "embed", "--gpu", "0;rm"])
    assert result.exit_code == 2
    assert "--gpu takes a GPU index" in result.output
