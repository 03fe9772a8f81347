"""`quantize(fmt, x, out=buf)`: the fast paths give the reference path's exact bits on an
adversarial corpus (random inputs alone accept wrong kernels: a prototype matched normal data
and missed most fp32 subnormals and every value near the fp32 maximum), and `out` is checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quarch.formats import Format, _fast, _fast_cpp, quantize

from ._util import assert_same_bits

FAST_FORMATS = [
    "int4_g128",
    "int8_g32",
    "int4",
    "int8_t",
    "mxfp4",
    "mxfp8_e4m3",
    "mxint8",
    "nvfp4",
    "fp8_e4m3_t",
    "fp8_e4m3_c",
    "fp6_e2m3_g32_ceil",
    "fp4_e2m1_g16_near",
]
COLS = 256  # a multiple of every block above, so each corpus row holds whole blocks
F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).tiny)
F32_SUB = float(np.finfo(np.float32).smallest_subnormal)


def _ulp_below(p: float) -> float:
    return float(np.nextafter(np.float32(p), np.float32(0)))


def _rows(rng: np.random.Generator) -> list[np.ndarray]:
    """One kind of hard input per row (each row is whole blocks of every format)."""
    n = COLS

    def normal() -> np.ndarray:
        return rng.standard_normal(n)

    rows = [normal(), normal() * 1e3]
    rows.append(rng.standard_t(1.5, n))  # heavy tails
    rows.append(normal() * np.exp(rng.uniform(-30, 30, n)))  # magnitudes over 26 decades
    out = normal()
    out[rng.integers(0, n, 6)] = rng.choice([-1e4, 1e4, 3e6], 6)  # a few outliers
    rows.append(out)
    rows.append(np.zeros(n))  # all-zero blocks
    half = normal()
    half[: n // 2] = 0.0
    half[n // 2 :: 2] = -0.0
    rows.append(half)  # zero blocks next to live ones, and signed zeros
    rows.append(normal() * 1e-40)  # fp32 subnormals only
    rows.append(rng.choice([F32_SUB, -F32_SUB, 2 * F32_SUB, F32_TINY, -F32_TINY, 0.0], n))
    mixed = normal() * 1e-39
    mixed[::16] = normal()[::16] * 1e-30
    rows.append(mixed)
    for special in (np.inf, -np.inf, np.nan):  # one special per block of 16/32, or a few
        r = normal()
        r[rng.integers(0, n, 3)] = special
        rows.append(r)
    big = normal() * 1e38
    big[::7] = F32_MAX
    big[3::11] = -F32_MAX
    rows.append(big)  # values at fp32 max
    rows.append(np.full(n, F32_MAX) * rng.choice([-1.0, 1.0], n))
    rows.append(np.clip(normal() * 3e38, -F32_MAX, F32_MAX))
    # exact ties of each grid, at a block maximum that fixes the scale to 1 (int: amax 7 or
    # 127, e2m1: amax 6, e4m3: 448)
    for amax, ties in (
        (7.0, np.arange(-6.5, 7.0, 1.0)),
        (127.0, np.arange(-126.5, 127.0, 1.0)),
        (6.0, np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])),
        (448.0, np.array([0.5, 1.5, 9.5, 17.0, 34.0, 232.0, 416.0, 2.0**-9 * 1.5])),
        (4.0, np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 0.125, 0.375])),
    ):
        r = rng.choice(np.concatenate([ties, -ties]), n)
        r[::16] = amax
        rows.append(r)
    for c in (0.1, 0.3, 1.7, 1e-3):  # ties under scales that are not powers of two, where
        # x / s and x * (1 / s) can round apart
        k = rng.integers(-7, 7, n).astype(np.float32) + np.float32(0.5)
        r = k * np.float32(c)
        r[::16] = np.float32(7 * c)
        rows.append(r)
    for p in (2.0, 4.0, 8.0, 1.0, 0.5, 2.0**-126, 2.0**100, 448.0 * 2, 6.0 * 4):
        r = rng.uniform(-1, 1, n) * _ulp_below(p)
        r[::16] = _ulp_below(p)  # every block's maximum one ulp below a power of two
        rows.append(r)
    return rows


def corpus() -> torch.Tensor:
    rng = np.random.default_rng(16)
    rows = np.stack(_rows(rng)).astype(np.float32)
    return torch.from_numpy(np.concatenate([rows, rows[:, ::-1].copy()]))


@pytest.fixture
def always_fast(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The fast path for every size, in small chunks (so chunk edges fall inside the corpus);
    counts its calls, so a test knows the fast path ran."""
    monkeypatch.setattr(_fast, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(_fast, "CHUNK_ELEMENTS", 3 * COLS)
    calls: list[int] = []
    real = _fast.quantize_into

    def spy(*args: object, **kwargs: object) -> None:
        calls.append(1)
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_fast, "quantize_into", spy)
    return calls


def _check(fmt: Format, x: torch.Tensor, what: str) -> None:
    want = quantize(fmt, x)
    out = torch.full_like(x, 12345.0)
    got = quantize(fmt, x, out=out)
    assert got is out
    assert_same_bits(got, want, x, f"{fmt} {what} out=")
    inplace = x.clone()
    assert quantize(fmt, inplace, out=inplace) is inplace
    assert_same_bits(inplace, want, x, f"{fmt} {what} in place")


@pytest.mark.parametrize("name", FAST_FORMATS)
def test_fast_path_is_bit_identical_on_the_adversarial_corpus(
    name: str, always_fast: list[int]
) -> None:
    fmt = Format.parse(name)
    x = corpus()
    _check(fmt, x, "corpus")
    assert always_fast, f"{name}: the fast path did not run"
    # the same rows as one 3-D tensor, and every row on its own (chunks of one row)
    _check(fmt, x.reshape(2, -1, COLS), "3-D")
    _check(fmt, x.reshape(-1, 2 * COLS), "wide rows")


@pytest.mark.parametrize("name", ["int4_g128", "mxfp4", "nvfp4", "fp8_e4m3_t", "fp8_e4m3_c"])
def test_odd_and_strided_shapes(name: str, always_fast: list[int]) -> None:
    fmt = Format.parse(name)
    x = corpus()
    _check(fmt, x[:, 3:250], "odd last dim (padded blocks)")  # stride(-1) 1, not contiguous
    _check(fmt, x[:37, :101].contiguous(), "37x101")
    _check(fmt, x.reshape(-1)[: 5 * 7 * 33].reshape(5, 7, 33), "5x7x33")
    for xs in (x[:, ::2], x.t()):  # a strided last dim: the reference path, into out
        calls = len(always_fast)
        got = quantize(fmt, xs, out=torch.empty_like(xs))
        assert len(always_fast) == calls, "a strided last dim must take the reference path"
        assert_same_bits(got, quantize(fmt, xs), xs, f"{fmt} strided")
        _check(fmt, xs, "strided last dim")  # in place: a contiguous clone, the fast path


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["int4_g128", "mxfp4", "nvfp4", "fp8_e4m3_t"])
def test_half_inputs_into_out(name: str, dtype: torch.dtype, always_fast: list[int]) -> None:
    x = corpus().to(dtype)
    _check(Format.parse(name), x, str(dtype))


@pytest.mark.parametrize("name", ["bf16", "nf4", "ternary", "int4_g128_mse", "q4_k", "mxfp4_b4x8"])
def test_every_other_format_writes_into_out(name: str) -> None:
    fmt = Format.parse(name)
    x = torch.randn(8, 256, generator=torch.Generator().manual_seed(1))
    _check(fmt, x, "generic path")


def test_overlapping_out_is_computed_before_it_is_written(always_fast: list[int]) -> None:
    fmt = Format.parse("int4_g128")
    base = corpus()
    x = base[:, :128]
    want = quantize(fmt, x)
    out = base[:, 64:192]  # shares memory with x, shifted: must not be read after written
    got = quantize(fmt, x.contiguous(), out=out.contiguous())  # sanity: unrelated buffers
    assert_same_bits(got, want, x, "unrelated")
    buf = torch.empty(base.shape[0], 256)
    buf[:, :128] = x
    got = quantize(fmt, buf[:, :128], out=buf[:, 64:192])
    assert_same_bits(got, want, x, "overlapping")


def test_bad_out_is_refused_naming_it() -> None:
    fmt = Format.parse("int4_g128")
    x = torch.randn(4, 128)
    with pytest.raises(ValueError, match=r"out has shape \(4, 64\)"):
        quantize(fmt, x, out=torch.empty(4, 64))
    with pytest.raises(TypeError, match=r"out has dtype torch\.float16"):
        quantize(fmt, x, out=torch.empty(4, 128, dtype=torch.float16))
    with pytest.raises(TypeError, match=r"out must be a torch\.Tensor"):
        quantize(fmt, x, out=np.zeros((4, 128)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out is on device meta"):
        quantize(fmt, x, out=torch.empty(4, 128, device="meta"))


def test_small_tensors_skip_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("fast path taken for a small tensor")

    monkeypatch.setattr(_fast, "quantize_into", fail)
    x = torch.randn(4, 128)
    out = torch.empty_like(x)
    assert_same_bits(
        quantize(Format.parse("mxfp4"), x, out=out), quantize(Format.parse("mxfp4"), x), x, "small"
    )


@pytest.mark.parametrize("name", ["int4_g128", "int4", "mxfp4", "mxfp8_e4m3", "fp8_e4m3_c"])
def test_pairwise_abs_max_on_every_block_size(
    name: str, always_fast: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_fast, "PAIRWISE_MAX_BLOCK", 1 << 30)
    x = corpus()
    _check(Format.parse(name), x, "pairwise abs-max")
    _check(Format.parse(name), x[:, :96].contiguous(), "pairwise abs-max, odd halving")


@pytest.fixture
def cpp_kernel(always_fast: list[int], monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The C++ kernel for every size (built here, in the foreground, on first use: ~30 s once;
    torch caches it). Skipped where it cannot be built (no compiler) or is switched off."""
    if _fast_cpp.module(wait=True) is None:
        pytest.skip(f"C++ kernel unavailable: {_fast_cpp.build_error() or 'QUARCH_FORMATS_CPP=0'}")
    monkeypatch.setattr(_fast, "CPP_MIN_ELEMENTS", 0)
    monkeypatch.setattr(_fast, "SCALE_CHUNK", 7)  # scales in slices, with a ragged last one
    calls: list[int] = []
    real = _fast._quantize_cpp

    def spy(*args: object, **kwargs: object) -> bool:
        served = real(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(int(served))
        return served

    monkeypatch.setattr(_fast, "_quantize_cpp", spy)
    return calls


@pytest.mark.parametrize("name", FAST_FORMATS)
def test_cpp_kernel_is_bit_identical_on_the_adversarial_corpus(
    name: str, cpp_kernel: list[int]
) -> None:
    fmt = Format.parse(name)
    x = corpus()
    _check(fmt, x, "C++ corpus")
    assert any(cpp_kernel), f"{name}: the C++ kernel did not serve"
    _check(fmt, x.reshape(2, -1, COLS), "C++ 3-D")
    _check(fmt, x.reshape(-1, 2 * COLS), "C++ wide rows")
    _check(fmt, x[:37, :96].contiguous(), "C++ 37x96")
    _check(fmt, x[:, 3:250], "C++ odd last dim")  # padded or non-contiguous: the torch path


def test_cpp_kernel_threads_agree(cpp_kernel: list[int]) -> None:
    x = corpus()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for name in ("int4_g128", "mxfp4", "nvfp4", "fp8_e4m3_t"):
            _check(Format.parse(name), x, "C++ 2 threads")
    finally:
        torch.set_num_threads(before)


def test_no_call_waits_for_the_build(
    always_fast: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the kernel builds (here: a build that blocks until released), the torch path
    serves at once, with the same bits."""
    import threading

    release = threading.Event()

    def slow_build() -> None:
        release.wait(30)
        _fast_cpp._state["error"] = "test build"

    monkeypatch.setattr(_fast_cpp, "_state", {})
    monkeypatch.setattr(_fast_cpp, "_build", slow_build)
    monkeypatch.setattr(_fast, "CPP_MIN_ELEMENTS", 0)
    try:
        assert _fast_cpp.module() is None  # starts the build, does not wait
        _check(Format.parse("mxfp4"), corpus(), "while building")
        assert always_fast
    finally:
        release.set()
    assert _fast_cpp.module(wait=True) is None
    assert _fast_cpp.build_error() == "test build"


def test_the_kernel_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUARCH_FORMATS_CPP", "0")
    assert _fast_cpp.module() is None
