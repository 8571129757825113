"""The onnx image tower: parity with torch fp32, the export cache, and refusal below the bound.

Exactness only (random weights): fp32 agrees with torch to float rounding, int8 within the
service's default bound, and an image still finds itself first among the others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from shared.clip.encoder import ClipEncoder, checkpoint_hash  # noqa: E402
from shared.clip.onnx_runtime import probe_images  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.support.clip_checkpoint import build_tiny_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("clip") / "tiny.pt")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def reference(checkpoint: Path) -> ClipEncoder:
    return ClipEncoder(str(checkpoint), "cpu", "fp32")


def onnx_encoder(checkpoint: Path, cache: Path, precision: str, bound: float = 0.99) -> ClipEncoder:
    enc = ClipEncoder(str(checkpoint), "cpu", precision, "onnx", cache, bound)
    enc.load()
    return enc


def pixels(enc: ClipEncoder) -> torch.Tensor:
    return torch.stack([enc.preprocess(img) for img in probe_images(12, seed=5)])


def test_onnx_fp32_equals_torch_fp32(checkpoint: Path, cache: Path, reference: ClipEncoder) -> None:
    enc = onnx_encoder(checkpoint, cache, "fp32")
    assert enc.backend == "onnx" and enc.image_precision == "fp32"
    got, want = enc.encode_images(pixels(enc)), reference.encode_images(pixels(reference))
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the text tower stays on torch, truncated: same vectors as the torch backend's
    np.testing.assert_allclose(
        enc.encode_texts(["a cat"]),
        reference.encode_texts(["a cat"]),
        atol=1e-2 if enc.precision == "bf16" else 1e-6,
    )


def test_onnx_int8_is_close_and_images_find_themselves(
    checkpoint: Path, cache: Path, reference: ClipEncoder
) -> None:
    enc = onnx_encoder(checkpoint, cache, "int8")
    assert enc.image_precision == "int8"
    got, want = enc.encode_images(pixels(enc)), reference.encode_images(pixels(reference))
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert (got * want).sum(axis=1).min() >= 0.99
    # each int8 vector's nearest torch fp32 vector is its own image's
    assert ((got @ want.T).argmax(axis=1) == np.arange(len(got))).all()
    assert enc.encode_images(torch.empty(0, 3, 64, 64)).shape == (0, 48)


def test_export_is_cached_by_checkpoint_hash(checkpoint: Path, cache: Path, tmp_path: Path) -> None:
    onnx_encoder(checkpoint, cache, "int8")
    files = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.onnx")}
    digest = checkpoint_hash(str(checkpoint))[:32]
    assert sorted(files) == [f"{digest}-v1-fp32.onnx", f"{digest}-v1-int8.onnx"]
    onnx_encoder(checkpoint, cache, "int8")  # a second worker: loads, exports nothing
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("*.onnx")} == files
    other = build_tiny_checkpoint(tmp_path / "other.pt", embed_dim=32)
    onnx_encoder(other, cache, "fp32")  # other weights, another file
    assert len(list(cache.glob("*.onnx"))) == 3
    assert not list(cache.glob("*.tmp"))


def test_below_the_parity_bound_the_encoder_refuses_to_serve(checkpoint: Path, cache: Path) -> None:
    enc = ClipEncoder(str(checkpoint), "cpu", "int8", "onnx", cache, min_cosine=0.9999999)
    with pytest.raises(ValueError, match="ASSETRAG_ONNX_MIN_COSINE") as info:
        enc.load()
    assert "int8" in str(info.value) and "refusing" in str(info.value)
    assert not enc.loaded


def test_check_onnx_reports_both_runtimes(checkpoint: Path, cache: Path) -> None:
    checks = ClipEncoder(str(checkpoint), "cpu", "fp32", cache_dir=cache).check_onnx()
    assert [c.runtime for c in checks] == ["torch fp32", "onnx fp32", "onnx int8"]
    assert checks[0].parity is None
    fp32, int8 = checks[1].parity, checks[2].parity
    assert fp32 is not None and int8 is not None
    assert fp32.min_cosine >= 0.99999 and 0.99 <= int8.min_cosine <= fp32.min_cosine + 1e-6
    assert all(c.images_per_s > 0 for c in checks)


@pytest.mark.parametrize(
    ("device", "precision", "backend"),
    [
        ("cpu", "int8", "torch"),
        ("cpu", "bf16", "onnx"),
        ("cuda", "fp32", "onnx"),
        ("cpu", "fp32", "tf"),
    ],
)
def test_combinations_that_cannot_run_are_refused(
    device: str, precision: str, backend: str
) -> None:
    with pytest.raises(ValueError):
        ClipEncoder("ViT-B/32", device, precision, backend)


@pytest.mark.parametrize(
    "env",
    [
        {"ASSETRAG_PRECISION": "int8"},
        {"ASSETRAG_BACKEND": "onnx", "ASSETRAG_PRECISION": "bf16"},
        {"ASSETRAG_BACKEND": "onnx", "ASSETRAG_DEVICE": "cuda"},
    ],
)
def test_settings_refuse_them_at_start_up(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match="ASSETRAG_"):
        Settings()


def test_settings_build_the_encoder(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSETRAG_BACKEND", "onnx")
    monkeypatch.setenv("ASSETRAG_PRECISION", "int8")
    monkeypatch.setenv("ASSETRAG_DATA_DIR", "/srv/assetrag")
    enc = ClipEncoder.from_settings(str(checkpoint), Settings())
    assert enc.backend == "onnx" and enc._cache_dir == Path("/srv/assetrag/onnx")


def _export_in_child(checkpoint: str, folder: str) -> None:
    from shared.clip.encoder import _load_model, checkpoint_hash
    from shared.clip.onnx_runtime import cached_graph

    model = _load_model(checkpoint, "cpu", "fp32")
    cached_graph(model, checkpoint_hash(checkpoint), "int8", Path(folder))


def test_one_process_at_a_time_builds_the_exports(tiny_clip: Path, tmp_path: Path) -> None:
    """Workers starting together wait for the one exporting (ONNX Runtime's quantiser
    writes a fixed-name file beside its input, which a second one would delete)."""
    import multiprocessing

    from shared.clip.onnx_runtime import exclusive

    child = multiprocessing.get_context("spawn").Process(
        target=_export_in_child, args=(str(tiny_clip), str(tmp_path))
    )
    with exclusive(tmp_path):
        child.start()
        child.join(timeout=8)
        assert child.is_alive(), "the export did not wait for the lock"
        assert not list(tmp_path.glob("*.onnx"))
    child.join(timeout=120)
    assert child.exitcode == 0
    assert sorted(p.name.rsplit("-", 1)[1] for p in tmp_path.glob("*.onnx")) == [
        "fp32.onnx",
        "int8.onnx",
    ]
