"""Speed of quarch.formats.quantize against torchao's emulation of the same format and a copy.

    .venv/bin/python benchmarks/bench_formats.py [--size 4096] [--repeats 7] [--out-only]

A 4096×4096 float32 tensor is quantized (and dequantized: quarch's `quantize` returns the
dequantized tensor, so every reference does the round trip too) to:

| quarch      | reference, same run                                                            |
| ----------- | ------------------------------------------------------------------------------ |
| mxfp4       | torchao MXTensor.to_mx(fp4 e2m1, block 32, FLOOR) + to_dtype (float32)        |
| nvfp4       | torchao NVFP4Tensor.to_nvfp4(per_tensor_scale from amax) + dequantize          |
| int4_g128   | torchao choose_qparams_affine / quantize_affine / dequantize_affine, symmetric  |
|             | int4 in [-7, 7] (scale = amax / 7, quarch's restricted grid), groups of 128   |
| fp8_e4m3    | torch cast x.to(float8_e4m3fn).to(float32) (no scale: quarch's raw element)     |
| fp8_e4m3_t  | torch cast with a per-tensor scale: amax / 448, divide, cast, cast back, scale  |

and two copies: `x.clone()` (a fresh tensor, as `quantize` returns: when the allocator maps
new memory its pages are faulted in, which on this machine costs more than the copy itself)
and `out.copy_(x)` into a tensor that exists (memory bandwidth alone). Both are timed next to
each case, since the allocator's state changes from case to case. Each time is the median of
`--repeats` runs after one warm-up, with one intra-op thread and with torch's default thread
count. The table prints quarch/reference, quarch/clone and quarch/copy_ ratios (lower is
faster) and the fraction of outputs bit-equal to the reference. No assertions: the numbers are
for reading.

A second table times the fast path, `quantize(fmt, x, out=buf)`, against `buf.copy_(x)` in the
same process: each repeat times one copy and one quantize back to back (the order alternating),
so load from other processes on the shared machine hits both alike; it prints the median of the
per-repeat ratios, their spread (min-max) and whether `out` is bit-identical to `quantize(fmt, x)`
(NaNs equal). `--out-only` skips the first table.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import torch

from quarch.formats import Format, _fast_cpp, quantize


def median_time_s(fn: Callable[[], torch.Tensor], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def torchao_mxfp4(x: torch.Tensor) -> torch.Tensor:
    from torchao.prototype.mx_formats.config import ScaleCalculationMode
    from torchao.prototype.mx_formats.mx_tensor import to_dtype, to_mx

    elem = torch.float4_e2m1fn_x2
    scale, data = to_mx(x, elem, 32, ScaleCalculationMode.FLOOR)
    return to_dtype(data, scale, elem, 32, torch.float32)


def torchao_nvfp4(x: torch.Tensor) -> torch.Tensor:
    from torchao.prototype.mx_formats.nvfp4_tensor import (
        NVFP4Tensor,
        per_tensor_amax_to_scale,
    )

    ts = per_tensor_amax_to_scale(x.abs().amax())
    return NVFP4Tensor.to_nvfp4(x, per_tensor_scale=ts).dequantize(torch.float32)


def torchao_int4_g128(x: torch.Tensor) -> torch.Tensor:
    from torchao.quantization.quant_primitives import (
        MappingType,
        choose_qparams_affine,
        dequantize_affine,
        quantize_affine,
    )

    block = (1, 128)
    scale, zp = choose_qparams_affine(x, MappingType.SYMMETRIC, block, torch.int8, -7, 7)
    q = quantize_affine(x, block, scale, zp, torch.int8, -7, 7)
    return dequantize_affine(q, block, scale, zp, torch.int8, -7, 7)


def torch_fp8_cast(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float8_e4m3fn).to(torch.float32)


def torch_fp8_scaled(x: torch.Tensor) -> torch.Tensor:
    scale = x.abs().amax() / 448.0
    return (x / scale).to(torch.float8_e4m3fn).to(torch.float32) * scale


CASES: list[tuple[str, Callable[[torch.Tensor], torch.Tensor], str]] = [
    ("mxfp4", torchao_mxfp4, "torchao to_mx + to_dtype"),
    ("nvfp4", torchao_nvfp4, "torchao NVFP4Tensor"),
    ("int4_g128", torchao_int4_g128, "torchao affine primitives"),
    ("fp8_e4m3", torch_fp8_cast, "torch cast"),
    ("fp8_e4m3_t", torch_fp8_scaled, "torch cast with scale"),
]


def bit_equal_fraction(a: torch.Tensor, b: torch.Tensor) -> float:
    same = (a.view(torch.int32) == b.view(torch.int32)) | (a.isnan() & b.isnan())
    return same.float().mean().item()


def run(x: torch.Tensor, repeats: int, threads: int) -> list[tuple[str, ...]]:
    torch.set_num_threads(threads)
    rows: list[tuple[str, ...]] = []
    out = torch.empty_like(x)
    for name, ref, ref_name in CASES:
        fmt = Format.parse(name)
        # The copy is timed next to each case: how fast a fresh 64 MiB tensor is depends on the
        # allocator's state (whether its pages must be faulted in), which the cases change.
        clone_s = median_time_s(x.clone, repeats)
        copy_s = median_time_s(functools.partial(out.copy_, x), repeats)
        q_s = median_time_s(functools.partial(quantize, fmt, x), repeats)
        r_s = median_time_s(functools.partial(ref, x), repeats)
        clone_s = min(clone_s, median_time_s(x.clone, repeats))
        copy_s = min(copy_s, median_time_s(functools.partial(out.copy_, x), repeats))
        eq = bit_equal_fraction(quantize(fmt, x), ref(x))
        rows.append(
            (
                name,
                ref_name,
                f"{q_s * 1e3:.1f}",
                f"{r_s * 1e3:.1f}",
                f"{clone_s * 1e3:.1f}",
                f"{copy_s * 1e3:.1f}",
                f"{q_s / r_s:.2f}",
                f"{q_s / clone_s:.1f}",
                f"{q_s / copy_s:.1f}",
                f"{eq:.6f}",
            )
        )
    return rows


OUT_FORMATS = ("int4_g128", "mxfp4", "nvfp4", "fp8_e4m3_t", "fp8_e4m3_c")
OUT_HEAD = ("format", "out= ms", "copy_ ms", "out=/copy_ median", "spread (min-max)", "bit-equal")


def interleaved_ratios(
    fn: Callable[[], object], copy: Callable[[], object], repeats: int
) -> tuple[list[float], list[float], list[float]]:
    """(fn times, copy times, per-repeat fn/copy ratios), the two timed back to back with
    alternating order, after one warm-up of each."""
    fn()
    copy()
    fn_s: list[float] = []
    copy_s: list[float] = []
    for i in range(repeats):
        pair = [(fn, fn_s), (copy, copy_s)]
        for f, acc in pair if i % 2 == 0 else pair[::-1]:
            t0 = time.perf_counter()
            f()
            acc.append(time.perf_counter() - t0)
    return fn_s, copy_s, [a / b for a, b in zip(fn_s, copy_s, strict=True)]


def run_out(x: torch.Tensor, repeats: int, threads: int) -> list[tuple[str, ...]]:
    torch.set_num_threads(threads)
    # The C++ kernel builds in the background on first use (the torch path serves meanwhile);
    # wait for it here, so the table times the steady state. QUARCH_FORMATS_CPP=0 times the
    # torch path.
    _fast_cpp.module(wait=True)
    out = torch.empty_like(x)
    rows: list[tuple[str, ...]] = []
    for name in OUT_FORMATS:
        fmt = Format.parse(name)
        q = functools.partial(quantize, fmt, x, out=out)
        q_s, c_s, ratios = interleaved_ratios(q, functools.partial(out.copy_, x), repeats)
        eq = bit_equal_fraction(quantize(fmt, x, out=out), quantize(fmt, x))
        rows.append(
            (
                name,
                f"{statistics.median(q_s) * 1e3:.1f}",
                f"{statistics.median(c_s) * 1e3:.1f}",
                f"{statistics.median(ratios):.2f}",
                f"{min(ratios):.2f}-{max(ratios):.2f}",
                f"{eq:.6f}",
            )
        )
    return rows


HEAD = (
    "format",
    "reference",
    "quarch ms",
    "ref ms",
    "clone ms",
    "copy_ ms",
    "quarch/ref",
    "quarch/clone",
    "quarch/copy_",
    "bit-equal",
)


def print_table(title: str, rows: list[tuple[str, ...]], head: tuple[str, ...] = HEAD) -> None:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out-only", action="store_true", help="only the out= vs copy_ table")
    args = ap.parse_args()
    x = torch.randn(args.size, args.size, generator=torch.Generator().manual_seed(0))
    default_threads = torch.get_num_threads()
    print(f"x: float32 [{args.size}, {args.size}], median of {args.repeats} runs")
    for threads in sorted({1, 2, default_threads}):
        if not args.out_only:
            print_table(f"{threads} thread(s)", run(x, args.repeats, threads))
        title = f"quantize(fmt, x, out=buf) vs buf.copy_(x), {threads} thread(s), interleaved"
        print_table(title, run_out(x, args.repeats, threads), OUT_HEAD)
    torch.set_num_threads(default_threads)


if __name__ == "__main__":
    main()
