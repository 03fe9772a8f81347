"""Writing a checkpoint directory: config, tokenizer, safetensors, and quarch's sidecar.

Both targets write through transformers' `save_pretrained` (config.json, generation config,
safetensors shards, tied weights stored once) with the tensors given explicitly, then the
tokenizer, then `quarch_export.json`: the QuantConfig, each layer's formats, and what the target
cannot express (run-time activation or KV-cache formats in a plain HF checkpoint).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from quarch._atomic import write_json

SIDECAR = "quarch_export.json"


def untie_if_needed(model: Any, state: Mapping[str, torch.Tensor]) -> bool:
    """Whether the input embedding and LM head, tied in the model, now hold different values
    (one of them was quantized): then the checkpoint must store both, untied."""
    config = model.config
    if not getattr(config, "tie_word_embeddings", False):
        return False
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    if inp is None or out is None:
        return False
    names = {id(m): n for n, m in model.named_modules()}
    a, b = state.get(f"{names[id(inp)]}.weight"), state.get(f"{names[id(out)]}.weight")
    return a is not None and b is not None and not torch.equal(a, b)


def save_checkpoint(
    model: Any,
    tokenizer: Any,
    state: Mapping[str, torch.Tensor],
    out_dir: Path,
    *,
    untie: bool,
) -> None:
    """Write config, tensors (`state`, contiguous) and tokenizer files into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in state.items()}
    config = model.config
    was_tied = getattr(config, "tie_word_embeddings", False)
    if untie:
        config.tie_word_embeddings = False
    try:
        model.save_pretrained(str(out_dir), state_dict=tensors)
    finally:
        config.tie_word_embeddings = was_tied
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out_dir))


def write_sidecar(out_dir: Path, record: Mapping[str, Any]) -> Path:
    path = out_dir / SIDECAR
    write_json(path, record)
    return path


def written_files(out_dir: Path) -> tuple[str, ...]:
    return tuple(sorted(p.name for p in out_dir.iterdir() if p.is_file()))
