"""OpenAI CLIP's text tower, cut short and run as one native call.

Two levers, both exact:

- **Truncation.** The text transformer is causal and its features are read at the
  end-of-text token (the highest id, hence argmax), so no position after the batch's longest
  text can change them: the token ids, positional embeddings and causal mask are cut there
  (rounded up to a multiple of LENGTH_STEP, which changes nothing either). A short query then
  costs a fraction of the 77-token pass.
- **Out of the GIL.** Run eagerly, one pass is a few hundred small torch calls, and between
  any two the torch thread must take the GIL back. In a query worker the Celery threads, the
  batchers and the Redis client hold it in turn, and each hand-back can wait for Python's
  switch interval (5 ms): measured on 2 Zen 3 cores, fp32, batches of 8, a text pass beside two
  Python threads doing JSON went from 33 to 7 texts/s. A TorchScript trace of the same module
  runs the whole pass in C++ with the GIL released (25 texts/s beside the same threads). The
  trace is taken at load, checked to give the very features of the eager pass on several
  batch and length shapes, and used only if it does (`traced_tower`).
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from clip.model import CLIP

log = logging.getLogger("assetrag.clip")
# Truncated lengths are rounded up to a multiple of this, so that a handful of shapes cover
# every query and kernels built for one (bf16 on the CPU) are reused.
LENGTH_STEP = 8
# (rows, end-of-text position) of the batches a trace must match the eager pass on.
_PARITY_SHAPES = ((1, 3), (3, 12), (8, 20), (2, 76))


class TruncatedText(torch.nn.Module):
    """`model.encode_text` over tokens already cut after the batch's last end-of-text
    (`cut`), reading each row's features at its own end (`ends`). Nothing on the shared model
    is changed (OpenAI's blocks re-assign their mask on every call), so threads may share it."""

    def __init__(self, model: CLIP) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        model = self.model
        length = tokens.shape[1]
        x = model.token_embedding(tokens).type(model.dtype)
        x = x + model.positional_embedding[:length].type(model.dtype)
        x = x.permute(1, 0, 2)  # NLD -> LND, as the blocks expect
        for block in model.transformer.resblocks:
            mask = block.attn_mask
            if mask is not None:
                mask = mask[:length, :length].to(dtype=x.dtype, device=x.device)
            y = block.ln_1(x)
            x = x + block.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
            x = x + block.mlp(block.ln_2(x))
        x = model.ln_final(x.permute(1, 0, 2)).type(model.dtype)
        return x[torch.arange(x.shape[0], device=x.device), ends] @ model.text_projection


def cut(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens up to the batch's last end-of-text (rounded up to LENGTH_STEP), and each
    row's end-of-text position."""
    ends = tokens.argmax(dim=-1)
    longest = int(ends.max()) + 1
    length = min(tokens.shape[1], -(-longest // LENGTH_STEP) * LENGTH_STEP)
    return tokens[:, :length], ends


def encode_tokens(model: CLIP, tokens: torch.Tensor, tower: Any = None) -> torch.Tensor:
    """`model.encode_text(tokens)`, computed only up to the batch's last end-of-text token;
    by `tower` (a `traced_tower`) when given, else eagerly."""
    short, ends = cut(tokens)
    if tower is None:
        return TruncatedText(model)(short, ends)
    # Plain execution: no profiling runs or fusion passes that could change a kernel.
    with torch.jit.optimized_execution(False):
        return tower(short, ends)  # type: ignore[no-any-return]


def probe_tokens(model: CLIP, rows: int, end: int) -> torch.Tensor:
    """Rows of made-up token ids with the end-of-text (the highest id) at `end` or before."""
    generator = torch.Generator().manual_seed(rows * 100 + end)
    vocab = model.token_embedding.num_embeddings
    tokens = torch.zeros(rows, model.context_length, dtype=torch.int32)  # as clip.tokenize
    for row in range(rows):
        stop = max(1, end - row)
        tokens[row, :stop] = torch.randint(1, vocab - 1, (stop,), generator=generator)
        tokens[row, stop] = vocab - 1
    return tokens


def traced_tower(model: CLIP, context: Any) -> torch.jit.ScriptModule | None:
    """The truncated text pass as a TorchScript trace, or None where the trace does not give
    the eager pass's features to the bit on every parity shape (it then stays eager).
    `context` makes the conditions the encoder runs under (inference mode, autocast)."""
    device = next(model.parameters()).device
    eager = TruncatedText(model).eval()
    try:
        with context(), warnings.catch_warnings():
            # The tracer warns that shapes become constants; the parity checks below are
            # what says whether that mattered.
            warnings.simplefilter("ignore")
            example = cut(probe_tokens(model, 2, 7).to(device))
            tower = torch.jit.trace(eager, example, check_trace=False)
            for rows, end in _PARITY_SHAPES:
                tokens = probe_tokens(model, rows, min(end, model.context_length - 1))
                expected = encode_tokens(model, tokens.to(device))
                got = encode_tokens(model, tokens.to(device), tower)
                if not torch.equal(expected, got):
                    log.warning(
                        "the traced text tower differs from the eager one (%s rows, %s "
                        "tokens: %.3g at most); texts are encoded eagerly",
                        rows,
                        end,
                        float((expected.float() - got.float()).abs().max()),
                    )
                    return None
    except Exception:  # a model the tracer cannot follow is still served, eagerly
        log.warning("cannot trace the text tower; texts are encoded eagerly", exc_info=True)
        return None
    return tower
