"""Byte layouts of the K-quants (llama.cpp ggml-common.h `block_q{2..6}_K`), pack and unpack.

  q2_k  scales[16] (low nibble: sub-scale, high: sub-min), qs[64], d, dmin          84 bytes
  q3_k  hmask[32], qs[64], scales[12] (6-bit, stored + 32), d                      110 bytes
  q4_k  d, dmin, scales[12] (6-bit sub-scales and sub-mins), qs[128]               144 bytes
  q5_k  d, dmin, scales[12], qh[32], qs[128]                                       176 bytes
  q6_k  ql[128], qh[64], scales[16] (int8), d                                      210 bytes
Two-bit planes (q2_k/q3_k qs, q6_k qh): byte l of each 128 elements holds elements l, l+32,
l+64, l+96 at bits 0, 2, 4, 6. Bit planes (q3_k hmask, q5_k qh): bit b of byte l is element
32b + l. Nibbles (q4_k, q5_k qs): byte l of each 64 holds element l (low) and l+32 (high).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from quarch.formats._gguf_types import GgufCodes


def _lead(a: np.ndarray) -> tuple[int, ...]:
    return tuple(a.shape[:-1])


def _half_bytes(d: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(d.numpy().astype(np.float16)[..., None]).view(np.uint8)


def _half(b: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(b).view(np.float16)[..., 0].copy())


def _crumbs(v: np.ndarray) -> np.ndarray:
    """[..., 256] 2-bit values → [..., 64] bytes (two-bit planes)."""
    g = v.reshape(*_lead(v), 2, 4, 32).astype(np.uint8)
    out = g[..., 0, :] | (g[..., 1, :] << 2) | (g[..., 2, :] << 4) | (g[..., 3, :] << 6)
    return out.reshape(*_lead(v), 64)


def _uncrumbs(b: np.ndarray) -> np.ndarray:
    g = b.reshape(*_lead(b), 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)
    return (g & 3).reshape(*_lead(b), 256).astype(np.int32)


def _bitplanes(bits: np.ndarray) -> np.ndarray:
    """[..., 256] 0/1 → [..., 32] bytes: bit b of byte l is element 32b + l."""
    g = bits.reshape(*_lead(bits), 8, 32).astype(np.uint8)
    out = np.zeros((*_lead(bits), 32), np.uint8)
    for b in range(8):
        out |= g[..., b, :] << b
    return out


def _unbitplanes(b: np.ndarray) -> np.ndarray:
    g = b[..., None, :] >> np.arange(8, dtype=np.uint8).reshape(8, 1)
    return (g & 1).reshape(*_lead(b), 256).astype(np.int32)


def _nibbles64(v: np.ndarray) -> np.ndarray:
    """[..., 256] → [..., 128]: byte l of each 64 holds element l (low) and l + 32 (high)."""
    g = (v & 0xF).reshape(*_lead(v), 4, 2, 32).astype(np.uint8)
    return (g[..., 0, :] | (g[..., 1, :] << 4)).reshape(*_lead(v), 128)


def _unnibbles64(b: np.ndarray) -> np.ndarray:
    g = b.reshape(*_lead(b), 4, 1, 32) >> np.array([0, 4], np.uint8).reshape(2, 1)
    return (g & 0xF).reshape(*_lead(b), 256).astype(np.int32)


def _scales12(sc: np.ndarray, mn: np.ndarray) -> np.ndarray:
    """Eight 6-bit sub-scales and sub-mins → 12 bytes (q4_k, q5_k; get_scale_min_k4's inverse)."""
    sc, mn = sc.astype(np.uint8), mn.astype(np.uint8)
    out = np.zeros((*_lead(sc), 12), np.uint8)
    out[..., 0:4] = (sc[..., 0:4] & 63) | ((sc[..., 4:8] >> 4) << 6)
    out[..., 4:8] = (mn[..., 0:4] & 63) | ((mn[..., 4:8] >> 4) << 6)
    out[..., 8:12] = (sc[..., 4:8] & 0xF) | ((mn[..., 4:8] & 0xF) << 4)
    return out


def _unscales12(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, mid, hi = s[..., 0:4], s[..., 4:8], s[..., 8:12]
    sc = np.concatenate([lo & 63, (hi & 0xF) | ((lo >> 6) << 4)], -1)
    mn = np.concatenate([mid & 63, (hi >> 4) | ((mid >> 6) << 4)], -1)
    return sc.astype(np.int32), mn.astype(np.int32)


def _q3_scales(sc: np.ndarray) -> np.ndarray:
    """Sixteen 6-bit codes → 12 bytes: low nibbles in bytes 0-7 (j, then j-8 high), the top two
    bits of code j in byte 8 + j % 4 at bit 2·(j // 4)."""
    sc = sc.astype(np.uint8)
    out = np.zeros((*_lead(sc), 12), np.uint8)
    out[..., 0:8] = (sc[..., 0:8] & 0xF) | ((sc[..., 8:16] & 0xF) << 4)
    for j in range(16):
        out[..., 8 + j % 4] |= (sc[..., j] >> 4) << (2 * (j // 4))
    return out


def _unq3_scales(s: np.ndarray) -> np.ndarray:
    low = np.concatenate([s[..., 0:8] & 0xF, s[..., 0:8] >> 4], -1)
    high = np.stack([(s[..., 8 + j % 4] >> (2 * (j // 4))) & 3 for j in range(16)], -1)
    return (low | (high << 4)).astype(np.int32)


def _pack_q2_k(c: GgufCodes) -> np.ndarray:
    assert c.sc is not None and c.mn is not None and c.dmin is not None
    q = c.q.numpy()
    scales = (c.sc.numpy() | (c.mn.numpy() << 4)).astype(np.uint8)
    return np.concatenate([scales, _crumbs(q), _half_bytes(c.d), _half_bytes(c.dmin)], -1)


def _unpack_q2_k(b: np.ndarray) -> GgufCodes:
    s = b[..., 0:16]
    return GgufCodes(
        q=torch.from_numpy(_uncrumbs(b[..., 16:80])),
        d=_half(b[..., 80:82]),
        dmin=_half(b[..., 82:84]),
        sc=torch.from_numpy((s & 0xF).astype(np.int32)),
        mn=torch.from_numpy((s >> 4).astype(np.int32)),
    )


def _pack_q3_k(c: GgufCodes) -> np.ndarray:
    assert c.sc is not None
    q = c.q.numpy()
    parts = [_bitplanes(q >> 2), _crumbs(q & 3), _q3_scales(c.sc.numpy()), _half_bytes(c.d)]
    return np.concatenate(parts, -1)


def _unpack_q3_k(b: np.ndarray) -> GgufCodes:
    q = _uncrumbs(b[..., 32:96]) | (_unbitplanes(b[..., 0:32]) << 2)
    sc = _unq3_scales(b[..., 96:108])
    return GgufCodes(q=torch.from_numpy(q), d=_half(b[..., 108:110]), sc=torch.from_numpy(sc))


def _pack_qk_min(c: GgufCodes, fifth_bit: bool) -> np.ndarray:
    assert c.sc is not None and c.mn is not None and c.dmin is not None
    q = c.q.numpy()
    parts = [_half_bytes(c.d), _half_bytes(c.dmin), _scales12(c.sc.numpy(), c.mn.numpy())]
    if fifth_bit:
        parts.append(_bitplanes(q >> 4))
    parts.append(_nibbles64(q))
    return np.concatenate(parts, -1)


def _unpack_qk_min(b: np.ndarray, fifth_bit: bool) -> GgufCodes:
    sc, mn = _unscales12(b[..., 4:16])
    q = _unnibbles64(b[..., 16 + 32 * fifth_bit :])
    if fifth_bit:
        q = q | (_unbitplanes(b[..., 16:48]) << 4)
    return GgufCodes(
        q=torch.from_numpy(q),
        d=_half(b[..., 0:2]),
        dmin=_half(b[..., 2:4]),
        sc=torch.from_numpy(sc),
        mn=torch.from_numpy(mn),
    )


def _pack_q6_k(c: GgufCodes) -> np.ndarray:
    assert c.sc is not None
    q = c.q.numpy()
    g = (q & 0xF).reshape(*_lead(q), 2, 4, 32).astype(np.uint8)
    ql = np.concatenate(
        [g[..., 0, :] | (g[..., 2, :] << 4), g[..., 1, :] | (g[..., 3, :] << 4)], -1
    )
    ql = ql.reshape(*_lead(q), 128)
    sc = c.sc.numpy().astype(np.int8).view(np.uint8)
    return np.concatenate([ql, _crumbs(q >> 4), sc, _half_bytes(c.d)], -1)


def _unpack_q6_k(b: np.ndarray) -> GgufCodes:
    # Per half of 128: nibble n of byte 32w + l is element 32·(2n + w) + l, so the order
    # [half, nibble, w, l] is already the element order.
    ql = b[..., 0:128].reshape(*_lead(b), 2, 1, 64) >> np.array([0, 4], np.uint8).reshape(2, 1)
    low = (ql & 0xF).reshape(*_lead(b), 256).astype(np.int32)
    q = low | (_uncrumbs(b[..., 128:192]) << 4)
    sc = np.ascontiguousarray(b[..., 192:208]).view(np.int8).astype(np.int32)
    return GgufCodes(q=torch.from_numpy(q), d=_half(b[..., 208:210]), sc=torch.from_numpy(sc))


K_PACKERS: dict[str, Callable[[GgufCodes], np.ndarray]] = {
    "q2_k": _pack_q2_k,
    "q3_k": _pack_q3_k,
    "q4_k": lambda c: _pack_qk_min(c, False),
    "q5_k": lambda c: _pack_qk_min(c, True),
    "q6_k": _pack_q6_k,
}
K_UNPACKERS: dict[str, Callable[[np.ndarray], GgufCodes]] = {
    "q2_k": _unpack_q2_k,
    "q3_k": _unpack_q3_k,
    "q4_k": lambda b: _unpack_qk_min(b, False),
    "q5_k": lambda b: _unpack_qk_min(b, True),
    "q6_k": _unpack_q6_k,
}
