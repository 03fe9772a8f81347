"""Scalar transcriptions of llama.cpp's reference K-quant quantizers, one block at a time.

Written from ggml/src/ggml-quants.c (`quantize_row_q{2..6}_K_ref`, `make_qkx2_quants`,
`make_qx_quants`, `make_q3_quants`) as plain loops over numpy float32 scalars, so every sum and
product rounds where the C code's does. Slow; the tests run them on a few blocks and compare
with quarch's vectorised quantizers code for code.

Each function takes one block of 256 float32 values and returns (codes[256], d, dmin, sc, mn):
codes as stored (unsigned), d / dmin as np.float16 (dmin None where the type has none), and
the quantized sub-block scales and minimums as int lists (mn None where there are none).
"""

from __future__ import annotations

import numpy as np

f32 = np.float32
EPS = f32(1e-15)  # GROUP_MAX_EPS


def nearest_int(v: np.float32) -> int:
    return int(np.rint(v))  # adding 1.5·2^23 in float32 rounds half to even


def qkx2(x, w, nmax, rmin, rdelta, nstep, mad):
    """make_qkx2_quants: (scale, the_min, codes)."""
    n = len(x)
    lo, hi = x[0], x[0]
    sum_w = w[0]
    sum_x = sum_w * x[0]
    for i in range(1, n):
        lo, hi = min(lo, x[i]), max(hi, x[i])
        sum_w = f32(sum_w + w[i])
        sum_x = f32(sum_x + w[i] * x[i])
    if lo > 0:
        lo = f32(0)
    if hi == lo:
        return f32(0), -lo, [0] * n
    iscale = f32(nmax) / (hi - lo)
    scale = f32(1) / iscale
    codes = [max(0, min(nmax, nearest_int(iscale * (x[i] - lo)))) for i in range(n)]

    def error(s, m, ls):
        e = f32(0)
        for i in range(n):
            diff = s * f32(ls[i]) + m - x[i]
            diff = abs(diff) if mad else diff * diff
            e = f32(e + w[i] * diff)
        return e

    best = error(scale, lo, codes)
    for step in range(nstep + 1):
        iscale = (f32(rmin) + f32(rdelta) * f32(step) + f32(nmax)) / (hi - lo)
        aux = [max(0, min(nmax, nearest_int(iscale * (x[i] - lo)))) for i in range(n)]
        sl, sl2, sxl = f32(0), f32(0), f32(0)
        for i in range(n):
            lf = f32(aux[i])
            sl = f32(sl + w[i] * lf)
            sl2 = f32(sl2 + w[i] * lf * lf)
            sxl = f32(sxl + w[i] * lf * x[i])
        det = sum_w * sl2 - sl * sl
        if det > 0:
            s = (sum_w * sxl - sum_x * sl) / det
            m = (sl2 * sum_x - sl * sxl) / det
            if m > 0:
                m, s = f32(0), sxl / sl2
            cur = error(s, m, aux)
            if cur < best:
                codes, best, scale, lo = aux, cur, s, m
    return scale, -lo, codes


def _u8(v: int) -> int:
    return v % 256


def q4_k_or_q5_k(x: np.ndarray, nmax: int, rmin: float, nstep: int):
    scales, mins, codes = [], [], []
    for j in range(8):
        xs = x[32 * j : 32 * j + 32]
        sum_x2 = f32(0)
        for v in xs:
            sum_x2 = f32(sum_x2 + v * v)
        av_x = np.sqrt(sum_x2 / f32(32))
        s, m, ls = qkx2(xs, [av_x + abs(v) for v in xs], nmax, rmin, 0.1, nstep, False)
        scales.append(s)
        mins.append(m)
        codes += ls
    max_scale = max([f32(0)] + [s for s in scales if s > 0])
    max_min = max([f32(0)] + [m for m in mins if m > 0])
    inv_s = f32(63) / max_scale if max_scale > 0 else f32(0)
    inv_m = f32(63) / max_min if max_min > 0 else f32(0)
    sc = [min(63, _u8(nearest_int(inv_s * s))) for s in scales]
    mn = [min(63, _u8(nearest_int(inv_m * m))) for m in mins]
    d, dmin = np.float16(max_scale / f32(63)), np.float16(max_min / f32(63))
    for j in range(8):
        dd = f32(d) * f32(sc[j])
        if dd == 0:
            continue
        dm = f32(dmin) * f32(mn[j])
        for i in range(32):
            codes[32 * j + i] = max(0, min(nmax, nearest_int((x[32 * j + i] + dm) / dd)))
    return codes, d, dmin, sc, mn


def q2_k(x: np.ndarray):
    scales, mins, codes = [], [], []
    for j in range(16):
        xs = x[16 * j : 16 * j + 16]
        s, m, ls = qkx2(xs, [abs(v) for v in xs], 3, -0.5, 0.1, 15, True)
        scales.append(s)
        mins.append(m)
        codes += ls
    max_scale = max([f32(0)] + [s for s in scales if s > 0])
    max_min = max([f32(0)] + [m for m in mins if m > 0])
    byte = [0] * 16
    d = dmin = np.float16(0)
    if max_scale > 0:
        iscale = f32(15) / max_scale
        byte = [_u8(nearest_int(iscale * s)) for s in scales]
        d = np.float16(max_scale / f32(15))
    if max_min > 0:
        iscale = f32(15) / max_min
        byte = [_u8(b | (nearest_int(iscale * m) << 4)) for b, m in zip(byte, mins, strict=True)]
        dmin = np.float16(max_min / f32(15))
    for j in range(16):
        dd = f32(d) * f32(byte[j] & 0xF)
        if dd == 0:
            continue
        dm = f32(dmin) * f32(byte[j] >> 4)
        for i in range(16):
            codes[16 * j + i] = max(0, min(3, nearest_int((x[16 * j + i] + dm) / dd)))
    return codes, d, dmin, [b & 0xF for b in byte], [b >> 4 for b in byte]


def _absmax(x):
    amax, mx = f32(0), f32(0)
    for v in x:
        if abs(v) > amax:
            amax, mx = abs(v), v
    return amax, mx


def qx(x, nmax):
    """make_qx_quants with rmse_type 1 and no importance weights: (scale, codes + nmax)."""
    n = len(x)
    amax, mx = _absmax(x)
    if amax < EPS:
        return f32(0), [0] * n

    def trial(iscale):
        ls = [max(-nmax, min(nmax - 1, nearest_int(iscale * x[i]))) for i in range(n)]
        slx, sl2 = f32(0), f32(0)
        for i in range(n):
            w = x[i] * x[i]
            slx = f32(slx + w * x[i] * f32(ls[i]))
            sl2 = f32(sl2 + w * f32(ls[i]) * f32(ls[i]))
        return ls, slx, sl2

    ls, slx, sl2 = trial(f32(-nmax) / mx)
    scale = slx / sl2 if sl2 != 0 else f32(0)
    best = scale * slx
    for step in [*range(-9, 0), *range(1, 10)]:
        ls_i, slx_i, sl2_i = trial(-(f32(nmax) + f32(0.1) * f32(step)) / mx)
        if sl2_i > 0 and slx_i * slx_i > best * sl2_i:
            ls, scale = ls_i, slx_i / sl2_i
            best = scale * slx_i
    return scale, [v + nmax for v in ls]


def q6_k(x: np.ndarray):
    scales, codes = [], []
    for j in range(16):
        s, ls = qx(x[16 * j : 16 * j + 16], 32)
        scales.append(s)
        codes += ls
    amax, max_scale = _absmax(scales)
    if amax < EPS:
        return [0] * 256, np.float16(0), None, [0] * 16, None
    iscale = f32(-128) / max_scale
    d = np.float16(f32(1) / iscale)
    sc = [min(127, nearest_int(iscale * s)) for s in scales]
    for j in range(16):
        dd = f32(d) * f32(sc[j])
        if dd == 0:
            continue
        for i in range(16):
            codes[16 * j + i] = max(-32, min(31, nearest_int(x[16 * j + i] / dd))) + 32
    return codes, d, None, sc, None


def q3(x, nmax):
    """make_q3_quants with do_rmse: (scale, codes + nmax)."""
    n = len(x)
    amax, mx = _absmax(x)
    if amax < EPS:
        return f32(0), [0] * n
    iscale = f32(-nmax) / mx
    ls = [max(-nmax, min(nmax - 1, nearest_int(iscale * x[i]))) for i in range(n)]
    slx, sl2 = f32(0), f32(0)
    for i in range(n):
        w = x[i] * x[i]
        slx = f32(slx + w * x[i] * f32(ls[i]))
        sl2 = f32(sl2 + w * f32(ls[i]) * f32(ls[i]))
    for _ in range(5):
        changed = 0
        for i in range(n):
            w = x[i] * x[i]
            a = slx - w * x[i] * f32(ls[i])
            if a > 0:
                b = sl2 - w * f32(ls[i]) * f32(ls[i])
                new = max(-nmax, min(nmax - 1, nearest_int(x[i] * b / a)))
                if new != ls[i]:
                    a = a + w * x[i] * f32(new)
                    b = b + w * f32(new) * f32(new)
                    if b > 0 and a * a * sl2 > slx * slx * b:
                        ls[i], slx, sl2 = new, a, b
                        changed += 1
        if not changed:
            break
    return (slx / sl2 if sl2 > 0 else f32(0)), [v + nmax for v in ls]


def q3_k(x: np.ndarray):
    scales, codes = [], []
    for j in range(16):
        s, ls = q3(x[16 * j : 16 * j + 16], 4)
        scales.append(s)
        codes += ls
    _, max_scale = _absmax(scales)
    sc = [0] * 16
    d = np.float16(0)
    if max_scale != 0:
        iscale = f32(-32) / max_scale
        sc = [max(-32, min(31, nearest_int(iscale * s))) + 32 for s in scales]
        d = np.float16(f32(1) / iscale)
    for j in range(16):
        dd = f32(d) * f32(sc[j] - 32)
        if dd == 0:
            continue
        for i in range(16):
            codes[16 * j + i] = max(-4, min(3, nearest_int(x[16 * j + i] / dd))) + 4
    return codes, d, None, sc, None


REFERENCES = {
    "q2_k": q2_k,
    "q3_k": q3_k,
    "q4_k": lambda x: q4_k_or_q5_k(x, 15, -1.0, 20),
    "q5_k": lambda x: q4_k_or_q5_k(x, 31, -0.5, 15),
    "q6_k": q6_k,
}
