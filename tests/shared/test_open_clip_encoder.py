"""open_clip's family (reduced SigLIP 2 and multilingual XLM-RoBERTa models, random weights,
loaded from an offline model folder through open_clip's own loader) behind the encoder
interface: exact behaviour only, since random weights say nothing about quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from shared.clip.catalog import OFFERED, open_clip_parts
from shared.clip.encoder import ClipEncoder
from shared.clip.families import encoder_for
from shared.clip.onnx_runtime import probe_images
from shared.clip.open_clip_encoder import OpenClipEncoder, local_folder
from shared.settings import Settings
from tests.support.open_clip_models import MODELS, SIGLIP, XLMR
from workers.encoders import EncoderCache

ENGLISH, CHINESE = "a red silk shawl with gold trim", "上一季 Lunar 系列的紅色披肩"


@pytest.fixture(scope="module")
def encoders(open_clip_dir: Path) -> dict[str, OpenClipEncoder]:
    found = {name: OpenClipEncoder(name, "cpu", "fp32", model_dir=open_clip_dir) for name in MODELS}
    for encoder in found.values():
        encoder.load()
    return found


def test_names_parse_and_malformed_ones_are_refused(tmp_path: Path) -> None:
    assert open_clip_parts("open_clip:ViT-B-16-SigLIP2/webli") == ("ViT-B-16-SigLIP2", "webli")
    assert open_clip_parts("ViT-B/32") is None
    for bad in ("open_clip:ViT-B-16", "open_clip:/webli", "open_clip:a/b/c"):
        with pytest.raises(ValueError, match="open_clip:<architecture>/<pretrained tag>"):
            open_clip_parts(bad)
        with pytest.raises(ValueError):
            Settings(_env_file=None, clip_model=bad)  # type: ignore[call-arg]
    offered = Settings(_env_file=None).allowed_models  # type: ignore[call-arg]
    assert {m.name for m in OFFERED} <= set(offered)


def test_the_family_is_chosen_by_name(open_clip_dir: Path, tiny_clip: Path) -> None:
    settings = Settings(_env_file=None, model_dir=open_clip_dir, device="cpu")  # type: ignore[call-arg]
    assert isinstance(encoder_for(SIGLIP, settings), OpenClipEncoder)
    assert isinstance(encoder_for(str(tiny_clip), settings), ClipEncoder)
    assert local_folder(SIGLIP, open_clip_dir) == open_clip_dir / "tiny-SigLIP2" / "test"
    assert local_folder("open_clip:ViT-B-16-SigLIP2/webli", open_clip_dir) is None


@pytest.mark.parametrize("name", MODELS)
def test_sizes_come_from_the_model(encoders: dict[str, OpenClipEncoder], name: str) -> None:
    encoder = encoders[name]
    want = {SIGLIP: (64, 160, 16), XLMR: (48, 64, 32)}[name]
    assert (encoder.dim, encoder.input_resolution, encoder.context_length) == want
    pixels = encoder.preprocess(probe_images(1)[0])
    assert pixels.shape == (3, want[1], want[1]) and pixels.dtype == torch.float32


@pytest.mark.parametrize("name", MODELS)
def test_an_image_finds_itself_first(encoders: dict[str, OpenClipEncoder], name: str) -> None:
    encoder = encoders[name]
    images = probe_images(8, seed=3)
    vectors = encoder.encode_images([encoder.preprocess(img) for img in images])
    assert vectors.shape == (8, encoder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    queries = encoder.encode_images(torch.stack([encoder.preprocess(img) for img in images]))
    assert list((queries @ vectors.T).argmax(axis=1)) == list(range(8))


@pytest.mark.parametrize("name", MODELS)
def test_chinese_and_english_queries_encode(
    encoders: dict[str, OpenClipEncoder], name: str
) -> None:
    encoder = encoders[name]
    tokens = encoder.tokenize([CHINESE])
    unknown = encoder._tokenizer.tokenizer.unk_token_id
    assert unknown not in tokens.tolist()[0]  # the Chinese text is read, not dropped
    vectors = encoder.encode_texts([ENGLISH, CHINESE])
    assert vectors.shape == (2, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) < 0.9999  # two different texts, two vectors
    np.testing.assert_allclose(encoder.encode_texts([CHINESE])[0], vectors[1], atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_text_cut_to_the_longest_changes_nothing(
    encoders: dict[str, OpenClipEncoder], name: str
) -> None:
    encoder = encoders[name]
    texts = ["cat", ENGLISH, CHINESE]
    np.testing.assert_allclose(
        encoder.encode_texts(texts), encoder.encode_texts(texts, full_context=True), atol=1e-6
    )


@pytest.mark.parametrize("name", MODELS)
def test_text_past_the_context_is_truncated(
    encoders: dict[str, OpenClipEncoder], name: str
) -> None:
    encoder = encoders[name]
    long = " ".join(["red shawl"] * 40)
    assert encoder.tokenize([long]).shape == (1, encoder.context_length)
    np.testing.assert_array_equal(
        encoder.encode_texts([long]), encoder.encode_texts([long + " and a blue dress"])
    )


@pytest.mark.parametrize("name", MODELS)
def test_onnx_int8_image_tower_agrees(
    encoders: dict[str, OpenClipEncoder], open_clip_dir: Path, tmp_path: Path, name: str
) -> None:
    onnx = OpenClipEncoder(name, "cpu", "int8", "onnx", tmp_path, 0.99, open_clip_dir)
    onnx.load()
    assert onnx.image_precision == "int8"
    reference = encoders[name]
    images = [reference.preprocess(img) for img in probe_images(6, seed=9)]
    got, want = onnx.encode_images(images), reference.encode_images(images)
    assert float((got * want).sum(axis=1).min()) > 0.99
    assert list((got @ want.T).argmax(axis=1)) == list(range(6))


def test_a_worker_holds_two_models_of_two_families(open_clip_dir: Path, tiny_clip: Path) -> None:
    """Both stay loaded (ASSETRAG_MAX_MODELS=2) and answer alternately without a reload; the
    process grows by about what their weights take, not by a copy per call."""
    settings = Settings(
        _env_file=None, model_dir=open_clip_dir, device="cpu", precision="fp32"  # type: ignore[call-arg]
    )
    loads: list[str] = []

    def load(model: str) -> OpenClipEncoder | ClipEncoder:
        loads.append(model)
        encoder = encoder_for(model, settings)
        encoder.load()
        return encoder

    cache = EncoderCache(2, load)
    process = psutil.Process()
    cache.get(str(tiny_clip)).encode_texts([ENGLISH])
    cache.get(SIGLIP).encode_texts([ENGLISH])  # imports open_clip, timm, transformers
    before = process.memory_info().rss
    for _ in range(3):
        for model in (str(tiny_clip), SIGLIP):
            cache.get(model).encode_texts([CHINESE])
    grown = process.memory_info().rss - before
    assert loads == [str(tiny_clip), SIGLIP] and cache.loaded() == [str(tiny_clip), SIGLIP]
    assert grown < 64 << 20, f"{grown >> 20} MiB more after serving both again"
    cache.get(XLMR)  # a third: the least recently used goes
    assert cache.loaded() == [SIGLIP, XLMR]


def test_sequence_first_layout_keeps_the_features(
    encoders: dict[str, OpenClipEncoder], open_clip_dir: Path
) -> None:
    """The loaded encoder runs open_clip's transformers sequence-first (a speed fix, see
    `sequence_first`); the features are those of the model as open_clip builds it."""
    import open_clip
    from open_clip.transformer import Transformer

    encoder = encoders[XLMR]
    folder = local_folder(XLMR, open_clip_dir)
    built = open_clip.create_model(f"local-dir:{folder}").eval()
    towers = [m for m in encoder._model.modules() if type(m) is Transformer]
    assert towers and not any(t.batch_first for t in towers)
    pixels = torch.stack([encoder.preprocess(img) for img in probe_images(3)])
    with torch.inference_mode():
        want = torch.nn.functional.normalize(built.encode_image(pixels), dim=-1).numpy()
    np.testing.assert_allclose(encoder.encode_images(pixels), want, atol=1e-5)
