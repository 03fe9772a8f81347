"""The compressed-tensors target: packed codes and quarch's scales, through the library.

For each quantized linear layer, quarch encodes its dequantized weight (`quarch.formats.encode`
for the element codes, `compute_scales` for the float32 scales and zero-points) and checks that
`(q - zero_point) * scale` gives the weight back bit for bit. The library's compressor for the
layer's scheme (`pack-quantized` for integers: codes packed into int32 words; `float-quantized`
for e4m3: float8 codes) then builds the layer's tensors from the weight and those scales, and the
export checks that the stored codes are quarch's codes and that the library's `decompress` gives
the weight back bit for bit. Layers sharing a (weight, input) scheme form one `config_groups`
entry whose `targets` list their names; layers left in float go to `ignore`; a quantized KV
cache becomes the `kv_cache_scheme` with k_scale / v_scale of 1.0 per attention module. The
library's `ModelCompressor.update_config` writes the `quantization_config` into config.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from quarch.export._codes import CODES, layer_tensors
from quarch.export._collect import ExportLayer, Quantized
from quarch.export._schemes import input_args, kv_args, nearest_supported, weight_args
from quarch.formats import (
    IntElement,
    ScalingKind,
)

# vLLM's llama-style models fuse these projections into one GEMM (`packed_modules_mapping` in
# vllm/model_executor/models/llama.py); a fused group must share one scheme to load.
FUSED_GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


@dataclass(frozen=True, kw_only=True)
class CTLayout:
    """The compressed tensors and the `quantization_config` the library writes."""

    state_dict: dict[str, torch.Tensor]
    quantization_config: Any  # compressed_tensors.quantization.QuantizationConfig
    schemes: dict[str, list[str]]  # "weight=…, input=…" -> layer names
    warnings: tuple[str, ...]


def require_library() -> None:
    try:
        import compressed_tensors  # noqa: F401
    except ImportError:
        raise ValueError(
            "the compressed-tensors target needs the `compressed-tensors` package: "
            "pip install 'quarch[export]'"
        ) from None


# ---- one layer -----------------------------------------------------------------------------


def _check_shape(layer: ExportLayer) -> None:
    """compressed-tensors needs groups and blocks that divide the weight (quarch pads)."""
    fmt = layer.weight_format
    assert fmt is not None
    sc, (rows, cols) = fmt.scaling, tuple(layer.weight.shape)
    if sc.kind is ScalingKind.GROUP and cols % sc.block[0]:
        near = sc.block[0]
        while near > 1 and cols % near:
            near //= 2
        raise ValueError(
            f"layer {layer.name}: {cols} inputs are not a multiple of {fmt}'s group of "
            f"{sc.block[0]}; compressed-tensors needs whole groups (nearest supported: groups "
            f"of {near})"
        )
    if sc.kind is ScalingKind.BLOCK2D and (rows % sc.block[0] or cols % sc.block[1]):
        raise ValueError(
            f"layer {layer.name}: a [{rows}, {cols}] weight is not whole {sc.block[0]}x"
            f"{sc.block[1]} blocks of {fmt}; nearest supported: per-channel scales ("
            f"{'int8' if isinstance(fmt.element, IntElement) else 'fp8_e4m3_c'})"
        )


def compress_layer(layer: ExportLayer, scheme: Any) -> dict[str, torch.Tensor]:
    """The layer's stored tensors (local names), by the library's compressor for `scheme`,
    checked to hold quarch's codes and to decompress to the weight bit for bit."""
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.compressors.format import infer_module_format

    fmt = layer.weight_format
    assert fmt is not None
    _check_shape(layer)
    tensors = layer_tensors(layer)
    codes = tensors.pop(CODES)
    scheme.format = infer_module_format(torch.nn.Linear, scheme)
    compressor = BaseCompressor.get_value_from_registry(scheme.format.value)
    packed = compressor.compress(dict(tensors), scheme)
    back = compressor.decompress(dict(packed), scheme)["weight"]
    if not torch.equal(back.to(torch.float32), tensors["weight"]):
        raise ValueError(
            f"layer {layer.name}: compressed-tensors' {scheme.format.value} does not give "
            f"quarch's {fmt} weights back bit for bit (its dequantization rounds differently "
            f"here); nearest supported: {nearest_supported(fmt)}"
        )
    if not _check_codes(packed, codes, scheme):
        raise AssertionError(f"{layer.name}: stored codes differ from quarch's")
    return dict(packed)


def _check_codes(packed: Mapping[str, torch.Tensor], codes: torch.Tensor, scheme: Any) -> bool:
    """Whether the stored codes are quarch's: unpacked (integers) or read (float8) back."""
    if "weight_packed" in packed and packed["weight_packed"].dtype == torch.uint8:  # fp4
        from compressed_tensors.compressors.nvfp4.helpers import unpack_fp4_from_uint8

        rows, cols = codes.shape
        got = unpack_fp4_from_uint8(packed["weight_packed"], rows, cols, dtype=torch.float32)
        return torch.equal(got, codes)
    if "weight_packed" in packed:
        from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32

        got = unpack_from_int32(
            packed["weight_packed"], scheme.weights.num_bits, packed["weight_shape"]
        )
        return torch.equal(got.to(torch.int64), codes)
    if packed["weight"].dtype == torch.float8_e4m3fn:
        return torch.equal(
            packed["weight"].view(torch.uint8).to(torch.int64), codes.to(torch.int64)
        )
    return torch.equal(packed["weight"].to(torch.int64), codes)


# ---- the whole model ----------------------------------------------------------------------


def _scheme_key(layer: ExportLayer) -> str:
    w = "float" if layer.weight_format is None else str(layer.weight_format)
    x = "float" if layer.input_format is None else str(layer.input_format)
    return f"weight={w}, input={x}"


def _scheme(layer: ExportLayer) -> Any:
    from compressed_tensors.quantization import QuantizationScheme

    if layer.kind != "linear":
        raise ValueError(
            f"layer {layer.name}: serving engines load compressed-tensors weights of linear "
            "layers only; nearest exportable: keep the embedding in float (or use --to hf)"
        )
    w = weight_args(layer.weight_format, where=layer.name) if layer.weight_format else None
    x = input_args(layer.input_format, where=layer.name) if layer.input_format else None
    return QuantizationScheme(targets=[layer.name], weights=w, input_activations=x)


def _fused_warnings(schemes: Mapping[str, str]) -> list[str]:
    """Fused projections of one block given different schemes (vLLM cannot load those).

    schemes: every linear layer's name -> its scheme description ("float" if not quantized).
    """
    out = []
    for group in FUSED_GROUPS:
        by_parent: dict[str, dict[str, str]] = {}
        for name, scheme in schemes.items():
            parent, _, leaf = name.rpartition(".")
            if leaf in group:
                by_parent.setdefault(parent, {})[leaf] = scheme
        for parent, got in by_parent.items():
            if len(set(got.values())) > 1:
                out.append(
                    f"{parent}: {'/'.join(group)} have different schemes ({got}); vLLM fuses "
                    "them into one layer and will refuse this checkpoint (transformers loads it)"
                )
    return out


def _activation_warnings(q: Quantized) -> list[str]:
    """Input formats the engine quantizes by a slightly different rule than quarch."""
    n = sum(
        1
        for lay in q.layers.values()
        if lay.input_format is not None and isinstance(lay.input_format.element, IntElement)
    )
    if not n:
        return []
    return [
        f"inputs of {n} layers are int8 per token: engines scale them by amax / 127.5 on "
        "[-128, 127] (the library's dynamic per-token int8), quarch by amax / 127 on "
        "[-127, 127]; the activations differ slightly from quarch's emulation"
    ]


def _kv_scheme(q: Quantized) -> tuple[Any, dict[str, torch.Tensor]]:
    if not q.kv:
        return None, {}
    fmts = {f for pair in q.kv.values() for f in pair}
    if len(fmts) != 1 or None in fmts:
        raise ValueError(
            f"the KV cache has formats {sorted(str(f) for f in fmts)} across layers and roles; "
            "compressed-tensors has one kv_cache_scheme per model, so give every attention "
            "layer's keys and values one format (nearest supported: fp8_e4m3)"
        )
    (fmt,) = fmts
    assert fmt is not None
    args = kv_args(fmt)
    one = torch.ones(1, dtype=torch.float32)
    scales = {f"{n}.{k}": one.clone() for n in q.kv for k in ("k_scale", "v_scale")}
    return args, scales


def ct_layout(q: Quantized, linear_names: list[str], progress: Any = None) -> CTLayout:
    """Compress every quantized layer of `q`; `linear_names` are all linear layers of the model
    (those not quantized go to `ignore`). `progress()` is called once per layer."""
    from compressed_tensors.quantization import QuantizationConfig, QuantizationStatus

    state = dict(q.state_dict)
    groups: dict[str, Any] = {}
    members: dict[str, list[str]] = {}
    formats = set()
    for name, layer in q.layers.items():
        scheme = _scheme(layer)
        key = _scheme_key(layer)
        if layer.weight_format is not None:
            packed = compress_layer(layer, scheme)
            del state[f"{name}.weight"]
            state.update({f"{name}.{k}": v for k, v in packed.items()})
        else:
            scheme.format = None
        if layer.input_format is not None and not scheme.input_activations.dynamic:
            state[f"{name}.input_scale"] = torch.ones(1, dtype=torch.float32)
        if key not in groups:
            groups[key] = scheme
            members[key] = []
        members[key].append(name)
        formats.add(scheme.format)
        if progress is not None:
            progress()
    config_groups = {}
    for i, (key, scheme) in enumerate(groups.items()):
        scheme.targets = list(members[key])
        config_groups[f"group_{i}"] = scheme
    kv, kv_scales = _kv_scheme(q)
    state.update(kv_scales)
    formats.discard(None)
    qc = QuantizationConfig(
        config_groups=config_groups,
        kv_cache_scheme=kv,
        format=_summary_format(formats),
        quantization_status=QuantizationStatus.COMPRESSED,
        ignore=[n for n in linear_names if n not in q.layers],
    )
    by_name = {n: _scheme_key(lay) for n, lay in q.layers.items()}
    all_linear = {n: by_name.get(n, "float") for n in linear_names}
    return CTLayout(
        state_dict=state,
        quantization_config=qc,
        schemes=members,
        warnings=tuple(_fused_warnings(all_linear) + _activation_warnings(q)),
    )


def _summary_format(formats: set[Any]) -> str:
    if not formats:
        return "dense"
    if len(formats) == 1:
        return str(next(iter(formats)).value)
    return "mixed-precision"


def update_config(out_dir: str, quantization_config: Any) -> None:
    """Write `quantization_config` into out_dir/config.json, by the library."""
    from compressed_tensors.compressors import ModelCompressor

    ModelCompressor(quantization_config=quantization_config).update_config(out_dir)
