"""Pack GGUF blocks into the exact byte layout of llama.cpp's `block_*` structs.

Layouts (ggml/src/ggml-common.h; little-endian; fp16 = IEEE half):
  q8_0   d(fp16) qs[32](int8)
  q4_0   d qs[16]                  qs[j] = q[j] | q[j + 16] << 4
  iq4_nl d qs[16]                  as q4_0, the nibbles index kvalues_iq4nl
  q4_1   d m qs[16]
  q5_0   d qh[4] qs[16]            qh: uint32 whose bit j is bit 4 of q[j]; qs low nibbles
  q5_1   d m qh[4] qs[16]
The result has gguf's shape: the last dim becomes n / block × bytes per block.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import gguf
import numpy as np
import torch

from quarch.formats._api import _check_input
from quarch.formats._gguf import gguf_codes, gguf_values
from quarch.formats._gguf_kpack import K_PACKERS, K_UNPACKERS
from quarch.formats._gguf_types import GGUF_TYPES, GgufCodes
from quarch.formats._spec import Format, GgufBlock


def _u8(t: object) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(t)).view(np.uint8)


def _half(d: object, nb_shape: tuple[int, ...]) -> np.ndarray:
    """fp16 [..., nb] → uint8 [..., nb, 2]."""
    return _u8(np.asarray(d, dtype=np.float16).reshape(*nb_shape, 1))


def _nibbles(q: np.ndarray) -> np.ndarray:
    """[..., 32k] codes → [..., 16k] bytes, the low nibbles of each 32 as llama.cpp packs them:
    byte j of a group of 32 holds element j (low) and element j + 16 (high)."""
    g = (q & 0xF).astype(np.uint8).reshape(*q.shape[:-1], -1, 2, 16)
    return (g[..., 0, :] | (g[..., 1, :] << 4)).reshape(*q.shape[:-1], -1)


def _high_bits(q: np.ndarray, bit: int) -> np.ndarray:
    """[..., 32] codes → [..., 4] bytes: a little-endian uint32 whose bit j is q[j]'s `bit`."""
    b = ((q >> bit) & 1).astype(np.uint8)
    return np.packbits(b, axis=-1, bitorder="little")


def _legacy(c: GgufCodes, *, with_min: bool = False, fifth_bit: bool = False) -> np.ndarray:
    q = c.q.numpy()
    nb_shape = tuple(q.shape[:-1])
    parts = [_half(c.d.numpy(), nb_shape)]
    if with_min:
        assert c.dmin is not None
        parts.append(_half(c.dmin.numpy(), nb_shape))
    if fifth_bit:
        parts.append(_high_bits(q, 4))
    parts.append(_nibbles(q))
    return np.concatenate(parts, axis=-1)


def _q8_0(c: GgufCodes) -> np.ndarray:
    q = c.q.numpy()
    return np.concatenate([_half(c.d.numpy(), tuple(q.shape[:-1])), _u8(q.astype(np.int8))], -1)


_LEGACY: dict[str, tuple[bool, bool]] = {
    "q4_0": (False, False),
    "iq4_nl": (False, False),
    "q4_1": (True, False),
    "q5_0": (False, True),
    "q5_1": (True, True),
}
"""The 32-element legacy types by what their block holds beside d and the nibbles: (a minimum
m, the fifth bits qh), as in ggml-common.h's `block_q4_1`, `block_q5_0`, `block_q5_1`;
packing and unpacking both read it."""

PACKERS: dict[str, Callable[[GgufCodes], np.ndarray]] = {
    "q8_0": _q8_0,
    **{name: partial(_legacy, with_min=m, fifth_bit=f) for name, (m, f) in _LEGACY.items()},
    **K_PACKERS,
}


def _half_of(b: np.ndarray) -> torch.Tensor:
    """uint8 [..., 2] → float16 [...]."""
    return torch.from_numpy(np.ascontiguousarray(b).view(np.float16)[..., 0].copy())


def _unnibble(b: np.ndarray) -> np.ndarray:
    """Inverse of `_nibbles`: [..., 16k] bytes → [..., 32k] codes."""
    g = b.reshape(*b.shape[:-1], -1, 1, 16)
    return np.concatenate([g & 0xF, g >> 4], axis=-2).reshape(*b.shape[:-1], -1).astype(np.int32)


def _unpack_legacy(b: np.ndarray, *, with_min: bool = False, fifth_bit: bool = False) -> GgufCodes:
    d, at = _half_of(b[..., 0:2]), 2
    m = None
    if with_min:
        m, at = _half_of(b[..., 2:4]), 4
    q = _unnibble(b[..., at + 4 * fifth_bit :])
    if fifth_bit:
        high = np.unpackbits(b[..., at : at + 4], axis=-1, bitorder="little").astype(np.int32)
        q = q | (high << 4)
    return GgufCodes(q=torch.from_numpy(q), d=d, dmin=m)


def _unpack_q8_0(b: np.ndarray) -> GgufCodes:
    q = np.ascontiguousarray(b[..., 2:]).view(np.int8).astype(np.int32)
    return GgufCodes(q=torch.from_numpy(q), d=_half_of(b[..., 0:2]))


UNPACKERS: dict[str, Callable[[np.ndarray], GgufCodes]] = {
    "q8_0": _unpack_q8_0,
    **{name: partial(_unpack_legacy, with_min=m, fifth_bit=f) for name, (m, f) in _LEGACY.items()},
    **K_UNPACKERS,
}


def unpack(name: str, data: np.ndarray) -> GgufCodes:
    """The blocks of GGUF bytes `data` (uint8 [..., nb × bytes per block]) of type `name`."""
    t = GGUF_TYPES[name]
    if data.dtype != np.uint8 or data.shape[-1] % t.type_bytes:
        raise ValueError(
            f"GGUF {name} data must be uint8 with a last dim a multiple of {t.type_bytes}, "
            f"got {data.dtype} {data.shape}"
        )
    blocks = data.reshape(*data.shape[:-1], -1, t.type_bytes)
    return UNPACKERS[name](blocks)


def pack(name: str, c: GgufCodes) -> np.ndarray:
    """uint8 [..., nb × bytes per block] of the blocks `c` of type `name`."""
    blocks = PACKERS[name](c.cpu())  # [..., nb, bytes]
    return np.ascontiguousarray(blocks.reshape(*blocks.shape[:-2], -1))


_FLOAT_TYPES = {"fp32": "F32", "fp16": "F16", "bf16": "BF16"}


def gguf_type_of(fmt: Format) -> gguf.GGMLQuantizationType | None:
    """The GGUF tensor type that stores `fmt` exactly: a block type for `q4_k` and the like,
    F32 / F16 / BF16 for `fp32` / `fp16` / `bf16`, and None for every other format."""
    if not isinstance(fmt, Format):
        raise TypeError(f"expected a quarch Format, got {type(fmt).__name__}")
    if isinstance(fmt.element, GgufBlock):
        name = GGUF_TYPES[fmt.element.name].ggml_name
    elif (float_name := _FLOAT_TYPES.get(str(fmt))) is not None:
        name = float_name
    else:
        return None
    return gguf.GGMLQuantizationType[name]


def encode_gguf_bytes(fmt: Format, x: torch.Tensor) -> np.ndarray:
    """`x` in the exact byte layout of its GGUF tensor type, for a GGUF writer.

    Returns uint8 of shape x.shape[:-1] + (n / block × bytes per block,), what
    `gguf.quants.quantize` returns for the block types, so `gguf.quants.dequantize(result,
    gguf_type_of(fmt))` equals `quantize(fmt, x)` bit for bit. F32 / F16 / BF16 formats give their
    little-endian bytes (bf16 rounded to nearest even, as quarch's `bf16` rounds).

    Raises:
        ValueError: `fmt` has no GGUF type, or x's last dim is not a multiple of the block size.
        TypeError: x is not a float32, bfloat16 or float16 tensor.
    """
    qtype = gguf_type_of(fmt)
    if qtype is None:
        raise ValueError(
            f"format {fmt} has no GGUF tensor type; GGUF stores fp32, fp16, bf16 and the block "
            f"types {', '.join(GGUF_TYPES)} (the nearest to a 4-bit group format is q4_k)"
        )
    _check_input(fmt, x)
    xf = x.detach().to(torch.float32)
    if not isinstance(fmt.element, GgufBlock):
        dt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[str(fmt)]
        xf = xf.cpu()
        flat = xf.to(dt).contiguous().view(torch.uint8) if xf.dim() else xf.to(dt).reshape(1)
        return flat.numpy().reshape(*xf.shape[:-1], -1).copy()
    return pack(fmt.element.name, gguf_codes(fmt.element, xf))


def decode_gguf_bytes(fmt: Format, data: np.ndarray) -> torch.Tensor:
    """float32 values of GGUF block bytes (the inverse of `encode_gguf_bytes` for block types):
    quarch's dequantizer, equal bit for bit to `gguf.quants.dequantize(data, gguf_type_of(fmt))`.
    """
    if not isinstance(fmt, Format) or not isinstance(fmt.element, GgufBlock):
        raise ValueError(f"decode_gguf_bytes takes a GGUF block type, got {fmt}")
    c = unpack(fmt.element.name, data)
    return gguf_values(fmt.element, c).reshape(*data.shape[:-1], -1)


# llama.cpp's fallback for K-quant rows not a multiple of 256 (src/llama-quant.cpp,
# llama_tensor_get_type: "tensor cols … are not divisible by 256 … using fallback quantization").
K_FALLBACK = {"q2_k": "iq4_nl", "q3_k": "iq4_nl", "q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0"}


def gguf_fallback(fmt: Format, row_length: int) -> Format:
    """The format llama-quantize stores a tensor of rows `row_length` long in, asked for `fmt`.

    `fmt` itself when its block divides the row; for a K-quant that does not fit, llama.cpp's
    fallback (q2_k, q3_k → iq4_nl; q4_k → q5_0; q5_k → q5_1; q6_k → q8_0), and fp16 where that
    does not fit either. Raises ValueError for a legacy type whose block does not divide the row
    (llama.cpp refuses those) and for formats that are not GGUF block types.
    """
    from quarch.formats._presets import GGUF_FORMATS, PRESETS

    if not isinstance(fmt, Format) or not isinstance(fmt.element, GgufBlock):
        raise ValueError(f"gguf_fallback takes a GGUF block type, got {fmt}")
    if row_length <= 0:
        raise ValueError(f"row_length must be positive, got {row_length}")
    name = fmt.element.name
    if row_length % fmt.element.block == 0:
        return fmt
    if name not in K_FALLBACK:
        raise ValueError(
            f"GGUF type {name} needs rows a multiple of {fmt.element.block}, got {row_length}"
        )
    fallback = GGUF_FORMATS[K_FALLBACK[name]]
    assert isinstance(fallback.element, GgufBlock)
    return fallback if row_length % fallback.element.block == 0 else PRESETS["fp16"]
