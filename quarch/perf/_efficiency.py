"""How much of a device's peaks real kernels attain, as a function of shape.

Not one global fudge factor: a GEMM's time depends on how its shape falls onto the kernel's tiles
and onto the device's compute units.

- **Tile quantization.** A kernel computes the output in `tm × tn` tiles and walks the reduction
  dimension in steps of `tile_k`; a dimension that is not a multiple is padded, and the padding is
  computed like real work (NVIDIA, "Matrix Multiplication Background User's Guide", section
  "Tile Quantization", https://docs.nvidia.com/deeplearning/performance/dl-performance-matrix-multiplication/index.html).
- **Tile choice.** Kernels choose among several tile shapes; a tile reuses each operand element
  it stages on chip over `2·tm·tn / (tm + tn)` FLOPs (its arithmetic intensity). Below
  `saturating_tile_intensity` the on-chip staging bandwidth, not the matrix unit, sets the rate,
  so a small tile runs at the ratio. The cheapest candidate is taken, as autotuned libraries do.
- **Wave quantization.** Tiles are spread over `compute_units`; the last wave may leave units idle
  (same guide, "Wave Quantization"). When there are fewer tiles than units, the reduction
  dimension is split across units (split-K / stream-K, as cuBLAS and CUTLASS do), at most down to
  one `tile_k` step per unit.
- **Attained fraction.** Even a large well-shaped GEMM attains only a fraction of the datasheet
  peak (clocks under load, pipeline bubbles): `matmul_fraction`, per device class below.
- **Bandwidth.** Each memory level attains a fraction of its datasheet bandwidth.
- **Overhead.** Every kernel pays a fixed launch-and-tail cost.

## Defaults per device class

Every default is an estimate to be replaced by `quarch calibrate` (which writes an `efficiency:`
section into a Hardware file); where it comes from:

- `gpu`: `matmul_fraction` 0.75: large BF16 GEMMs through cuBLAS attain about 70-80 % of the
  H100's dense peak and 80-90 % of the A100's (the A100 runs nearer its rated clock); 0.75 leans
  to current parts. `attention_fraction` 0.6: FlashAttention-2 reaches 50-73 % of A100 peak in the
  forward pass (Dao 2023, https://arxiv.org/abs/2307.08691, §4.1) and FlashAttention-3 up to 75 %
  of H100 BF16 peak (Shah et al. 2024, https://arxiv.org/abs/2407.08608, §4.1); 0.6 is the middle
  over head dims and lengths. `bandwidth_fraction` 0.85 for device memory: streaming copies on
  A100/H100 typically reach 85-92 % of the datasheet HBM bandwidth; 0.7 for on-chip levels.
  `comm_fraction` 0.8: NCCL all-reduce bus bandwidth over NVLink reaches roughly 80 % of the
  per-direction link rate for large messages (nccl-tests, "Performance" doc, bus bandwidth
  definition: https://github.com/NVIDIA/nccl-tests/blob/master/doc/PERFORMANCE.md).
  `launch_overhead_s` 2 µs: per kernel under CUDA-graph replay, as serving engines run decode
  (a plain `cudaLaunchKernel` costs about 5 µs of host time). Tiles: 128×256, 128×128, 64×128 and
  16×128 (the last for skinny decode GEMMs that put tokens on the MMA's narrow side, as Marlin
  does: Frantar et al. 2024, https://arxiv.org/abs/2408.11743), `tile_k` 64; FlashAttention tiles
  128×128. `saturating_tile_intensity` 64 FLOPs per staged element: an H100 SM does 4096 dense
  BF16 FLOPs per clock (989.4 TFLOP/s / 132 SMs / 1.83 GHz, H100 whitepaper) and its shared
  memory delivers 128 bytes = 64 BF16 elements per clock, so 16-row tiles (intensity 28) run at
  0.44 of peak while 64×128 and larger run at full rate. Dequantization: 2 vector FLOPs per stored
  element (Marlin converts int4 to fp16 with about one bit-manipulation or packed half2
  instruction per element, each counted like one FP32 FMA).
- `tpu`, `npu`, `accelerator`: systolic arrays; the tile is the array itself (its side derived
  from the 16-bit peak: `sqrt(peak / (2 · compute_units · clock_hz))`, 128 on TPU v5e, 256 on
  v6e) and `tile_k` the same side, since weights are loaded into the array a full side at a time.
  No small-tile penalty (`saturating_tile_intensity` 0): the array is fed from its own buffers.
  `matmul_fraction` 0.8 (XLA matmuls on large shapes keep the MXUs busy most of the time; Google's
  MLPerf and MaxText reports quote model FLOPs utilisation of 50-60 % for whole training steps,
  with matmuls alone higher). `launch_overhead_s` 1 µs (fused XLA programs, no host launch per
  op). Other fields as for GPUs.
- `cpu`: `matmul_fraction` 0.7 (oneDNN/MKL GEMMs attain 70-90 % of AVX-512/AMX peak on large
  shapes), `bandwidth_fraction` 0.7 (STREAM triad on servers attains 70-80 % of the channel
  peak), `launch_overhead_s` 10 µs (one eager PyTorch op's dispatch), small register tiles
  with no small-tile penalty (registers and L1 feed the FMA units).
- `soc` (Apple M-series, Jetson): `matmul_fraction` 0.6, `bandwidth_fraction` 0.75 (unified
  LPDDR shared with the CPU), `launch_overhead_s` 5 µs, GPU-like tiles with half the H100's
  saturating intensity (32, the A100's: 2048 FLOPs per SM per clock over 64 elements).

## Matmul efficiency by format family and architecture

`matmul_fraction` is what a large BF16 GEMM attains. Where a public GEMM table shows a format
family attaining a different fraction of its own peak on an architecture (or on one device of
it, where the devices' clocks under load differ), that pair has its own entry in
`FAMILY_FRACTION` (looked up by `matmul_fraction_for`: the device's own entry first, then its
architecture's); every other pair keeps `matmul_fraction`. A device whose `efficiency:` section
sets `matmul_fraction` (a calibration) keeps it for every family. The architecture of a catalog
device is `ARCHITECTURE[hw.name]`.

- (hopper, fp8) 0.67: DeepGEMM's published dense FP8 GEMM table (H800 SXM5, same tensor cores
  and 1,979 TFLOPS dense FP8 peak as the H100 SXM5; NVCC 12.8) attains 1,304 TFLOPS at
  4096x4096x7168 and 1,358 TFLOPS at 4096x7168x16384, i.e. 0.66-0.69 of peak on large shapes,
  where BF16 GEMMs reach 0.7-0.8 (README of https://github.com/deepseek-ai/DeepGEMM, revision
  of 2025-02-26, "Normal GEMMs for dense models" table). Those kernels use 1x128 / 128x128 block
  scales, whose promotion this model prices separately on the vector units (see `_roofline.py`),
  so for block-scaled FP8 the two together are an upper bound on the time.
- MI300X and MI325X (CDNA3): AMD's published max-achievable FLOPs (hipBLASLt, large GEMMs, ROCm
  6.3; AMD ROCm blog "Measuring Max-Achievable FLOPs - Part 2", Table 1,
  https://rocm.blogs.amd.com/software-tools-optimization/measuring-max-achievable-flops-part2/README.html):
  MI300X FP16 654, BF16 708, FP8 1,273 TFLOPS of 1,307 / 1,307 / 2,615 dense peak (0.50, 0.54,
  0.49); MI325X FP16 794, BF16 843, FP8 1,519 TFLOPS (0.61, 0.64, 0.58). The two share the
  peaks; the MI325X runs at higher clocks under load (1,000 W against 750 W).

Uncertainty `band` defaults (multipliers bracketing measured/predicted, about the 10th-90th
percentile): 0.8-1.3 for GPUs and TPUs, 0.7-1.5 for the rest; roofline models with fitted
efficiencies land within 20-30 % of measured kernel times on GPUs in published comparisons
(Yuan et al. 2024, "LLM Inference Unveiled", https://arxiv.org/abs/2402.16363). `quarch
calibrate` replaces them by its residuals. Predictions carry these only where no band derived
from published measurements applies (`_bands.py`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache
from typing import Any

from quarch.hardware import DeviceClass, Efficiency, Hardware

_GPU = Efficiency(
    matmul_fraction=0.75,
    attention_fraction=0.6,
    vector_fraction=0.5,
    bandwidth_fraction=(0.85, 0.7),
    comm_fraction=0.8,
    launch_overhead_s=2e-6,
    tiles=((128, 256), (128, 128), (64, 128), (16, 128)),
    tile_k=64,
    saturating_tile_intensity=64.0,
    attention_tile=(128, 128),
    dequant_flops_per_element=2.0,
    block_scaled_mma=None,
    band=(0.8, 1.3),
)
_SYSTOLIC = replace(
    _GPU,
    matmul_fraction=0.8,
    launch_overhead_s=1e-6,
    tiles=(),
    tile_k=0,
    saturating_tile_intensity=0.0,
    attention_tile=(128, 128),
)
DEFAULT_EFFICIENCY: dict[DeviceClass, Efficiency] = {
    DeviceClass.GPU: _GPU,
    DeviceClass.TPU: _SYSTOLIC,
    DeviceClass.NPU: replace(_SYSTOLIC, band=(0.7, 1.5)),
    DeviceClass.ACCELERATOR: replace(_SYSTOLIC, band=(0.7, 1.5)),
    DeviceClass.CPU: replace(
        _GPU,
        matmul_fraction=0.7,
        attention_fraction=0.5,
        bandwidth_fraction=(0.7, 0.7),
        comm_fraction=0.7,
        launch_overhead_s=10e-6,
        tiles=((32, 32), (8, 32)),
        tile_k=16,
        saturating_tile_intensity=0.0,
        attention_tile=(32, 32),
        band=(0.7, 1.5),
    ),
    DeviceClass.SOC: replace(
        _GPU,
        matmul_fraction=0.6,
        attention_fraction=0.5,
        bandwidth_fraction=(0.75, 0.7),
        launch_overhead_s=5e-6,
        tiles=((64, 64), (16, 64)),
        tile_k=32,
        saturating_tile_intensity=32.0,
        attention_tile=(64, 64),
        band=(0.7, 1.5),
    ),
}
"""Efficiency defaults per device class (see the module docstring for where each comes from)."""


ARCHITECTURE: dict[str, str] = {
    "a100-sxm": "ampere",
    "h100-sxm": "hopper",
    "h100-pcie": "hopper",
    "h200-sxm": "hopper",
    "b200": "blackwell",
    "l40s": "ada",
    "rtx-4090": "ada",
    "jetson-agx-orin": "ampere",
    "mi300x": "cdna3",
    "mi325x": "cdna3",
    "gaudi3": "gaudi3",
    "tpu-v5e": "tpu-v5e",
    "tpu-v6e": "tpu-v6e",
    "m2-ultra": "apple-m2",
}
"""Catalog device -> its architecture (the key of `FAMILY_FRACTION`); other devices have none."""

FAMILY_FRACTION: dict[tuple[str, str], float] = {
    ("hopper", "fp8"): 0.67,  # DeepGEMM dense FP8 table, H800: 1,304-1,358 of 1,979 TFLOPS
    # AMD max-achievable FLOPs (ROCm blog, Table 1): TFLOPS / dense peak
    ("mi300x", "fp16"): 654.0 / 1307.4,
    ("mi300x", "bf16"): 708.0 / 1307.4,
    ("mi300x", "fp8"): 1273.0 / 2614.9,
    ("mi325x", "fp16"): 794.0 / 1307.4,
    ("mi325x", "bf16"): 843.0 / 1307.4,
    ("mi325x", "fp8"): 1519.0 / 2614.9,
}
"""(device or architecture, rate family) -> attained fraction of that family's peak (module
doc, sources)."""


def matmul_fraction_for(hw: Hardware, family: str) -> float:
    """The fraction of `hw`'s `family` peak a large GEMM attains (see the module doc)."""
    eff = efficiency_for(hw)
    if "matmul_fraction" in dict(hw.efficiency):  # a calibrated device keeps its own
        return eff.matmul_fraction
    own = FAMILY_FRACTION.get((hw.name, family))
    if own is not None:
        return own
    arch = ARCHITECTURE.get(hw.name)
    if arch is None:
        return eff.matmul_fraction
    return FAMILY_FRACTION.get((arch, family), eff.matmul_fraction)


def systolic_side(hw: Hardware) -> int:
    """Side of a square systolic array implied by the 16-bit peak: `sqrt(peak / (2·units·clock))`.

    Falls back to the fastest listed format where the device lists no 16-bit rate.
    """
    rates = hw.matrix_flops_per_s
    peak = rates.get("bf16") or rates.get("fp16") or max(rates.values())
    side = math.sqrt(peak / (2.0 * hw.compute_units * hw.clock_hz))
    return max(1, round(side))


@lru_cache(maxsize=256)
def efficiency_for(hw: Hardware) -> Efficiency:
    """The device class's defaults with the device's own `efficiency` overrides applied.

    Derived fields are resolved: empty `tiles` become the systolic array (`tile_k` its side),
    and `block_scaled_mma=None` becomes whether the device runs fp4 or fp6 natively.
    """
    overrides: dict[str, Any] = dict(hw.efficiency)
    eff = replace(DEFAULT_EFFICIENCY[hw.device_class], **overrides)
    if not eff.tiles:
        side = systolic_side(hw)
        eff = replace(eff, tiles=((side, side),), tile_k=eff.tile_k or side)
    if eff.block_scaled_mma is None:
        native_mx = "fp4" in hw.matrix_flops_per_s or "fp6" in hw.matrix_flops_per_s
        eff = replace(eff, block_scaled_mma=native_mx)
    return eff


def bandwidth_fraction(eff: Efficiency, level: int) -> float:
    """Attainable fraction of memory level `level`'s bandwidth (the last value repeats)."""
    fractions = eff.bandwidth_fraction
    return fractions[min(level, len(fractions) - 1)]


@lru_cache(maxsize=64)
def _tile_rates(
    tiles: tuple[tuple[int, int], ...], saturation: float
) -> tuple[tuple[int, int, float], ...]:
    """Each candidate tile with its rate relative to full rate (see `saturating_tile_intensity`)."""
    out = []
    for tm, tn in tiles:
        intensity = 2.0 * tm * tn / (tm + tn)  # FLOPs per staged operand element
        out.append((tm, tn, min(1.0, intensity / saturation) if saturation > 0 else 1.0))
    return tuple(out)


def _ceil_to(x: int, step: int) -> int:
    return -(-x // step) * step


def gemm_tile_factor(
    m: int, n: int, k: int, batch: int, eff: Efficiency, units: int
) -> tuple[float, int]:
    """How much longer than ideal a GEMM takes from its shape: (factor ≥ 1, chosen tile rows).

    `factor` multiplies `2·batch·m·n·k / (peak · matmul_fraction)`: it is padded work over real
    work, divided by the tile's relative rate and by the wave efficiency, minimised over the
    candidate tiles. The chosen tile's row count tells how often weights are re-read per GEMM.
    """
    return _gemm_factor(m, n, k, batch, eff.tiles, eff.tile_k, eff.saturating_tile_intensity, units)


def _gemm_factor(
    m: int,
    n: int,
    k: int,
    batch: int,
    tiles: tuple[tuple[int, int], ...],
    tk: int,
    saturation: float,
    units: int,
) -> tuple[float, int]:
    real = m * n * k
    if real <= 0:
        return 1.0, 1
    k_steps = -(-k // tk)
    best, best_rows = math.inf, 1
    for tm, tn, rate in _tile_rates(tiles, saturation):
        mt, nt = -(-m // tm), -(-n // tn)
        n_tiles = batch * mt * nt
        split = 1  # split-K when there are fewer tiles than units: max(1, min(units // tiles, k))
        if n_tiles < units:
            split = units // n_tiles
            if split > k_steps:
                split = k_steps
            if split < 1:
                split = 1
        work = n_tiles * split
        waves = -(-work // units)
        padded_k = -(-k_steps // split) * split * tk  # each split walks the same k-steps
        # padded work: every tile computes tm x tn x padded_k, in whole waves over all units
        factor = (waves * units / work) * (mt * tm * nt * tn * padded_k) / real / rate
        if factor < best:
            best, best_rows = factor, tm
    return best, best_rows


def attention_tile_factor(m: int, n: int, batch: int, eff: Efficiency, units: int) -> float:
    """How much longer than ideal fused attention takes from its shape (factor ≥ 1).

    `batch` independent problems (sequence × KV head) of `m` query rows (the query heads sharing
    the KV head, times the new tokens) over `n` keys. Rows are padded to the tile's rows; a
    problem with fewer rows than a tile (decode) runs in the smallest row tile the GEMM kernels
    use (16 on GPUs, the MMA's M), as FlashDecoding and FlashInfer decode kernels do. Keys are
    padded to the tile's columns. When there are fewer row tiles than units, the key axis is
    split across units (split-KV, FlashDecoding), at most down to one column tile per unit.
    """
    small = min(rows for rows, _ in eff.tiles)
    return _attention_factor(m, n, batch, eff.attention_tile, small, units)


def _attention_factor(
    m: int, n: int, batch: int, tile: tuple[int, int], small_rows: int, units: int
) -> float:
    tr, tc = tile
    if m <= 0 or n <= 0 or batch <= 0:
        return 1.0
    step = tr if m >= tr else min(tr, small_rows)
    padded_rows = -(-m // step) * step
    row_tiles = batch * -(-m // tr)
    col_steps = -(-n // tc)
    split = 1 if row_tiles >= units else max(1, min(units // row_tiles, col_steps))
    work = row_tiles * split
    waves = -(-work // units)
    padded_cols = _ceil_to(col_steps, split) * tc
    return (waves * units / work) * (padded_rows * padded_cols) / (m * n)
