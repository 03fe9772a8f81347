"""A fast path for `quantize(fmt, x, out=buf)`: the reference arithmetic, run over row chunks.

Why it is fast: the reference path runs a dozen elementwise passes over the whole tensor, each
allocating a full-size temporary whose pages the kernel must fault in (on this machine a fresh
64 MiB tensor costs more than a copy of it). Here the same operations run on a few rows at a
time, so every temporary stays in the cache, and the result goes straight into `out`.

Why it is bit-identical: every step of the reference path is per block (a block's scale depends
only on its own elements, the cast is elementwise), and a chunk of whole rows holds whole
blocks. The only tensor-wide quantities (a `t` format's single scale, NVFP4's fp32 tensor scale)
are computed once over all of x, by the reference functions, before the chunks. The chunks call
the reference functions themselves (`_compute_block_scales`, `_quantize_blocks`), so there is no
second copy of the numerics to drift; tests hold the two paths equal on an adversarial corpus.

Two backends, same bits: from CPP_MIN_ELEMENTS on, the C++ kernel of `_fast_cpp` (two passes
over x; built in the background on first use, so until it is ready, or where it cannot be
built, the torch chunks serve), else the torch chunks above. Both take their scales from the
reference's `scales_from_stat` / `tensor_scale` (NVFP4's e4m3 scales through the in-place cast,
`_float_scales_into`).

Applicable (else the caller takes the reference path): float32 x with a contiguous last dim,
scales along the last axis (per-tensor, per-channel or groups), a scale rule computed from the
block alone (not `mse`, whose search is per block too but allocates per ratio, nor `mean`),
nearest-even rounding, and a tensor large enough that chunking pays.
"""

from __future__ import annotations

import contextlib
import dataclasses
from types import ModuleType
from typing import TYPE_CHECKING

import torch

from quarch.formats import _elements, _fast_cpp, _minifloat
from quarch.formats._blocks import from_blocks, to_blocks
from quarch.formats._scaling import (
    Scales,
    abs_max,
    element_max,
    scales_from_stat,
    tensor_scale,
)
from quarch.formats._spec import (
    Format,
    GgufBlock,
    IntElement,
    IntGrid,
    Minifloat,
    RoundMode,
    ScaleRule,
    ScalingKind,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

# Below this many elements the reference path is as fast (a few passes over a cache-resident
# tensor) and the chunk loop's per-call overhead would dominate.
MIN_ELEMENTS = 1 << 16
# Elements per chunk: 256 KiB of float32, so a chunk and its temporaries fit in L2 (measured
# on this machine with benchmarks/bench_formats.py: 2^16 beat 2^14 and 2^18..2^20).
CHUNK_ELEMENTS = 1 << 18

# Blocks up to this size take their abs-max by pairwise maxima (`_abs_max_pairwise`): measured
# with 4 interleaved repeats at 1 thread, quantize/copy_ went 13.0x -> 10.6x for nvfp4 (blocks
# of 16) and was no faster for blocks of 32 or more (int4_g128 3.8x -> 4.1x, per channel worse).
PAIRWISE_MAX_BLOCK = 16
# From this many elements the C++ kernel (`_fast_cpp`) serves once it is built: 4 Mi elements
# (16 MiB of float32), where the torch path costs tens of milliseconds.
CPP_MIN_ELEMENTS = 1 << 22
SCALE_CHUNK = 1 << 16  # blocks per slice of the scale arithmetic (_chunked_scales)
_FAST_KINDS = (ScalingKind.TENSOR, ScalingKind.CHANNEL, ScalingKind.GROUP)
_FAST_RULES = (ScaleRule.AMAX, ScaleRule.FLOOR, ScaleRule.CEIL, ScaleRule.NEAR)


def applicable(fmt: Format, x: torch.Tensor) -> bool:
    """Whether `quantize_into` serves (fmt, x) with the reference path's exact bits."""
    sc = fmt.scaling
    el = fmt.element
    if isinstance(el, GgufBlock) or not isinstance(el, IntElement | Minifloat):
        return False
    if isinstance(el, IntElement) and el.grid is IntGrid.ASYM:
        return False
    return (
        x.dtype is torch.float32
        and x.dim() >= 1
        and x.numel() >= MIN_ELEMENTS
        and x.stride(-1) == 1
        and sc.kind in _FAST_KINDS
        and (sc.kind is ScalingKind.TENSOR or sc.axis % x.dim() == x.dim() - 1)
        and sc.rule in _FAST_RULES
        and fmt.rounding.mode is RoundMode.RNE
    )


def quantize_into(
    fmt: Format,
    x: torch.Tensor,
    out: torch.Tensor,
    quantize_blocks: Callable[[Format, torch.Tensor, Scales], torch.Tensor],
    block_scales: Callable[[Format, torch.Tensor, tuple[int, ...], torch.Tensor | None], Scales],
) -> None:
    """Write quantize(fmt, x) into `out` (x's shape, contiguous float32; may be x itself).

    `quantize_blocks` and `block_scales` are the reference path's own per-block functions
    (passed in, since `_api` imports this module). Scales always come from `block_scales` (their
    tensors are 1/k of the data); the elementwise part runs in `out`'s memory when a chunk's
    blocks are a view of it (no padding), through `_scale_and_cast`, else through
    `quantize_blocks` and a copy.
    """
    n = x.shape[-1]
    rows = x.reshape(-1, n)  # a view when x is contiguous; else one copy of x
    dst = out.view(-1, n)
    if x.numel() >= CPP_MIN_ELEMENTS and x.is_contiguous():
        mod = _fast_cpp.module()  # None while it builds in the background, or if it can't
        if mod is not None and _quantize_cpp(mod, fmt, x, out, quantize_blocks):
            return
    ts = tensor_scale(fmt, x) if fmt.scaling.tensor_scale else None
    fixed: Scales | None = None
    if fmt.scaling.kind is ScalingKind.TENSOR:  # one scale over all of x, as the reference
        fixed = Scales(block=scales_from_stat(fmt, abs_max(x.reshape(1, -1)), ts), tensor=ts)
    step = max(1, CHUNK_ELEMENTS // max(n, 1))
    scratch = torch.empty(min(step, rows.shape[0]) * n, dtype=torch.int32)
    for start in range(0, rows.shape[0], step):
        xc = rows[start : start + step]
        oc = dst[start : start + step]
        xb = xc.reshape(1, -1) if fixed is not None else to_blocks(fmt.scaling, xc)
        if fixed is not None:
            s = fixed
        elif xb.shape[-1] <= PAIRWISE_MAX_BLOCK and xb.numel() == xc.numel():
            stat = _abs_max_pairwise(xb, scratch.view(torch.float32)[: xb.numel()])
            s = Scales(block=scales_from_stat(fmt, stat, ts), tensor=ts)
        else:
            s = block_scales(fmt, xb, tuple(xc.shape), ts)
        if xb.numel() == xc.numel() and _scale_and_cast(fmt, xb, s, oc.view(xb.shape), scratch):
            continue
        yb = quantize_blocks(fmt, xb, s)
        oc.copy_(yb.view_as(xc) if fixed is not None else from_blocks(fmt.scaling, yb, xc.shape))


def _chunked_scales(fmt: Format, stat: torch.Tensor, ts: torch.Tensor | None) -> torch.Tensor:
    """`scales_from_stat(fmt, stat, ts)` (elementwise in stat) over slices of SCALE_CHUNK
    blocks, so its dozen temporaries are small allocations the allocator reuses instead of
    fresh pages (measured, 1 thread, mxfp4 over 4096x4096/32 blocks: 26 ms whole, 17 ms in
    slices of 2^16; on a loaded machine)."""
    sb = torch.empty_like(stat)
    for i in range(0, stat.numel(), SCALE_CHUNK):
        part = stat[i : i + SCALE_CHUNK]
        if not _float_scales_into(fmt, part, ts, sb[i : i + SCALE_CHUNK]):
            sb[i : i + SCALE_CHUNK] = scales_from_stat(fmt, part, ts)
    return sb


def _float_scales_into(
    fmt: Format, stat: torch.Tensor, ts: torch.Tensor | None, dst: torch.Tensor
) -> bool:
    """`_scaling._float_scale` for an amax rule and a minifloat scale format that the in-place
    nearest-even cast serves (NVFP4's e4m3), written into dst; False where it does not apply.

    The reference rounds the clamped scale with the generic `_minifloat.cast` of the
    (non-saturating) scale format; a value already within [smallest normal, max] never rounds
    past max, so the saturating magic-add cast (`cast_rne_add_`, held bit-equal to the generic
    cast by tests/formats/test_paths.py) gives the same value, without the generic cast's
    dtype round trips (profiled: 40 % of nvfp4's scale time)."""
    sf = fmt.scaling.scale_format
    if fmt.scaling.rule is not ScaleRule.AMAX or not isinstance(sf, Minifloat):
        return False
    sat = dataclasses.replace(sf, saturate=True)
    if not _minifloat.rne_add_inplace_ok(sat):
        return False
    torch.div(stat, element_max(fmt), out=dst)  # as _float_scale: stat / max, then / ts
    if ts is not None:
        dst.div_(ts)
    dst.clamp_(min=sf.smallest_normal, max=sf.max)  # as round_scale
    lo, hi = torch.aminmax(dst)
    if not (bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))):
        return False  # a NaN block maximum: the reference's own path
    _minifloat.cast_rne_add_(sat, dst)
    torch.where(torch.isfinite(stat), dst, stat, out=dst)
    return True


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run the scale arithmetic (a dozen small torch ops on 1/k of the data) on one intra-op
    thread. Measured on this loaded 2-core machine: mxfp4's scales_from_stat over 4096x4096/32
    blocks took 264 ms with 2 threads (each op paying OpenMP wake-ups) and 9.6 ms with 1."""
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _quantize_cpp(
    mod: ModuleType,
    fmt: Format,
    x: torch.Tensor,
    out: torch.Tensor,
    quantize_blocks: Callable[[Format, torch.Tensor, Scales], torch.Tensor],
) -> bool:
    """The C++ kernel of `_fast_cpp` over all of x (contiguous), or False where it does not
    serve (padded groups, asymmetric integers, minifloats outside the magic-add domain)."""
    el = fmt.element
    n = x.shape[-1]
    if isinstance(el, IntElement):
        if el.grid is IntGrid.ASYM:
            return False
        mode, qmin, qmax, elo, ehi, man = 0, float(el.qmin), float(el.qmax), 0, 0, 0
    else:
        assert isinstance(el, Minifloat)
        mf = _saturating(el)
        if not _minifloat.rne_add_inplace_ok(mf):
            return False
        mode, qmin, qmax = 1, -float(mf.max), float(mf.max)
        elo, ehi, man = mf.emin + 127, mf.emax + 1 + 127, mf.man_bits
    k = n if fmt.scaling.kind is not ScalingKind.GROUP else min(fmt.scaling.block[0], n)
    if n % k:
        return False
    nb = x.numel() // k
    threads = _fast_cpp.threads()
    stat = torch.empty(nb, dtype=torch.float32)
    mod.block_absmax(x, stat, k, threads)
    # Tensor-wide quantities from the block maxima: the maximum of maxima is max |x| (NaN
    # propagating), and abs_max of that one value is itself, so the reference functions
    # receive the very value they would compute from x.
    with _one_thread():  # block-sized tensors: see _one_thread
        tensor_kind = fmt.scaling.kind is ScalingKind.TENSOR
        amax = stat.max().reshape(1) if fmt.scaling.tensor_scale or tensor_kind else None
        ts = tensor_scale(fmt, amax) if fmt.scaling.tensor_scale and amax is not None else None
        if tensor_kind:
            assert amax is not None
            sb = scales_from_stat(fmt, amax, ts).expand(nb).contiguous()
        else:
            sb = _chunked_scales(fmt, stat, ts)
    flags = torch.empty(nb, dtype=torch.uint8)
    tsv = float(ts) if ts is not None else 1.0  # (1 / ts) / s and ts * s in the kernel
    has_ts = int(ts is not None)
    mod.qdq(x, stat, sb, tsv, has_ts, out, flags, k, mode, qmin, qmax, elo, ehi, man, threads)
    if bool(flags.any()):  # blocks whose scaled values may be non-finite, left untouched:
        idx = flags.nonzero().squeeze(1)
        blocks = Scales(block=sb[idx], tensor=ts)
        out.view(nb, k)[idx] = quantize_blocks(fmt, x.view(nb, k)[idx], blocks)
    return True


def _scale_and_cast(
    fmt: Format, xb: torch.Tensor, s: Scales, ob: torch.Tensor, scratch: torch.Tensor
) -> bool:
    """`_api._quantize_blocks(fmt, xb, s)` written into `ob`, the same IEEE operations in the
    same order (so the same bits), without full-size temporaries. False (ob untouched) where
    it does not apply: asymmetric integers, or a minifloat outside `cast_rne_add_`'s domain."""
    el = fmt.element
    sb = s.block.unsqueeze(-1)
    if s.zero_point is not None:
        return False
    if isinstance(el, Minifloat) and not _minifloat.rne_add_inplace_ok(_saturating(el)):
        return False
    if s.tensor is not None:  # as _api._scaled: x * ((1 / ts) / sb), then times ts * sb
        torch.mul(xb, (1.0 / s.tensor) / sb, out=ob)
        mult = s.tensor * sb
    else:
        torch.div(xb, sb, out=ob)
        mult = sb
    if isinstance(el, IntElement):  # as _api._cast_owned
        ob.round_().clamp_(el.qmin, el.qmax).add_(0.0).mul_(mult)
        return True
    assert isinstance(el, Minifloat)
    lo, hi = torch.aminmax(ob)
    if bool(torch.isfinite(lo)) and bool(torch.isfinite(hi)):
        _cast_rne_add_(_saturating(el), ob.view(-1), scratch[: ob.numel()])
        ob.mul_(mult)
    else:  # the reference's generic cast of the same scaled values (xb may be gone: out=x)
        ob.copy_(_elements.cast(_saturating(el), ob, fmt.rounding).mul_(mult))
    return True


def _abs_max_pairwise(xb: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
    """`_scaling.abs_max(xb)` (max |x| per block, NaN-propagating, +0 for a zero block) by
    halving: |x| into `buf`, then elementwise maxima of the two halves of each block until the
    block is odd-sized, then one short reduction. torch's max along a short contiguous last
    dim is several times slower than the elementwise maximum (profiled: amax and amin over
    blocks of 32 took 40 % of the first fast path). The maximum is exact in any order, so the
    value is the reference's (only a NaN's payload may differ)."""
    a = torch.abs(xb, out=buf.view(xb.shape))
    while a.shape[-1] % 2 == 0 and a.shape[-1] > 1:
        half = a.shape[-1] // 2
        a = torch.maximum(a[..., :half], a[..., half:], out=a[..., :half])
    return a.amax(-1) if a.shape[-1] > 1 else a.squeeze(-1).clone()


def _saturating(el: Minifloat) -> Minifloat:
    return dataclasses.replace(el, saturate=True)  # scaled minifloats saturate (_api._element)


def _cast_rne_add_(mf: Minifloat, c: torch.Tensor, t: torch.Tensor) -> None:
    """`_minifloat.cast_rne_add_` on one chunk `c` with a caller-owned int32 scratch `t`: the
    same operations (see there for why they round to nearest-even)."""
    lo, hi = mf.emin + 127, mf.emax + 1 + 127
    torch.bitwise_right_shift(c.view(torch.int32), 23, out=t)
    t.bitwise_and_(0xFF).clamp_(lo, hi).add_(23 - mf.man_bits).bitwise_left_shift_(23)
    magic = t.view(torch.float32).copysign_(c)
    c.add_(magic).sub_(magic).copysign_(magic).clamp_(-mf.max, mf.max)
