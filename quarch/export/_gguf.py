"""The `gguf` target: one GGUF file for llama.cpp, each tensor in its own GGUF type.

A linear (or embedding) weight is stored in the GGUF type of the format the QuantConfig gave it
(`q4_0`, `q4_k`, ... or `fp16` / `bf16` / `fp32`), its bytes from quarch's own packer
(`quarch.formats.encode_gguf_bytes`), then checked: dequantized again they must equal the weight
of quarch's quantized model bit for bit, or the export is refused. Unquantized weights, norms
and everything else are stored as F32.

Refusals (ValueError), each naming what can be exported instead:
- a weight format with no GGUF type: the nearest GGUF type (`int4_g32` -> `q4_0`,
  `int8_g32` -> `q8_0`, `int4_g128` -> `q4_k`, ...);
- a K-quant on rows that are not a multiple of 256: llama.cpp's own fallback type
  (`gguf_fallback`); quarch never substitutes it silently, since the file would then no longer
  hold the design that was measured;
- a model that is not a LLaMA-family decoder, or uses rope scaling.

Tensor names come from `gguf`'s own HF -> GGUF map (`gguf.get_tensor_name_map`), and the query
and key weights are permuted as llama.cpp's `convert_hf_to_gguf.py` (`LlamaModel.permute`)
does: llama.cpp rotates adjacent pairs, HF rotates halves. The tokenizer is copied from the
source GGUF when the model came from one (the shipped SmolLM2 does); for any other tokenizer
the file says `tokenizer.ggml.model = none` and the export record lists that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quarch._atomic import atomic_path
from quarch.export._collect import ExportLayer, Quantized
from quarch.formats import (
    Format,
    decode_gguf_bytes,
    encode_gguf_bytes,
    gguf_fallback,
    gguf_type_of,
)
from quarch.quant import QuantConfig, plan_config

ARCH = "llama"
_FAMILIES = ("llama",)  # HF model_type values written as llama.cpp's `llama` architecture


@dataclass(frozen=True, kw_only=True)
class GgufWritten:
    """What `write_gguf` wrote: the file, tensor types (GGUF type name -> tensors), notes."""

    path: Path
    types: Mapping[str, int]
    not_expressed: tuple[str, ...]


def gguf_file(out: Path) -> Path:
    """The file an export to `out` writes: `out` itself when it ends in .gguf, else
    out/model.gguf."""
    return out if out.suffix == ".gguf" else out / "model.gguf"


def _nearest_block(fmt: Format, row_length: int) -> str:
    """The GGUF type nearest to a format that has none (by element bits and group size)."""
    from quarch.formats import GGUF_FORMATS

    bits = getattr(fmt.element, "bits", None)
    block = fmt.scaling.block[-1] if fmt.scaling.block else 0
    small_group = 0 < block <= 32
    if bits is None or bits >= 8:
        name = "q8_0"
    elif bits >= 6:
        name = "q6_k"
    elif bits == 5:
        name = "q5_0" if small_group else "q5_k"
    elif bits == 4:
        name = "q4_0" if small_group else "q4_k"
    elif bits == 3:
        name = "q3_k"
    else:
        name = "q2_k"
    return str(gguf_fallback(GGUF_FORMATS[name], row_length))


def check_format(tensor: str, fmt: Format, row_length: int) -> None:
    """Refuse `fmt` for a tensor of rows `row_length` long unless GGUF stores it as it is."""
    if gguf_type_of(fmt) is None:
        raise ValueError(
            f"{tensor}: format {fmt} has no GGUF tensor type; nearest GGUF type: "
            f"{_nearest_block(fmt, row_length)} (GGUF stores fp32, fp16, bf16 and the block "
            "types q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, q2_k..q6_k)"
        )
    if fmt.scaling.block and gguf_fallback(fmt, row_length) != fmt:
        raise ValueError(
            f"{tensor}: {fmt} needs rows a multiple of {fmt.scaling.block[-1]}, but its rows "
            f"are {row_length} long; llama.cpp's fallback for it is "
            f"{gguf_fallback(fmt, row_length)}: give this layer that format in the config"
        )


def check_plan(model: Any, config: QuantConfig) -> None:
    """Refuse, before anything is quantized, a weight format that GGUF cannot store as it is."""
    modules = dict(model.named_modules())
    for name, layer in plan_config(model, config).layers.items():
        fmt = layer.weight_format
        if fmt is not None:
            check_format(f"{name}.weight", fmt, int(modules[name].weight.shape[-1]))


def rope_permute(w: np.ndarray, n_head: int, *, inverse: bool = False) -> np.ndarray:
    """Reorder the rows of a query/key weight (or its block bytes) between HF's rotate-half
    layout and llama.cpp's adjacent-pair layout (`convert_hf_to_gguf.py`, LlamaModel.permute);
    `inverse=True` undoes it."""
    rows = w.shape[0]
    if rows % (2 * n_head):
        raise ValueError(f"{rows} rows do not split into {n_head} heads of rotary pairs")
    half = rows // n_head // 2
    if inverse:
        return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    return w.reshape(n_head, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _encode(tensor: str, layer: ExportLayer, fmt: Format) -> np.ndarray:
    """The bytes of `layer`'s weight in `fmt`'s GGUF type, checked against quarch's weight."""
    target = layer.weight.detach().to(torch.float32).cpu()
    if not fmt.scaling.block:  # fp16 / bf16 / fp32: the weight is already on the grid
        data = encode_gguf_bytes(fmt, target)
        back = torch.from_numpy(data.copy()).view(_FLOAT_DTYPES[str(fmt)]).to(torch.float32)
        if torch.equal(back.reshape(target.shape), target):
            return data
    else:
        sources = [layer.original, target] if layer.original is not None else [target]
        for source in sources:
            data = encode_gguf_bytes(fmt, source.detach().to(torch.float32).cpu())
            if torch.equal(decode_gguf_bytes(fmt, data), target):
                return data
    raise ValueError(
        f"{tensor}: quarch's {fmt} weight (method {layer.method!r}) is not what {fmt}'s GGUF "
        "encoding of it gives back; export it with method rtn"
    )


_FLOAT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _config_int(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    raise ValueError(f"the model config has none of {names}")


def _rope_theta(config: Any) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    scaling = getattr(config, "rope_scaling", None) or {}
    rope_type = params.get("rope_type") or scaling.get("rope_type") or "default"
    if rope_type != "default":
        raise ValueError(
            f"rope type {rope_type!r} is not written by the gguf target (only plain RoPE); "
            "nearest exportable target: hf"
        )
    theta = params.get("rope_theta", getattr(config, "rope_theta", None))
    if theta is None:
        raise ValueError("the model config has no rope_theta")
    return float(theta)


def _write_hparams(writer: Any, model: Any) -> tuple[int, int]:
    """llama.* keys from the HF config (the keys `convert_hf_to_gguf.py` writes for LLaMA);
    (query heads, KV heads)."""
    config = model.config
    if getattr(config, "model_type", None) not in _FAMILIES:
        raise ValueError(
            f"the gguf target writes LLaMA-family models ({', '.join(_FAMILIES)}), got "
            f"model_type {getattr(config, 'model_type', None)!r}; nearest exportable target: hf"
        )
    hidden = _config_int(config, "hidden_size")
    heads = _config_int(config, "num_attention_heads")
    kv_heads = _config_int(config, "num_key_value_heads", "num_attention_heads")
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    writer.add_context_length(_config_int(config, "max_position_embeddings"))
    writer.add_embedding_length(hidden)
    writer.add_block_count(_config_int(config, "num_hidden_layers"))
    writer.add_feed_forward_length(_config_int(config, "intermediate_size"))
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_rope_dimension_count(int(head_dim))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(_config_int(config, "vocab_size"))
    return heads, kv_heads


def _write_tokenizer(writer: Any, source: str) -> list[str]:
    """Copy tokenizer.* keys from a source GGUF; otherwise write vocab type `none` and say so."""
    import gguf

    if source.endswith(".gguf") and Path(source).is_file():
        reader = gguf.GGUFReader(source)
        for key, field in reader.fields.items():
            if not key.startswith("tokenizer."):
                continue
            vtype = field.types[0]
            sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(key, field.contents(), vtype, sub)
        return []
    writer.add_tokenizer_model("none")
    return [
        f"tokenizer of {source!r}: only a tokenizer read from a GGUF source is copied; the file "
        "has `tokenizer.ggml.model = none` (llama.cpp loads it, but cannot tokenize text): "
        "export from the model's GGUF, or convert its tokenizer with llama.cpp's "
        "convert_hf_to_gguf.py"
    ]


def _tensor_plan(
    loaded: Any, q: Quantized, untie: bool
) -> list[tuple[str, str, torch.Tensor, ExportLayer | None]]:
    """(HF name, GGUF name, tensor, quantized layer or None) for every tensor to write."""
    import gguf

    config = loaded.model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, int(config.num_hidden_layers))
    tied = bool(getattr(config, "tie_word_embeddings", False)) and not untie
    plan = []
    for key, value in q.state_dict.items():
        if tied and key == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when the file has no output.weight
        gname = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if gname is None:
            raise ValueError(f"tensor {key!r} has no llama.cpp name (gguf's LLaMA tensor map)")
        layer = q.layers.get(key.removesuffix(".weight")) if key.endswith(".weight") else None
        plan.append((key, gname, value, layer))
    return plan


def write_gguf(
    loaded: Any,
    q: Quantized,
    path: Path,
    *,
    untie: bool,
    advance: Callable[[], None] | None = None,
) -> GgufWritten:
    """Write `q` (quarch's quantized tensors of `loaded.model`) as the GGUF file `path`.

    Raises:
        ValueError: see the module doc.
    """
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # never a partial .gguf under its final name
        return _write_to(gguf, loaded, q, path, tmp, untie=untie, advance=advance)


def _write_to(
    gguf: Any,
    loaded: Any,
    q: Quantized,
    path: Path,
    tmp: Path,
    *,
    untie: bool,
    advance: Callable[[], None] | None,
) -> GgufWritten:
    writer = gguf.GGUFWriter(str(tmp), ARCH)
    writer.add_name(str(getattr(loaded.model.config, "_name_or_path", "") or "quarch export"))
    heads, kv_heads = _write_hparams(writer, loaded.model)
    notes = _write_tokenizer(writer, str(getattr(loaded, "source", "")))
    types: dict[str, int] = {}
    tensors = []
    for key, gname, value, layer in _tensor_plan(loaded, q, untie):
        fmt = layer.weight_format if layer is not None else None
        if layer is not None and fmt is not None:
            check_format(key, fmt, int(value.shape[-1]))
            data = _encode(key, layer, fmt)
            qtype = gguf_type_of(fmt)
        else:
            data = value.detach().to(torch.float32).cpu().numpy()
            qtype = gguf.GGMLQuantizationType.F32
        if gname.endswith("attn_q.weight"):
            data = rope_permute(data, heads)
        elif gname.endswith("attn_k.weight"):
            data = rope_permute(data, kv_heads)
        assert qtype is not None
        tensors.append((gname, np.ascontiguousarray(data), qtype))
        types[qtype.name] = types.get(qtype.name, 0) + 1
    for gname, data, qtype in tensors:
        raw = None if qtype is gguf.GGMLQuantizationType.F32 else qtype
        writer.add_tensor(gname, data, raw_dtype=raw)
        if advance is not None:
            advance()
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return GgufWritten(path=path, types=types, not_expressed=tuple(notes))


def runtime_not_expressed(q: Quantized) -> list[str]:
    """Run-time formats a GGUF file cannot carry (llama.cpp picks them at load time)."""
    from quarch.export._collect import kv_formats_by_role

    out = []
    inputs = sorted({str(lay.input_format) for lay in q.layers.values() if lay.input_format})
    if inputs:
        out.append(
            f"linear inputs in {', '.join(inputs)}: a GGUF file has no activation format "
            "(llama.cpp chooses how it multiplies each weight type)"
        )
    for role, counts in kv_formats_by_role(q.kv).items():
        quant = sorted(f for f in counts if f != "float")
        if quant:
            flag = "-ctk" if role == "k_cache" else "-ctv"
            out.append(
                f"{role} in {', '.join(quant)}: a GGUF file has no KV-cache format; llama.cpp "
                f"sets it at run time ({flag} q8_0, {flag} q4_0, ...)"
            )
    return out
