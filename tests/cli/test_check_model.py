"""`assetrag check-model`: parity of the onnx image tower for any model, before switching."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from shared.settings import get_settings
from tests.support.clip_checkpoint import build_tiny_checkpoint
from tests.support.images import make_image
from tests.support.open_clip_models import MODELS, SIGLIP, XLMR

pytest.importorskip("onnxruntime")

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("ASSETRAG_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def test_prints_parity_and_speed_and_caches_the_export(tmp_path: Path, data_dir: Path) -> None:
    checkpoint = build_tiny_checkpoint(tmp_path / "tiny.pt")
    result = runner.invoke(app, ["check-model", str(checkpoint)])
    assert result.exit_code == 0, result.output
    for row in ("torch fp32", "onnx fp32", "onnx int8", "min cos", "img/s"):
        assert row in result.output
    assert len(list((data_dir / "onnx").glob("*.onnx"))) == 2  # a worker loads these later


def test_on_a_folder_of_own_images_and_a_bound_it_misses(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = build_tiny_checkpoint(tmp_path / "tiny.pt")
    folder = tmp_path / "mine"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(make_image(i))
    (folder / "notes.txt").write_text("not an image")
    monkeypatch.setenv("ASSETRAG_ONNX_MIN_COSINE", "0.9999999")
    get_settings.cache_clear()
    result = runner.invoke(app, ["check-model", str(checkpoint), "--images", str(folder)])
    assert result.exit_code == 1, result.output  # int8 cannot reach that bound
    assert "3 images" in result.output
    assert "onnx int8: min cosine" in result.output and "below the bound" in result.output


def test_an_unknown_model_is_a_clear_error(tmp_path: Path, data_dir: Path) -> None:
    result = runner.invoke(app, ["check-model", str(tmp_path / "missing.pt")])
    assert result.exit_code == 2 and "missing.pt" in result.output


@pytest.mark.parametrize("name", MODELS)
def test_an_open_clip_model_through_the_family_chooser(
    name: str, open_clip_dir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSETRAG_MODEL_DIR", str(open_clip_dir))
    get_settings.cache_clear()
    result = runner.invoke(app, ["check-model", name])
    assert result.exit_code == 0, result.output
    dim = {SIGLIP: 64, XLMR: 48}[name]
    assert f"dimension {dim}" in result.output and "one image" in result.output
    for row in ("torch fp32", "onnx fp32", "onnx int8", "min cos", "img/s"):
        assert row in result.output


def test_the_openai_model_prints_its_dimension_too(tmp_path: Path, data_dir: Path) -> None:
    result = runner.invoke(app, ["check-model", str(build_tiny_checkpoint(tmp_path / "t.pt"))])
    assert result.exit_code == 0, result.output
    assert "dimension " in result.output and "one text" in result.output


def test_an_open_clip_model_missing_from_the_folder_is_a_clear_error(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSETRAG_MODEL_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no download attempt from a test
    get_settings.cache_clear()
    result = runner.invoke(app, ["check-model", "open_clip:no-such-arch/none"])
    assert result.exit_code == 2 and "no-such-arch" in result.output
