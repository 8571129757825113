"""Reduced open_clip models of the real architectures, with random weights, laid out as an
offline model folder (ASSETRAG_MODEL_DIR) holds a downloaded one: `<dir>/<arch>/<tag>/` with
open_clip_config.json, open_clip_model.safetensors and the tokenizer's files.

- SigLIP 2 (ViT-B-16-SigLIP2's shape, reduced): a timm ViT image tower pooled by MAP attention
  (timm's `test_vit`, as vit_base_patch16_siglip_224 but 64 wide), open_clip's text tower
  with no causal mask, read at the last position, and an HF tokenizer;
- multilingual (xlm-roberta-base-ViT-B-32's shape, reduced): open_clip's own ViT/32 image
  tower and an XLM-RoBERTa text tower (transformers, from a local config folder) with mean
  pooling over the attention mask.

The tokenizer is a real `tokenizers` WordPiece model trained here on a few English and
Chinese lines, saved as tokenizer.json and read by transformers' AutoTokenizer, the loader a
downloaded model's tokenizer goes through. Weights come from `open_clip.create_model(...,
pretrained=None)` with a fixed seed and load back through open_clip's `local-dir:` path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

SEED = 20261201
SIGLIP_ARCH, SIGLIP_TAG = "tiny-SigLIP2", "test"
XLMR_ARCH, XLMR_TAG = "tiny-xlm-roberta-ViT-B-32", "test"
SIGLIP = f"open_clip:{SIGLIP_ARCH}/{SIGLIP_TAG}"
XLMR = f"open_clip:{XLMR_ARCH}/{XLMR_TAG}"

_CORPUS = [
    "a red silk shawl with gold trim",
    "a blue cotton dress on a model",
    "green leather boots and a brown bag",
    "上一季 Lunar 系列的紅色披肩",
    "红色的丝绸披肩 金色的边",
    "蓝色的连衣裙 绿色的靴子",
    "photo of a cat, a dog and a horse",
]


def _tokenizer(folder: Path, context_length: int) -> int:
    """A WordPiece tokenizer (Chinese characters split one by one, as BERT's pre-tokenizer
    does) saved where AutoTokenizer reads it; returns its vocabulary size."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    special = ["<pad>", "<s>", "</s>", "<unk>"]
    tok = Tokenizer(models.WordPiece(unk_token="<unk>"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        _CORPUS, trainers.WordPieceTrainer(vocab_size=400, special_tokens=special)
    )
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": context_length,
        "pad_token": "<pad>",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "cls_token": "<s>",
        "sep_token": "</s>",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return int(tok.get_vocab_size())


def _siglip_cfg(vocab: int) -> dict[str, Any]:
    return {
        "embed_dim": 64,
        "init_logit_bias": -10,
        "custom_text": True,
        "vision_cfg": {
            "image_size": 160,  # test_vit's own input size (timm keeps it)
            "timm_model_name": "test_vit",
            "timm_model_pretrained": False,
            "timm_pool": "map",
            "timm_proj": "none",
        },
        "text_cfg": {
            "context_length": 16,
            "vocab_size": vocab,
            "hf_tokenizer_name": "local",  # local-dir: reads the folder's own tokenizer
            "tokenizer_kwargs": {"clean": "canonicalize"},
            "width": 64,
            "heads": 2,
            "layers": 2,
            "no_causal_mask": True,
            "proj_bias": True,
            "pool_type": "last",
            "norm_kwargs": {"eps": 1e-6},
            "act_kwargs": {"approximate": "tanh"},
        },
    }


def _xlmr_cfg(text_folder: Path) -> dict[str, Any]:
    return {
        "embed_dim": 48,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 32},
        "text_cfg": {
            "hf_model_name": str(text_folder),
            "hf_tokenizer_name": str(text_folder),
            "hf_pooler_type": "mean_pooler",
            "context_length": 32,
        },
    }


def _xlmr_text_config(folder: Path, vocab: int) -> None:
    from transformers import XLMRobertaConfig

    XLMRobertaConfig(
        vocab_size=vocab,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=40,  # 32 tokens + RoBERTa's padding offset
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    ).save_pretrained(folder)


_PREPROCESS = {
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
    "resize_mode": "squash",
}


def _write(folder: Path, model_cfg: dict[str, Any], preprocess: dict[str, Any]) -> None:
    import open_clip
    from safetensors.torch import save_file

    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = open_clip.create_model(
            f"local-dir:{folder}", pretrained=None, load_weights=False, pretrained_text=False
        )
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))


def build_siglip2(model_dir: Path) -> str:
    """The reduced SigLIP 2 under `model_dir`; returns its model name."""
    folder = Path(model_dir) / SIGLIP_ARCH / SIGLIP_TAG
    vocab = _tokenizer(folder, 16)
    _write(folder, _siglip_cfg(vocab), _PREPROCESS)
    return SIGLIP


def build_xlm_roberta(model_dir: Path) -> str:
    """The reduced multilingual XLM-RoBERTa ViT-B/32 under `model_dir`; returns its name."""
    folder = Path(model_dir) / XLMR_ARCH / XLMR_TAG
    vocab = _tokenizer(folder, 32)
    _xlmr_text_config(folder, vocab)
    clip_norm = {
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    _write(folder, _xlmr_cfg(folder), clip_norm)
    return XLMR


def build_all(model_dir: Path) -> list[str]:
    return [build_siglip2(model_dir), build_xlm_roberta(model_dir)]


MODELS = (SIGLIP, XLMR)


def build_full_size(model_dir: Path, arch: str) -> str:
    """A published architecture at its real size (random weights), for benchmarks: open_clip's
    own config of `arch`, with this module's small tokenizer in place of the hub's (token
    ids stay below the real vocabulary, so the towers' cost is the real one)."""
    import open_clip

    folder = Path(model_dir) / arch / "random"
    model_cfg = open_clip.get_model_config(arch)
    text = model_cfg["text_cfg"]
    context = int(text.get("context_length", 77))
    _tokenizer(folder, context)
    if "hf_model_name" in text:  # xlm-roberta-base's sizes, from a local config folder
        from transformers import XLMRobertaConfig

        XLMRobertaConfig(
            vocab_size=250002,
            max_position_embeddings=514,
            type_vocab_size=1,
            layer_norm_eps=1e-5,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        ).save_pretrained(folder)
        text.update(hf_model_name=str(folder), hf_tokenizer_name=str(folder))
    else:
        text["hf_tokenizer_name"] = "local"
    _write(folder, model_cfg, _PREPROCESS)
    return f"open_clip:{arch}/random"
