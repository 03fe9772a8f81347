"""GGUF block types against the `gguf` package's reference numpy quantizers and dequantizers.

Where gguf implements the quantizer (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1), quarch's blocks must be the
same bytes. For every type, quarch's dequantizer must equal `gguf.quants.dequantize` on any
bytes (random blocks included), and `gguf.quants.dequantize(encode_gguf_bytes(fmt, x))` must equal
`quantize(fmt, x)`: the encoded blocks are real GGUF blocks.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf.quants import dequantize as gguf_dequantize
from gguf.quants import quantize as gguf_quantize

from quarch.formats import (
    GGUF_FORMATS,
    Format,
    compute_scales,
    decode,
    decode_gguf_bytes,
    encode,
    encode_gguf_bytes,
    gguf_fallback,
    gguf_type_of,
    quantize,
)

from ._gguf_reference import REFERENCES

# Types whose quantizer gguf 0.19 implements in numpy (gguf/quants.py: quantize_blocks).
GGUF_QUANTIZES = ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1"]
NAMES = list(GGUF_FORMATS)


def block_of(name: str) -> int:
    return gguf.GGML_QUANT_SIZES[gguf_type_of(Format.parse(name))][0]


def cases(block: int) -> dict[str, torch.Tensor]:
    """Normal, heavy-tailed, outlier and all-zero rows, each a multiple of the block long."""
    g = torch.Generator().manual_seed(7)
    n = 4 * block
    normal = torch.randn(6, n, generator=g) * torch.exp2(torch.arange(-6, 6, 2)).unsqueeze(1)
    u = torch.rand(4, n, generator=g)
    heavy = torch.tan(math.pi * (u - 0.5))  # Cauchy: very heavy tails
    outliers = torch.randn(4, n, generator=g)
    outliers[:, ::37] *= 200.0
    outliers[1, 5] = -1e4
    zeros = torch.zeros(2, n)
    mixed = torch.randn(2, n, generator=g)
    mixed[0, :block] = 0.0  # one all-zero block in a live row
    mixed[1, block : 2 * block] = 3.25  # one constant block
    tiny = torch.randn(2, n, generator=g) * 1e-6
    return {
        "normal": normal,
        "heavy": heavy,
        "outliers": outliers,
        "zeros": zeros,
        "mixed": mixed,
        "tiny": tiny,
        "3d": torch.randn(2, 3, n, generator=g),
    }


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a32, b32 = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a32.shape == b32.shape and np.array_equal(a32.view(np.uint32), b32.view(np.uint32))


@pytest.mark.parametrize("name", GGUF_QUANTIZES)
def test_bytes_equal_gguf_quantizer(name: str) -> None:
    fmt = Format.parse(name)
    qtype = gguf_type_of(fmt)
    for case, x in cases(block_of(name)).items():
        ours = encode_gguf_bytes(fmt, x)
        ref = gguf_quantize(x.numpy(), qtype)
        assert ours.dtype == np.uint8 and ours.shape == ref.shape, f"{name} {case}"
        bad = np.flatnonzero(ours != ref)
        assert bad.size == 0, f"{name} {case}: {bad.size} bytes differ, first at {bad[:5]}"
        want = gguf_dequantize(ref, qtype)
        assert same_bits(quantize(fmt, x).numpy(), want), f"{name} {case}: dequantized values"


@pytest.mark.parametrize("name", NAMES)
def test_encoded_bytes_dequantize_to_quantize(name: str) -> None:
    """gguf's own dequantizer, fed quarch's bytes, gives quantize(fmt, x) bit for bit."""
    fmt = Format.parse(name)
    for case, x in cases(block_of(name)).items():
        data = encode_gguf_bytes(fmt, x)
        got = gguf_dequantize(data, gguf_type_of(fmt))
        assert same_bits(got, quantize(fmt, x).numpy()), f"{name} {case}"
        assert same_bits(decode_gguf_bytes(fmt, data).numpy(), got), f"{name} {case}: decode"


@pytest.mark.parametrize("name", NAMES)
def test_dequantizer_equals_gguf_on_random_blocks(name: str) -> None:
    """Arbitrary blocks (every code pattern, any finite fp16 scales) decode as gguf decodes."""
    fmt = Format.parse(name)
    qtype = gguf_type_of(fmt)
    _, type_bytes = gguf.GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(5)
    data = rng.integers(0, 256, size=(64, 3 * type_bytes), dtype=np.uint8)
    with np.errstate(all="ignore"):  # NaN / inf fp16 scales
        want = gguf_dequantize(data, qtype)
    finite = np.isfinite(want)
    got = decode_gguf_bytes(fmt, data).numpy()
    assert finite.mean() > 0.5  # random fp16 scales are mostly finite
    assert same_bits(np.where(finite, got, 0), np.where(finite, want, 0)), name
    assert np.array_equal(np.isnan(got), np.isnan(want)), name


@pytest.mark.parametrize("name", NAMES)
def test_encode_decode_and_dtypes(name: str) -> None:
    fmt = Format.parse(name)
    x = cases(block_of(name))["outliers"]
    enc = encode(fmt, x)
    assert enc.codes.shape == x.shape and enc.scale_codes is not None
    assert enc.codes.min() >= (-128 if name == "q8_0" else 0)
    assert enc.codes.max() < 2**fmt.element.bits
    assert torch.equal(decode(fmt, enc), quantize(fmt, x))
    for dtype in (torch.bfloat16, torch.float16):
        xd = x.to(dtype)
        y = quantize(fmt, xd)
        assert y.dtype == dtype and y.shape == x.shape
        assert torch.equal(y, quantize(fmt, xd.float()).to(dtype))


@pytest.mark.parametrize("name", NAMES)
def test_name_size_and_type(name: str) -> None:
    fmt = Format.parse(name)
    assert str(fmt) == name and Format.parse(str(fmt)) == fmt
    assert Format.parse(name.upper()) == fmt
    qtype = gguf_type_of(fmt)
    assert qtype is not None and qtype.name.lower() == name
    block, type_bytes = gguf.GGML_QUANT_SIZES[qtype]
    assert fmt.bits_per_element == type_bytes * 8 / block
    assert fmt.storage_bits((4, 2 * block)) == 4 * 2 * type_bytes * 8


def test_bits_per_element_known_values() -> None:
    """The sizes the issue names: llama.cpp's block structs."""
    want = {"q4_0": 4.5, "q8_0": 8.5, "q4_1": 5.0, "q5_0": 5.5, "q5_1": 6.0, "iq4_nl": 4.5}
    want |= {"q4_k": 4.5, "q6_k": 6.5625, "q5_k": 5.5, "q2_k": 2.625, "q3_k": 3.4375}
    for name, bpe in want.items():
        if name in GGUF_FORMATS:
            assert Format.parse(name).bits_per_element == bpe, name


@pytest.mark.parametrize("name", NAMES)
def test_bad_shapes_and_uses_refused(name: str) -> None:
    fmt = Format.parse(name)
    block = block_of(name)
    with pytest.raises(ValueError, match=f"multiple of {block}"):
        quantize(fmt, torch.randn(4, block + 1))
    with pytest.raises(ValueError, match=f"multiple of {block}"):
        encode_gguf_bytes(fmt, torch.randn(block // 2))
    with pytest.raises(ValueError, match="GGUF"):
        compute_scales(fmt, torch.randn(4, block))
    with pytest.raises(ValueError, match="no modifiers"):
        Format.parse(name + "_rz")


def test_other_formats_have_no_gguf_type() -> None:
    assert gguf_type_of(Format.parse("mxfp4")) is None
    assert gguf_type_of(Format.parse("bf16")) == gguf.GGMLQuantizationType.BF16
    with pytest.raises(ValueError, match="no GGUF tensor type"):
        encode_gguf_bytes(Format.parse("int4_g128"), torch.randn(2, 128))


@pytest.mark.parametrize("name", ["fp32", "fp16", "bf16"])
def test_float_types_bytes(name: str) -> None:
    fmt = Format.parse(name)
    x = cases(32)["heavy"]
    data = encode_gguf_bytes(fmt, x)
    view = {"fp32": np.float32, "fp16": np.float16, "bf16": np.uint8}[name]
    got = gguf_dequantize(data if name == "bf16" else data.view(view), gguf_type_of(fmt))
    assert same_bits(got, quantize(fmt, x).float().numpy())


def test_non_finite_blocks_become_nan_locally() -> None:
    fmt = Format.parse("q4_0")
    x = torch.randn(2, 64)
    for bad in (math.nan, math.inf):
        y = x.clone()
        y[1, 40] = bad
        q = quantize(fmt, y)
        assert bool(q[1, 32:].isnan().all())
        assert torch.equal(q[:, :32], quantize(fmt, x)[:, :32])
        assert torch.equal(q[0], quantize(fmt, x)[0])


# --- the reference algorithm where gguf has no quantizer ----------------------------------------

IQ4_NL_VALUES = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)


def iq4_nl_reference(block: np.ndarray) -> tuple[np.ndarray, np.float16]:
    """One block of llama.cpp's quantize_row_iq4_nl_ref (ggml-quants.c:
    quantize_row_iq4_nl_impl with ntry = -1, no importance weights), scalar float32 loops."""
    f32 = np.float32
    vals = [f32(v) for v in IQ4_NL_VALUES]
    amax, mx = f32(0), f32(0)
    for v in block:
        if abs(v) > amax:
            amax, mx = abs(v), v
    codes = np.zeros(32, dtype=np.int32)
    if amax < f32(1e-15):  # GROUP_MAX_EPS
        return codes, np.float16(0)
    inv = f32(1) / (mx / vals[0])
    sumqx, sumq2 = f32(0), f32(0)
    for j, v in enumerate(block):
        al = inv * v
        if al <= vals[0]:
            k = 0
        elif al >= vals[-1]:
            k = 15
        else:
            ml, mu = 0, 15
            while mu - ml > 1:
                mid = (ml + mu) // 2
                if al < vals[mid]:
                    mu = mid
                else:
                    ml = mid
            k = mu - 1 if al - vals[mu - 1] < vals[mu] - al else mu
        codes[j] = k
        w = v * v
        sumqx = f32(sumqx + w * vals[k] * v)
        sumq2 = f32(sumq2 + w * vals[k] * vals[k])
    d = sumqx / sumq2 if sumq2 > 0 else f32(0)
    return codes, np.float16(d)


def test_iq4_nl_equals_scalar_reference() -> None:
    fmt = Format.parse("iq4_nl")
    for case, x in cases(32).items():
        enc = encode(fmt, x)
        codes = enc.codes.reshape(-1, 32).numpy()
        assert enc.scale_codes is not None
        d = enc.scale_codes.reshape(-1).numpy().astype(np.uint16).view(np.float16)
        for i, block in enumerate(x.reshape(-1, 32).numpy()):
            want_codes, want_d = iq4_nl_reference(block)
            assert np.array_equal(codes[i], want_codes), f"{case} block {i}: codes"
            assert d[i].view(np.uint16) == want_d.view(np.uint16), f"{case} block {i}: scale"


# --- error bound and monotonicity ---------------------------------------------------------------

# (lowest, highest) value of a code, and whether the type stores a minimum, per legacy type.
LEGACY_RANGE = {
    "q8_0": (-127, 127, False),
    "q4_0": (-8, 7, False),
    "q5_0": (-16, 15, False),
    "q4_1": (0, 15, True),
    "q5_1": (0, 31, True),
}


@pytest.mark.parametrize("name", list(LEGACY_RANGE))
def test_legacy_within_a_step(name: str) -> None:
    """|q - x| ≤ half a step d inside the code range, ≤ one step beyond it (Q4_0 and Q5_0 map
    the largest magnitude to -8 / -16, so the other sign's extreme clips to +7 / +15), plus the
    fp16 rounding of d and m (2^-11 relative)."""
    fmt = Format.parse(name)
    lo, hi, has_min = LEGACY_RANGE[name]
    for case in ("normal", "heavy", "outliers", "mixed"):
        x = cases(32)[case].reshape(-1, 32).double()
        y = quantize(fmt, x.float()).double()
        enc = encode(fmt, x.float())
        d = torch.from_numpy(enc.scale_codes.numpy().astype(np.uint16).view(np.float16))
        d = d.double().reshape(-1, 1)
        m = torch.zeros_like(d)
        if has_min:
            m = x.amin(-1, keepdim=True)
        v = (x - m) / torch.where(d == 0, 1.0, d)
        inside = (v >= lo - 0.5) & (v <= hi + 0.5)
        slack = (max(abs(lo), abs(hi)) * d.abs() + m.abs()) * 2.0**-10 + 1e-30
        bound = torch.where(inside, 0.5 * d.abs(), d.abs()) + slack
        err = (y - x).abs()
        assert bool((err <= bound).all()), f"{name} {case}: max excess {(err - bound).max()}"


@pytest.mark.parametrize("name", list(LEGACY_RANGE))
def test_legacy_monotone_with_the_block_extremes_fixed(name: str) -> None:
    """With a block's max, min and largest magnitude held, its scale is fixed, and q(x) is
    non-decreasing in each other element. (IQ4_NL and the K-quants fit their scales by least
    squares over the whole block, so there no scale is held fixed and this does not hold.)"""
    fmt = Format.parse(name)
    g = torch.Generator().manual_seed(3)
    rest = torch.rand(29, generator=g) * 2 - 1
    sweep = torch.linspace(-2.999, 2.999, 4001)
    x = torch.empty(sweep.numel(), 32)
    x[:, 0], x[:, 1], x[:, 2], x[:, 3:] = 3.0, -3.0, sweep, rest
    q = quantize(fmt, x)[:, 2]
    assert bool((q[1:] >= q[:-1]).all()), name


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_k_quants_equal_scalar_reference(name: str) -> None:
    """Codes, d, dmin and sub-block scales and minimums equal a scalar float32 transcription of
    llama.cpp's quantize_row_*_ref, block for block (a few blocks of each kind of data)."""
    fmt = Format.parse(name)
    blocks = torch.cat([x.reshape(-1, 256)[:3] for x in cases(256).values()])
    enc = encode(fmt, blocks)
    assert enc.scale_codes is not None and enc.sub_scales is not None
    d_all = enc.scale_codes.reshape(-1).numpy().astype(np.uint16)
    mins = None if enc.mins is None else enc.mins.reshape(-1).numpy().astype(np.uint16)
    for i, block in enumerate(blocks.numpy()):
        codes, d, dmin, sc, mn = REFERENCES[name](block)
        assert enc.codes[i].tolist() == codes, f"{name} block {i}: codes"
        assert d_all[i] == d.view(np.uint16), f"{name} block {i}: d"
        assert enc.sub_scales[i, 0].tolist() == sc, f"{name} block {i}: sub-scales"
        if dmin is not None:
            assert mins is not None and enc.sub_mins is not None
            assert mins[i] == dmin.view(np.uint16), f"{name} block {i}: dmin"
            assert enc.sub_mins[i, 0].tolist() == mn, f"{name} block {i}: sub-mins"


# (lowest, highest) stored code, code offset, whether a sub-block minimum is subtracted.
K_RANGE = {
    "q2_k": (0, 3, 0, True),
    "q3_k": (0, 7, 4, False),
    "q4_k": (0, 15, 0, True),
    "q5_k": (0, 31, 0, True),
    "q6_k": (0, 63, 32, False),
}


def k_sub_block_params(name: str, enc) -> tuple[torch.Tensor, torch.Tensor]:
    """(d_sub, dm_sub) per element, float64, as the dequantizer forms them from `enc`."""
    d = torch.from_numpy(enc.scale_codes.numpy().astype(np.uint16).view(np.float16)).float()
    sc = enc.sub_scales.float() - (32 if name == "q3_k" else 0)
    d_sub = d.unsqueeze(-1) * sc
    if enc.mins is None:
        dm_sub = torch.zeros_like(d_sub)
    else:
        dmin = torch.from_numpy(enc.mins.numpy().astype(np.uint16).view(np.float16)).float()
        dm_sub = dmin.unsqueeze(-1) * enc.sub_mins.float()
    k = 256 // sc.shape[-1]
    expand = lambda t: t.repeat_interleave(k, -1).reshape(enc.codes.shape).double()  # noqa: E731
    return expand(d_sub), expand(dm_sub)


@pytest.mark.parametrize("name", [n for n in K_RANGE if n in GGUF_FORMATS])
def test_k_quants_within_half_a_sub_block_step(name: str) -> None:
    """Every element is the nearest code of its sub-block's stored scale and minimum:
    |q - x| ≤ d_sub / 2 where (x + dm) / d_sub lies inside the code range, the nearest end of
    the range beyond it, and -dm where the sub-block's scale is 0 (float32 rounding aside)."""
    fmt = Format.parse(name)
    lo, hi, off, _ = K_RANGE[name]
    for case, x in cases(256).items():
        enc = encode(fmt, x)
        y = quantize(fmt, x).double()
        d_sub, dm_sub = k_sub_block_params(name, enc)
        xd = x.double()
        v = (xd + dm_sub) / torch.where(d_sub == 0, 1.0, d_sub) + off
        near = v.round().clamp(lo, hi)
        want = torch.where(d_sub == 0, -dm_sub, d_sub * (near - off) - dm_sub)
        slack = (d_sub.abs() * max(hi, off) + dm_sub.abs()) * 2.0**-22 + 1e-30
        ties = (v - v.floor() - 0.5).abs() < 1e-4  # either neighbour of a (near-)tie is right
        err = (y - want).abs()
        ok = (err <= slack) | (ties & (err <= d_sub.abs() + slack))
        assert bool(ok.all()), f"{name} {case}: {int((~ok).sum())} elements off their code"


def test_k_quants_error_falls_with_bits() -> None:
    """On Gaussian weights the error falls as the types grow: Q2_K > Q3_K > Q4_K > Q5_K > Q6_K,
    and each is within the SQNR a b-bit format of its size reaches (≈ 6 dB per bit, minus a few
    dB for scales)."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(64, 1024, generator=g)
    sqnr = {}
    for name in K_RANGE:
        err = (quantize(Format.parse(name), x) - x).square().mean()
        sqnr[name] = float(10 * torch.log10(x.square().mean() / err))
    names = list(K_RANGE)
    assert all(sqnr[a] < sqnr[b] for a, b in itertools.pairwise(names)), sqnr
    for name, floor in {"q2_k": 10, "q3_k": 15.5, "q4_k": 22, "q5_k": 28, "q6_k": 34}.items():
        assert sqnr[name] > floor, (name, sqnr)


def test_fallback_follows_llama_quantize() -> None:
    """SmolLM2-135M's rows of 576 (= 18 × 32, not a multiple of 256) get llama.cpp's fallback."""
    p = Format.parse
    assert gguf_fallback(p("q4_k"), 1536) == p("q4_k")
    want = {"q2_k": "iq4_nl", "q3_k": "iq4_nl", "q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0"}
    for k, fallback in want.items():
        assert gguf_fallback(p(k), 576) == p(fallback), k
        assert gguf_fallback(p(k), 100) == p("fp16"), k
    assert gguf_fallback(p("q4_0"), 576) == p("q4_0")
    with pytest.raises(ValueError, match="multiple of 32"):
        gguf_fallback(p("q4_0"), 100)
    with pytest.raises(ValueError, match="GGUF block type"):
        gguf_fallback(p("int4_g128"), 128)


def test_gguf_file_round_trip(tmp_path: Path) -> None:
    """Tensors of several types written with gguf's writer from encode_gguf_bytes read back
    with gguf's reader and dequantize, bit for bit, to quarch's quantize."""
    g = torch.Generator().manual_seed(13)
    tensors = {
        f"blk.{i}.{name}.weight": (Format.parse(name), torch.randn(8, 512, generator=g))
        for i, name in enumerate(["q4_k", "q6_k", "q8_0", "iq4_nl", "q5_1", "bf16"])
    }
    path = tmp_path / "t.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    for name, (fmt, x) in tensors.items():
        data = encode_gguf_bytes(fmt, x)
        writer.add_tensor(name, data, raw_dtype=gguf_type_of(fmt))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader = gguf.GGUFReader(str(path))
    assert {t.name for t in reader.tensors} == set(tensors)
    for t in reader.tensors:
        fmt, x = tensors[t.name]
        assert t.tensor_type == gguf_type_of(fmt), t.name
        got = gguf_dequantize(np.asarray(t.data), t.tensor_type).reshape(x.shape)
        assert same_bits(got, quantize(fmt, x).float().numpy()), t.name
