"""`assetrag fetch-model` for open_clip names: a pretrained tag's files (as open_clip itself
downloads them) into ASSETRAG_MODEL_DIR/<arch>/<tag>/, whole or not at all, once. The hub
is a local folder here (`hub_download`, the one function that reaches it, replaced)."""

from __future__ import annotations

import fnmatch
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import open_clip
import pytest
from typer.testing import CliRunner

from cli.app import app
from shared.clip import weights
from shared.clip.onnx_runtime import probe_images
from shared.clip.open_clip_encoder import OpenClipEncoder, local_folder
from shared.settings import get_settings
from tests.support.open_clip_models import XLMR, XLMR_ARCH, XLMR_TAG

runner = CliRunner()
CLIP_REPO, TEXT_REPO = "test-org/tiny-clip", "test-org/tiny-xlmr"
NAME = XLMR  # open_clip:tiny-xlm-roberta-ViT-B-32/test


class Hub:
    """A local stand-in for the hub: `<root>/<repo>/<file>`; counts downloads."""

    def __init__(self, root: Path) -> None:
        self.root, self.calls, self.fail_on = root, [], ""

    def download(self, repo_id: str, patterns: list[str], folder: Path) -> None:
        self.calls.append(repo_id)
        for path in sorted((self.root / repo_id).iterdir()):
            if any(fnmatch.fnmatch(path.name, p) for p in patterns):
                if path.name == self.fail_on:
                    (folder / path.name).write_bytes(b"half a fi")  # the connection dropped
                    raise OSError("connection reset")
                shutil.copy(path, folder / path.name)


@pytest.fixture
def hub(tmp_path: Path, open_clip_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    """The reduced multilingual model published as open_clip publishes a tag: its config in
    open_clip's tables, its weights in one hub repo, its text tower's config and tokenizer
    in another."""
    built = open_clip_dir / XLMR_ARCH / XLMR_TAG
    model_cfg = json.loads((built / "open_clip_config.json").read_text())["model_cfg"]
    model_cfg["text_cfg"].update(hf_model_name=TEXT_REPO, hf_tokenizer_name=TEXT_REPO)
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, XLMR_ARCH, model_cfg)
    pretrained = {"hf_hub": f"{CLIP_REPO}/", "mean": [0.5] * 3, "std": [0.5] * 3}
    pretrained |= {"interpolation": "bicubic", "resize_mode": "shortest"}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, XLMR_ARCH, {XLMR_TAG: pretrained})
    root = tmp_path / "hub"
    (root / CLIP_REPO).mkdir(parents=True)
    (root / TEXT_REPO).mkdir(parents=True)
    shutil.copy(built / "open_clip_model.safetensors", root / CLIP_REPO)
    (root / CLIP_REPO / "README.md").write_text("a model card, not fetched")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(built / name, root / TEXT_REPO)
    fake = Hub(root)
    monkeypatch.setattr(weights, "hub_download", fake.download)
    monkeypatch.setenv("ASSETRAG_MODEL_DIR", str(tmp_path / "models"))
    get_settings.cache_clear()
    yield fake
    get_settings.cache_clear()


def test_fetches_the_layout_the_encoder_reads_once(hub: Hub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    first = runner.invoke(app, ["fetch-model", NAME])
    assert first.exit_code == 0, first.output
    assert "downloaded" in first.output
    folder = models / XLMR_ARCH / XLMR_TAG
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "open_clip_config.json",
        "open_clip_model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    config = json.loads((folder / "open_clip_config.json").read_text())
    assert config["model_cfg"]["text_cfg"]["hf_model_name"] == str(folder)
    assert config["preprocess_cfg"]["resize_mode"] == "shortest"
    assert [p.name for p in (models / XLMR_ARCH).iterdir()] == [XLMR_TAG]  # no scratch left
    assert hub.calls == [CLIP_REPO, TEXT_REPO, TEXT_REPO]

    again = runner.invoke(app, ["fetch-model", NAME])
    assert again.exit_code == 0 and "already there" in again.output
    assert len(hub.calls) == 3  # the second pod found it there

    fetched = OpenClipEncoder(NAME, "cpu", "fp32", model_dir=models)
    assert local_folder(NAME, models) == folder
    image = fetched.encode_images([fetched.preprocess(probe_images(1)[0])])
    assert image.shape == (1, 48) and np.isfinite(image).all()
    assert fetched.encode_texts(["红色的丝绸披肩"]).shape == (1, 48)


def test_a_download_cut_short_leaves_nothing_in_place(hub: Hub, tmp_path: Path) -> None:
    hub.fail_on = "tokenizer.json"
    failed = runner.invoke(app, ["fetch-model", NAME])
    assert failed.exit_code == 2 and "connection reset" in failed.output
    assert list((tmp_path / "models" / XLMR_ARCH).iterdir()) == []  # nor a scratch folder
    hub.fail_on = ""
    retried = runner.invoke(app, ["fetch-model", NAME])
    assert retried.exit_code == 0 and "downloaded" in retried.output


def test_all_fetches_every_listed_model(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_clip: Path
) -> None:
    monkeypatch.setenv("ASSETRAG_CLIP_MODEL", str(tiny_clip))
    monkeypatch.setenv("ASSETRAG_CLIP_MODELS", NAME)
    get_settings.cache_clear()
    result = runner.invoke(app, ["fetch-model", "--all"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # rich wraps long paths
    assert "a checkpoint file, nothing to fetch" in said and "(downloaded)" in said
    assert (tmp_path / "models" / XLMR_ARCH / XLMR_TAG / "open_clip_config.json").is_file()


def test_an_open_clip_name_needs_a_model_folder_and_a_published_tag(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    unknown = runner.invoke(app, ["fetch-model", f"open_clip:{XLMR_ARCH}/nope"])
    assert unknown.exit_code == 2 and "publishes no hub weights" in unknown.output
    monkeypatch.delenv("ASSETRAG_MODEL_DIR")
    get_settings.cache_clear()
    nowhere = runner.invoke(app, ["fetch-model", NAME])
    assert nowhere.exit_code == 2 and "--to" in nowhere.output
    there = runner.invoke(app, ["fetch-model", NAME, "--to", str(tmp_path / "elsewhere")])
    assert there.exit_code == 0, there.output
