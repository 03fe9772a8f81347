"""The K-quants of llama.cpp (Q2_K … Q6_K): super-blocks of 256 with quantized sub-block scales.

Each quantizer follows llama.cpp's reference `quantize_row_q{2..6}_K_ref` and its helpers
`make_qkx2_quants`, `make_qx_quants`, `make_q3_quants` (ggml/src/ggml-quants.c), vectorised over
blocks: every sum is taken left to right in float32, as the C loops take it, and `nearest_int`
(adding 1.5 · 2^23) is round-half-even. llama.cpp built with FMA contraction (-march=native) may
fuse some of those multiply-adds and so differ in the last bit of a sum; the stored blocks are
then still valid and `gguf.quants.dequantize` of quarch's bytes equals quarch's values exactly.

Sub-block layout: Q2_K, Q3_K and Q6_K use 16 sub-blocks of 16; Q4_K and Q5_K 8 of 32.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from quarch.formats._gguf_types import GROUP_MAX_EPS, GgufCodes, sequential_sum

F32 = torch.float32


def nearest_int(v: torch.Tensor) -> torch.Tensor:
    """llama.cpp's `nearest_int`: round half to even (float32 in, int64 out)."""
    return torch.round(v).to(torch.int64)


def _signed_absmax(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(max |x|, the first value reaching it) over the last dim."""
    ax = x.abs()
    idx = ax.argmax(-1, keepdim=True)
    return ax.gather(-1, idx).squeeze(-1), x.gather(-1, idx).squeeze(-1)


def _sums(*terms: torch.Tensor) -> list[torch.Tensor]:
    """Sequential float32 sums over the last dim of several tensors at once."""
    return list(sequential_sum(torch.stack(terms)))


def _positive_max(v: torch.Tensor) -> torch.Tensor:
    """C's `m = 0; if (v[j] > m) m = v[j];` over the last dim: +0 unless some value is > 0."""
    top = v.amax(-1)
    return torch.where(top > 0, top, torch.zeros_like(top))


def _as_u8(v: torch.Tensor) -> torch.Tensor:
    """An int stored into a C uint8_t: wraps modulo 256."""
    return torch.remainder(v, 256)


# ---- make_qkx2_quants: scale and min of one sub-block, searched (Q2_K, Q4_K, Q5_K) ---------------


def make_qkx2_quants(
    x: torch.Tensor, w: torch.Tensor, nmax: int, rmin: float, rdelta: float, nstep: int, mad: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x, w: float32 [..., n]. Returns (scale [...], the_min [...] (≥ 0), codes int64 [..., n])."""
    mn = torch.clamp(x.amin(-1), max=0.0)  # if (min > 0) min = 0
    mx = x.amax(-1)
    sum_w, sum_x = _sums(w, w * x)
    flat = mx == mn
    mx = torch.where(flat, mn + 1, mx)  # any non-empty range: flat sub-blocks are reset below

    def err(scale: torch.Tensor, lmin: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        diff = scale.unsqueeze(-1) * codes.to(F32) + lmin.unsqueeze(-1) - x
        return sequential_sum(w * (diff.abs() if mad else diff * diff))

    iscale = torch.tensor(float(nmax), dtype=F32) / (mx - mn)
    codes = nearest_int(iscale.unsqueeze(-1) * (x - mn.unsqueeze(-1))).clamp(0, nmax)
    scale = 1.0 / iscale
    lmin = mn
    best = err(scale, lmin, codes)
    for i in range(nstep + 1):
        # As in C, the min of the best fit so far moves the range of every later trial.
        step = torch.tensor(rmin, dtype=F32) + torch.tensor(rdelta, dtype=F32) * i + nmax
        trial_iscale = (step / (mx - lmin)).unsqueeze(-1)
        laux = nearest_int(trial_iscale * (x - lmin.unsqueeze(-1))).clamp(0, nmax)
        lf = laux.to(F32)
        sum_l, sum_l2, sum_xl = _sums(w * lf, w * lf * lf, w * lf * x)
        det = sum_w * sum_l2 - sum_l * sum_l
        ok = det > 0
        safe = torch.where(ok, det, torch.ones_like(det))
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / safe
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / safe
        pos = this_min > 0
        this_scale = torch.where(pos, sum_xl / sum_l2, this_scale)
        this_min = torch.where(pos, torch.zeros_like(this_min), this_min)
        cur = err(this_scale, this_min, laux)
        take = ok & (cur < best)
        codes = torch.where(take.unsqueeze(-1), laux, codes)
        best = torch.where(take, cur, best)
        scale = torch.where(take, this_scale, scale)
        lmin = torch.where(take, this_min, lmin)
    scale = torch.where(flat, torch.zeros_like(scale), scale)
    codes = torch.where(flat.unsqueeze(-1), torch.zeros_like(codes), codes)
    lmin = torch.where(flat, mn, lmin)
    return scale, -lmin, codes


def _requantize_with_min(
    x: torch.Tensor, d_sub: torch.Tensor, dm_sub: torch.Tensor, codes: torch.Tensor, nmax: int
) -> torch.Tensor:
    """l = nearest_int((x + dm) / d) clamped to [0, nmax]; sub-blocks with d == 0 keep `codes`."""
    live = d_sub != 0
    safe = torch.where(live, d_sub, torch.ones_like(d_sub)).unsqueeze(-1)
    new = nearest_int((x + dm_sub.unsqueeze(-1)) / safe).clamp(0, nmax)
    return torch.where(live.unsqueeze(-1), new, codes)


def _with_min_codes(
    xb: torch.Tensor,
    x: torch.Tensor,
    codes: torch.Tensor,
    nmax: int,
    d: torch.Tensor,
    dmin: torch.Tensor,
    sc: torch.Tensor,
    mn: torch.Tensor,
) -> GgufCodes:
    """The codes of a type with sub-block minimums (Q2_K, Q4_K, Q5_K), requantized against the
    sub-scales `d·sc` and sub-minimums `dmin·mn` as stored, the way ggml-quants.c finishes."""
    d_sub = d.to(F32).unsqueeze(-1) * sc.to(F32)
    dm_sub = dmin.to(F32).unsqueeze(-1) * mn.to(F32)
    codes = _requantize_with_min(x, d_sub, dm_sub, codes, nmax)
    return GgufCodes(
        q=codes.reshape(xb.shape).to(torch.int32),
        d=d,
        dmin=dmin,
        sc=sc.to(torch.int32),
        mn=mn.to(torch.int32),
    )


def _kx_with_min(xb: torch.Tensor, nmax: int, rmin: float, nstep: int) -> GgufCodes:
    """quantize_row_q4_K_ref (nmax 15, rmin -1, 20 steps) and q5_K (31, -0.5, 15): 8 sub-blocks
    of 32, weights av_x + |x|, 6-bit sub-scales and sub-mins under fp16 d and dmin."""
    x = xb.reshape(*xb.shape[:-1], 8, 32)
    av_x = torch.sqrt(sequential_sum(x * x) / 32).unsqueeze(-1)
    scales, mins, codes = make_qkx2_quants(x, av_x + x.abs(), nmax, rmin, 0.1, nstep, False)
    max_scale, max_min = _positive_max(scales), _positive_max(mins)
    inv_s = torch.where(max_scale > 0, 63.0 / max_scale, torch.zeros_like(max_scale))
    inv_m = torch.where(max_min > 0, 63.0 / max_min, torch.zeros_like(max_min))
    ls = _as_u8(nearest_int(inv_s.unsqueeze(-1) * scales)).clamp(max=63)
    lm = _as_u8(nearest_int(inv_m.unsqueeze(-1) * mins)).clamp(max=63)
    d = (max_scale / 63.0).to(torch.float16)
    dmin = (max_min / 63.0).to(torch.float16)
    return _with_min_codes(xb, x, codes, nmax, d, dmin, ls, lm)


def _q2_k(xb: torch.Tensor) -> GgufCodes:
    """quantize_row_q2_K_ref: 16 sub-blocks of 16, weights |x|, absolute-error search (15 steps
    from rmin -0.5), 4-bit sub-scales and sub-mins under fp16 d and dmin."""
    x = xb.reshape(*xb.shape[:-1], 16, 16)
    scales, mins, codes = make_qkx2_quants(x, x.abs(), 3, -0.5, 0.1, 15, True)
    max_scale, max_min = _positive_max(scales), _positive_max(mins)
    live_s, live_m = max_scale > 0, max_min > 0
    inv_s = torch.where(live_s, 15.0 / max_scale, torch.zeros_like(max_scale)).unsqueeze(-1)
    inv_m = torch.where(live_m, 15.0 / max_min, torch.zeros_like(max_min)).unsqueeze(-1)
    ls = torch.where(live_s.unsqueeze(-1), nearest_int(inv_s * scales), 0)
    lm = torch.where(live_m.unsqueeze(-1), nearest_int(inv_m * mins), 0)
    byte = _as_u8(_as_u8(ls) | _as_u8(lm << 4))  # y.scales[j] = l, then |= l << 4
    sc, mn = byte & 0xF, byte >> 4
    d = torch.where(live_s, max_scale / 15.0, torch.zeros_like(max_scale)).to(torch.float16)
    dmin = torch.where(live_m, max_min / 15.0, torch.zeros_like(max_min)).to(torch.float16)
    return _with_min_codes(xb, x, codes, 3, d, dmin, sc, mn)


# ---- make_qx_quants (Q6_K) and make_q3_quants (Q3_K): symmetric sub-blocks ---------------------


def make_qx_quants(x: torch.Tensor, nmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """make_qx_quants(n, nmax, x, L, rmse_type = 1, qw = NULL): weights x², the scale searched
    over iscale = -(nmax + 0.1·is) / max, is = -9 … 9. Returns (scale [...], codes [..., n]
    offset by nmax)."""
    amax, mx = _signed_absmax(x)
    tiny = amax < GROUP_MAX_EPS
    mx_ = torch.where(tiny, torch.ones_like(mx), mx).unsqueeze(-1)
    w = x * x

    def trial(iscale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lv = nearest_int(iscale * x).clamp(-nmax, nmax - 1)
        lf = lv.to(F32)
        sumlx, suml2 = _sums(w * x * lf, w * lf * lf)
        return lv, sumlx, suml2

    lv, sumlx, suml2 = trial(torch.tensor(float(-nmax), dtype=F32) / mx_)
    scale = torch.where(suml2 != 0, sumlx / suml2, torch.zeros_like(sumlx))
    best = scale * sumlx
    for i in [*range(-9, 0), *range(1, 10)]:
        step = torch.tensor(float(nmax), dtype=F32) + torch.tensor(0.1, dtype=F32) * i
        lv_i, sumlx_i, suml2_i = trial(-step / mx_)
        take = (suml2_i > 0) & (sumlx_i * sumlx_i > best * suml2_i)
        lv = torch.where(take.unsqueeze(-1), lv_i, lv)
        scale = torch.where(take, sumlx_i / suml2_i, scale)
        best = torch.where(take, scale * sumlx_i, best)
    scale = torch.where(tiny, torch.zeros_like(scale), scale)
    codes = torch.where(tiny.unsqueeze(-1), torch.zeros_like(lv), lv + nmax)
    return scale, codes


def make_q3_quants(x: torch.Tensor, nmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """make_q3_quants(n, nmax, x, L, do_rmse = true): codes from iscale = -nmax / max, then up
    to 5 passes that move one code at a time while the weighted fit (weights x²) improves.
    Returns (scale [...], codes [..., n] offset by nmax; 0 for an all-zero sub-block)."""
    amax, mx = _signed_absmax(x)
    tiny = amax < GROUP_MAX_EPS
    mx_ = torch.where(tiny, torch.ones_like(mx), mx).unsqueeze(-1)
    w = x * x
    lv = nearest_int(torch.tensor(float(-nmax), dtype=F32) / mx_ * x).clamp(-nmax, nmax - 1)
    lf = lv.to(F32)
    sumlx, suml2 = _sums(w * x * lf, w * lf * lf)
    # A pass that changes nothing leaves the state as it was, so running all 5 passes on every
    # sub-block equals C's early exit.
    for _ in range(5):
        for i in range(x.shape[-1]):
            xi, wi, li = x[..., i], w[..., i], lv[..., i].to(F32)
            slx = sumlx - wi * xi * li
            sl2 = suml2 - wi * li * li
            pos = slx > 0
            new = nearest_int(xi * sl2 / torch.where(pos, slx, torch.ones_like(slx)))
            new = new.clamp(-nmax, nmax - 1)
            nf = new.to(F32)
            slx2 = slx + wi * xi * nf
            sl22 = sl2 + wi * nf * nf
            take = pos & (new != lv[..., i]) & (sl22 > 0)
            take &= slx2 * slx2 * suml2 > sumlx * sumlx * sl22
            lv[..., i] = torch.where(take, new, lv[..., i])
            sumlx = torch.where(take, slx2, sumlx)
            suml2 = torch.where(take, sl22, suml2)
    scale = torch.where(suml2 > 0, sumlx / suml2, torch.zeros_like(sumlx))
    scale = torch.where(tiny, torch.zeros_like(scale), scale)
    codes = torch.where(tiny.unsqueeze(-1), torch.zeros_like(lv), lv + nmax)
    return scale, codes


def _requantize_symmetric(
    x: torch.Tensor, d_sub: torch.Tensor, codes: torch.Tensor, nmax: int
) -> torch.Tensor:
    """l = nearest_int(x / d) clamped to [-nmax, nmax - 1], stored + nmax; d == 0 keeps `codes`."""
    live = d_sub != 0
    safe = torch.where(live, d_sub, torch.ones_like(d_sub)).unsqueeze(-1)
    new = nearest_int(x / safe).clamp(-nmax, nmax - 1) + nmax
    return torch.where(live.unsqueeze(-1), new, codes)


def _q6_k(xb: torch.Tensor) -> GgufCodes:
    """quantize_row_q6_K_ref: 16 sub-blocks of 16, make_qx_quants(16, 32), int8 sub-scales
    = nearest_int(-128 / max_scale · scale) (at most 127) under fp16 d = max_scale / -128."""
    x = xb.reshape(*xb.shape[:-1], 16, 16)
    scales, codes = make_qx_quants(x, 32)
    amax, max_scale = _signed_absmax(scales)
    zero = amax < GROUP_MAX_EPS
    iscale = -128.0 / torch.where(zero, torch.ones_like(max_scale), max_scale)
    d = torch.where(zero, torch.zeros_like(iscale), 1.0 / iscale).to(torch.float16)
    sc = nearest_int(iscale.unsqueeze(-1) * scales).clamp(max=127)
    sc = torch.where(zero.unsqueeze(-1), torch.zeros_like(sc), sc)
    d_sub = d.to(F32).unsqueeze(-1) * sc.to(F32)
    codes = _requantize_symmetric(x, d_sub, codes, 32)
    codes = torch.where(zero[..., None, None], torch.zeros_like(codes), codes)  # memset block
    return GgufCodes(q=codes.reshape(xb.shape).to(torch.int32), d=d, sc=sc.to(torch.int32))


def _q3_k(xb: torch.Tensor) -> GgufCodes:
    """quantize_row_q3_K_ref: 16 sub-blocks of 16, make_q3_quants(16, 4), 6-bit sub-scales
    (stored + 32) = nearest_int(-32 / max_scale · scale) under fp16 d = max_scale / -32."""
    x = xb.reshape(*xb.shape[:-1], 16, 16)
    scales, codes = make_q3_quants(x, 4)
    _, max_scale = _signed_absmax(scales)
    live = max_scale != 0
    iscale = -32.0 / torch.where(live, max_scale, torch.ones_like(max_scale))
    d = torch.where(live, 1.0 / iscale, torch.zeros_like(iscale)).to(torch.float16)
    sc = nearest_int(iscale.unsqueeze(-1) * scales).clamp(-32, 31) + 32
    sc = torch.where(live.unsqueeze(-1), sc, torch.zeros_like(sc))  # memset(scales, 0)
    d_sub = d.to(F32).unsqueeze(-1) * (sc - 32).to(F32)
    codes = _requantize_symmetric(x, d_sub, codes, 4)
    return GgufCodes(q=codes.reshape(xb.shape).to(torch.int32), d=d, sc=sc.to(torch.int32))


# ---- dequantization, in gguf.quants' float32 order ---------------------------------------------


def _sub(c: GgufCodes, n_sub: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes as float32 [..., nb, n_sub, 256 / n_sub], d as float32 [..., nb, 1, 1])."""
    q = c.q.to(F32).reshape(*c.q.shape[:-1], n_sub, c.q.shape[-1] // n_sub)
    return q, c.d.to(F32)[..., None, None]


def _deq_with_min(c: GgufCodes, n_sub: int, offset: int = 0) -> torch.Tensor:
    assert c.sc is not None and c.mn is not None and c.dmin is not None
    q, d = _sub(c, n_sub)
    d_sub = d * c.sc.to(F32).unsqueeze(-1)
    dm_sub = c.dmin.to(F32)[..., None, None] * c.mn.to(F32).unsqueeze(-1)
    return (d_sub * (q - offset) - dm_sub).reshape(c.q.shape)


def _deq_symmetric(c: GgufCodes, offset: int, sc_offset: int) -> torch.Tensor:
    assert c.sc is not None
    q, d = _sub(c, 16)
    d_sub = d * (c.sc - sc_offset).to(F32).unsqueeze(-1)
    return (d_sub * (q - offset)).reshape(c.q.shape)


K_QUANTIZERS: dict[str, Callable[[torch.Tensor], GgufCodes]] = {
    "q2_k": _q2_k,
    "q3_k": _q3_k,
    "q4_k": lambda xb: _kx_with_min(xb, 15, -1.0, 20),
    "q5_k": lambda xb: _kx_with_min(xb, 31, -0.5, 15),
    "q6_k": _q6_k,
}
K_DEQUANTIZERS: dict[str, Callable[[GgufCodes], torch.Tensor]] = {
    "q2_k": lambda c: _deq_with_min(c, 16),
    "q3_k": lambda c: _deq_symmetric(c, 4, 32),
    "q4_k": lambda c: _deq_with_min(c, 8),
    "q5_k": lambda c: _deq_with_min(c, 8),
    "q6_k": lambda c: _deq_symmetric(c, 32, 0),
}
