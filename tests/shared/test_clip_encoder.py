from __future__ import annotations

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shared.clip.encoder import (
    ClipEncoder,
    _load_model,
    _padded_rows,
    cpu_has_native_bf16,
    encode_tokens,
    resolve_precision,
)
from shared.clip.torch_thread import TORCH_THREAD
from tests.support.clip_checkpoint import build_tiny_checkpoint

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import clip


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clip")
    return {
        fmt: build_tiny_checkpoint(root / f"tiny-{fmt}.pt", fmt=fmt)
        for fmt in ("state_dict", "torchscript")
    }


@pytest.fixture(scope="module")
def encoder(checkpoints: dict[str, Path]) -> ClipEncoder:
    enc = ClipEncoder(str(checkpoints["state_dict"]), device="cpu", precision="fp32")
    enc.load()
    return enc


def images() -> list[Image.Image]:
    rng = np.random.default_rng(3)
    out = [Image.new("RGB", (100, 80), (200, 30, 30)), Image.new("RGB", (50, 120), (20, 20, 220))]
    out.append(Image.fromarray(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)))
    return out


def batch(enc: ClipEncoder) -> torch.Tensor:
    return torch.stack([enc.preprocess(img) for img in images()])


def test_loads_lazily_and_reads_sizes_from_the_model(checkpoints: dict[str, Path]) -> None:
    enc = ClipEncoder(str(checkpoints["state_dict"]), device="cpu", precision="fp32")
    assert not enc.loaded
    assert enc.dim == 48 and enc.input_resolution == 64 and enc.context_length == 77
    assert enc.loaded and enc.device == "cpu" and enc.precision == "fp32"
    assert enc.model_id == str(checkpoints["state_dict"])


@pytest.mark.parametrize("fmt", ["state_dict", "torchscript"])
def test_both_checkpoint_formats_load_the_same_model(
    fmt: str, checkpoints: dict[str, Path], encoder: ClipEncoder
) -> None:
    enc = ClipEncoder(str(checkpoints[fmt]), device="cpu", precision="fp32")
    assert (enc.dim, enc.input_resolution) == (48, 64)
    np.testing.assert_allclose(enc.encode_images(batch(enc)), encoder.encode_images(batch(encoder)))
    np.testing.assert_allclose(enc.encode_texts(["a cat"]), encoder.encode_texts(["a cat"]))


def test_wrapped_state_dict_loads(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    state = torch.load(checkpoints["state_dict"], map_location="cpu", weights_only=True)
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "wrapped.pt")
    assert ClipEncoder(str(tmp_path / "wrapped.pt"), device="cpu").dim == 48


def test_embedding_dim_is_never_assumed(tmp_path: Path) -> None:
    path = build_tiny_checkpoint(tmp_path / "d32.pt", embed_dim=32)
    enc = ClipEncoder(str(path), device="cpu", precision="fp32")
    assert enc.dim == 32
    assert enc.encode_images(batch(enc)).shape == (3, 32)
    assert enc.encode_texts(["x"]).shape == (1, 32)


def test_image_embeddings_are_unit_float32_and_deterministic(encoder: ClipEncoder) -> None:
    first = encoder.encode_images(batch(encoder))
    second = encoder.encode_images(batch(encoder))
    assert first.dtype == np.float32 and first.shape == (3, 48)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first[0], first[1])


def test_text_embeddings_are_unit_and_long_text_is_truncated(encoder: ClipEncoder) -> None:
    long_text = " ".join(f"word{i}" for i in range(300))
    out = encoder.encode_texts(["a red square", long_text])
    assert out.dtype == np.float32 and out.shape == (2, 48)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out, encoder.encode_texts(["a red square", long_text]))


def test_empty_inputs(encoder: ClipEncoder) -> None:
    assert encoder.encode_texts([]).shape == (0, 48)
    assert encoder.encode_images(torch.empty(0, 3, 64, 64)).shape == (0, 48)


def test_preprocess_is_openai_clips_transform(encoder: ClipEncoder) -> None:
    """The numpy tail (ToTensor, Normalize) gives OpenAI's values to the bit."""
    reference = clip.clip._transform(64)
    others = [Image.new("L", (40, 90), 77), Image.new("RGBA", (64, 64), (1, 2, 3, 4))]
    for img in images() + others:
        tensor = encoder.preprocess(img)
        assert tensor.shape == (3, 64, 64) and tensor.dtype == torch.float32
        assert torch.equal(tensor, reference(img))


def test_every_model_call_runs_on_the_torch_thread(checkpoints: dict[str, Path]) -> None:
    """Whichever threads ask, one thread runs the towers (OpenMP slows down as soon as a
    second thread has run torch: shared/clip/torch_thread.py)."""
    enc = ClipEncoder(str(checkpoints["state_dict"]), device="cpu", precision="fp32")
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: enc.load(), range(3)))
    ran_on: set[int] = set()
    assert enc._model is not None
    for tower in (enc._model.visual, enc._model.transformer):
        tower.register_forward_hook(lambda *_: ran_on.add(threading.get_ident()))
    pixels = [enc.preprocess(img) for img in images()]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: enc.encode_texts([f"text {i}"]), range(8)))
        list(pool.map(lambda p: enc.encode_images([p]), pixels))
    enc.encode_images(torch.stack(pixels))
    assert ran_on == {TORCH_THREAD.ident}


def test_a_list_of_images_is_stacked_for_the_caller(encoder: ClipEncoder) -> None:
    pixels = [encoder.preprocess(img) for img in images()]
    np.testing.assert_array_equal(
        encoder.encode_images(pixels), encoder.encode_images(torch.stack(pixels))
    )
    assert encoder.encode_images([]).shape == (0, 48)


def test_preprocess_and_encode_from_threads(encoder: ClipEncoder) -> None:
    imgs = images() * 4
    with ThreadPoolExecutor(4) as pool:
        tensors = list(pool.map(encoder.preprocess, imgs))
    expected = encoder.encode_images(torch.stack(tensors))
    with ThreadPoolExecutor(3) as pool:
        outs = list(pool.map(lambda t: encoder.encode_images(t[None]), tensors))
    np.testing.assert_allclose(np.concatenate(outs), expected, atol=1e-5)


def test_load_is_idempotent_across_threads(checkpoints: dict[str, Path]) -> None:
    enc = ClipEncoder(str(checkpoints["torchscript"]), device="cpu", precision="fp32")
    barrier = threading.Barrier(4)

    def load() -> object:
        barrier.wait()
        enc.load()
        return enc._model

    with ThreadPoolExecutor(4) as pool:
        models = list(pool.map(lambda _: load(), range(4)))
    enc.load()
    assert models[0] is not None and all(m is models[0] for m in models)
    assert enc._model is models[0]


def test_bf16_matches_fp32(checkpoints: dict[str, Path], encoder: ClipEncoder) -> None:
    enc = ClipEncoder(str(checkpoints["state_dict"]), device="cpu", precision="bf16")
    try:
        imgs = enc.encode_images(batch(enc))
        texts = enc.encode_texts(["a red square", "a photo of a dog"])
    except RuntimeError as exc:  # pragma: no cover - a torch build without CPU bf16
        pytest.skip(f"bf16 autocast unsupported here: {exc}")
    assert imgs.dtype == np.float32
    ref_imgs = encoder.encode_images(batch(encoder))
    ref_texts = encoder.encode_texts(["a red square", "a photo of a dog"])
    assert (imgs * ref_imgs).sum(axis=1).min() >= 0.99
    assert (texts * ref_texts).sum(axis=1).min() >= 0.99


def test_bf16_text_weights_cast_once_give_autocasts_features_to_the_bit(
    checkpoints: dict[str, Path],
) -> None:
    """bf16 text-tower weights cast at load: the same features as autocast over the fp32
    weights (what ran before), while the image tower keeps fp32 weights."""
    enc = ClipEncoder(str(checkpoints["state_dict"]), device="cpu", precision="bf16")
    try:
        got = enc.encode_texts(MIXED)
    except RuntimeError as exc:  # pragma: no cover - a torch build without CPU bf16
        pytest.skip(f"bf16 autocast unsupported here: {exc}")
    assert enc._model is not None
    assert enc._model.transformer.resblocks[0].attn.in_proj_weight.dtype == torch.bfloat16
    assert enc._model.transformer.resblocks[0].mlp.c_fc.weight.dtype == torch.bfloat16
    assert enc._model.visual.transformer.resblocks[0].mlp.c_fc.weight.dtype == torch.float32

    def reference() -> np.ndarray:
        model = _load_model(str(checkpoints["state_dict"]), "cpu", "bf16")  # fp32 weights
        tokens = clip.tokenize(MIXED, context_length=77, truncate=True)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            features = encode_tokens(model, _padded_rows(tokens))[: len(MIXED)].float()
        return (features / features.norm(dim=-1, keepdim=True)).numpy()

    np.testing.assert_array_equal(got, TORCH_THREAD.run(reference))


def test_auto_precision() -> None:
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("fp32", "cuda") == "fp32"


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "clip.pt"
    enc = ClipEncoder(str(missing), device="cpu")
    with pytest.raises(ValueError, match="nope/clip.pt") as info:
        enc.load()
    assert "ViT-B/32" in str(info.value)  # names the known models too
    assert not enc.loaded


@pytest.mark.parametrize(
    "content",
    [b"this is not a checkpoint", None],  # None: a valid torch file that is not CLIP
)
def test_bad_checkpoint_is_a_clear_error(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save({"weight": torch.zeros(2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="bad.pt"):
        ClipEncoder(str(path), device="cpu").load()


@pytest.mark.parametrize(("device", "precision"), [("tpu", "auto"), ("cpu", "int8")])
def test_bad_settings_are_refused(device: str, precision: str) -> None:
    with pytest.raises(ValueError):
        ClipEncoder("ViT-B/32", device=device, precision=precision)


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without CUDA")
def test_cuda_without_cuda_is_refused(checkpoints: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="CUDA"):
        ClipEncoder(str(checkpoints["state_dict"]), device="cuda").load()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_half_precisions_match_fp32(
    precision: str, checkpoints: dict[str, Path], encoder: ClipEncoder
) -> None:
    enc = ClipEncoder(str(checkpoints["state_dict"]), device="cuda", precision=precision)
    got = enc.encode_images(batch(enc))
    ref = encoder.encode_images(batch(encoder))
    assert (got * ref).sum(axis=1).min() >= 0.99
    texts = enc.encode_texts(["a red square"])
    assert float((texts * encoder.encode_texts(["a red square"])).sum()) >= 0.99


# --- exact context truncation ------------------------------------------------------------------

MIXED = [
    "a",
    "a red silk shawl with gold trim",
    " ".join(f"word{i}" for i in range(300)),  # cut at 77 tokens by the tokenizer
    "studio shot of a leather boot on a white background, soft light, three quarter view",
]


def untruncated(enc: ClipEncoder, texts: list[str]) -> np.ndarray:
    """OpenAI's own `encode_text` over all 77 positions: the reference."""
    tokens = clip.tokenize(texts, context_length=enc.context_length, truncate=True)
    with torch.inference_mode():
        features = enc._ready().encode_text(tokens).float()
    return (features / features.norm(dim=-1, keepdim=True)).numpy()


@pytest.mark.parametrize(
    "texts",
    [MIXED, ["a cat", "a dog"], ["x"], [MIXED[2], MIXED[2]]],
    ids=["mixed-lengths", "short-only", "one-token", "all-at-77"],
)
def test_truncated_text_encoding_equals_the_full_context(
    encoder: ClipEncoder, texts: list[str]
) -> None:
    np.testing.assert_allclose(encoder.encode_texts(texts), untruncated(encoder, texts), atol=2e-6)


def test_a_text_encodes_alike_alone_and_beside_longer_ones(encoder: ClipEncoder) -> None:
    together = encoder.encode_texts(MIXED)
    alone = np.concatenate([encoder.encode_texts([text]) for text in MIXED])
    np.testing.assert_allclose(together, alone, atol=2e-6)


def test_truncation_cuts_at_the_longest_end_of_text_token(encoder: ClipEncoder) -> None:
    from shared.clip.encoder import encode_tokens

    model = encoder._ready()
    seen: list[int] = []
    hook = model.ln_final.register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape[1]))
    try:
        tokens = clip.tokenize(["a cat", "a red silk shawl"], truncate=True)
        with torch.inference_mode():
            encode_tokens(model, tokens)
            encode_tokens(model, clip.tokenize([MIXED[2]], truncate=True))
    finally:
        hook.remove()
    longest = int(tokens.argmax(dim=-1).max()) + 1
    assert longest < 8 and seen == [8, 77]  # rounded up to a step of 8, and never past 77


def test_truncation_leaves_the_shared_model_untouched(encoder: ClipEncoder) -> None:
    model = encoder._ready()
    masks = [block.attn_mask.clone() for block in model.transformer.resblocks]
    positions = model.positional_embedding.detach().clone()
    encoder.encode_texts(["a cat"])
    assert all(
        torch.equal(block.attn_mask, mask)
        for block, mask in zip(model.transformer.resblocks, masks, strict=True)
    )
    assert torch.equal(model.positional_embedding, positions)


def test_truncated_encoding_from_threads_of_different_lengths(encoder: ClipEncoder) -> None:
    expected = [encoder.encode_texts([text]) for text in MIXED]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda t: encoder.encode_texts([t]), MIXED * 3))
    for i, vectors in enumerate(got):
        np.testing.assert_allclose(vectors, expected[i % len(MIXED)], atol=2e-6)


def test_bf16_truncated_matches_fp32_full_context(
    checkpoints: dict[str, Path], encoder: ClipEncoder
) -> None:
    enc = ClipEncoder(str(checkpoints["state_dict"]), device="cpu", precision="bf16")
    try:
        got = enc.encode_texts(MIXED)
    except RuntimeError as exc:  # pragma: no cover - a torch build without CPU bf16
        pytest.skip(f"bf16 autocast unsupported here: {exc}")
    assert (got * untruncated(encoder, MIXED)).sum(axis=1).min() >= 0.999


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_truncated_matches_fp32_full_context(
    checkpoints: dict[str, Path], encoder: ClipEncoder
) -> None:
    enc = ClipEncoder(str(checkpoints["state_dict"]), device="cuda", precision="fp16")
    assert (enc.encode_texts(MIXED) * untruncated(encoder, MIXED)).sum(axis=1).min() >= 0.999


def test_odd_batches_are_padded_and_the_padding_dropped(encoder: ClipEncoder) -> None:
    for count in (3, 5, 7):
        texts = MIXED[:count] if count <= len(MIXED) else (MIXED * 2)[:count]
        got = encoder.encode_texts(texts)
        assert got.shape == (count, 48)
        np.testing.assert_allclose(got, untruncated(encoder, texts), atol=2e-6)


def test_texts_run_through_a_trace_that_gives_the_eager_features_to_the_bit(
    encoder: ClipEncoder,
) -> None:
    """The traced text tower (one native call, out of the GIL) is what encodes texts, and
    it matches the eager pass exactly at every batch size and length it meets."""
    assert isinstance(encoder._text_tower, torch.jit.ScriptModule)
    model = encoder._ready()
    batches = [MIXED[:1], MIXED, [f"a red silk shawl number {n}" for n in range(13)]]

    def both(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = _padded_rows(clip.tokenize(texts, truncate=True))
        with torch.inference_mode():
            return encode_tokens(model, tokens), encode_tokens(model, tokens, encoder._text_tower)

    for texts in batches:
        eager, traced = TORCH_THREAD.run(both, texts)
        assert torch.equal(eager, traced), texts
        features = eager[: len(texts)]
        expected = (features / features.norm(dim=-1, keepdim=True)).numpy()
        np.testing.assert_array_equal(encoder.encode_texts(texts), expected)


def test_a_trace_that_drifts_from_the_eager_pass_is_not_used(
    checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.clip import text_tower

    real_trace = torch.jit.trace

    def drifting(module: torch.nn.Module, example: object, **kwargs: object) -> object:
        traced = real_trace(module, example, **kwargs)
        return lambda tokens, ends: traced(tokens, ends) + 1e-4

    monkeypatch.setattr(text_tower.torch.jit, "trace", drifting)
    enc = ClipEncoder(str(checkpoints["state_dict"]), device="cpu", precision="fp32")
    enc.load()
    assert enc._text_tower is None
    model = enc._ready()
    tokens = _padded_rows(clip.tokenize(MIXED, truncate=True))

    def eager() -> np.ndarray:
        with torch.inference_mode():
            features = encode_tokens(model, tokens)[: len(MIXED)]
        return (features / features.norm(dim=-1, keepdim=True)).numpy()

    np.testing.assert_array_equal(enc.encode_texts(MIXED), TORCH_THREAD.run(eager))
