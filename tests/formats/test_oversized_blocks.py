"""A group or 2-D block longer than the dimension it scales covers that whole dimension instead
of padding the tensor to the block (issue 15: `int8_g40000000` on a 64x256 tensor asked for
10 GB)."""

from __future__ import annotations

import resource

import pytest
import torch

from quarch.formats import Format, compute_scales, decode, encode, quantize


def _weights() -> torch.Tensor:
    return torch.randn(64, 256, generator=torch.Generator().manual_seed(0))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


# (oversized format, the format it must match exactly on a 64x256 tensor)
SAME_AS = [
    ("int8_g40000000", "int8_g256"),
    ("int4_g2147483647_asym", "int4_g256_asym"),
    ("mxfp4_g1000000", "mxfp4_g256"),
    ("int4_g100000_mean", "int4_g256_mean"),
    ("int4_g100000_mse", "int4_g256_mse"),
    ("int8_b100000x100000", "int8_b64x256"),
    ("int8_b8x100000", "int8_b8x256"),
    ("nvfp4_b100000x16", "nvfp4_b64x16"),
]


@pytest.mark.parametrize(("big", "fit"), SAME_AS)
def test_an_oversized_block_scales_the_whole_dimension(big: str, fit: str) -> None:
    x = _weights()
    before = _peak_rss_mb()
    got = quantize(Format.parse(big), x)
    assert _peak_rss_mb() - before < 100, "the tensor was padded to the block"
    assert torch.equal(got, quantize(Format.parse(fit), x))
    scales = compute_scales(Format.parse(big), x)
    assert torch.equal(scales.block, compute_scales(Format.parse(fit), x).block)


@pytest.mark.parametrize(("big", "fit"), SAME_AS)
def test_oversized_blocks_store_and_decode_like_the_fitting_block(big: str, fit: str) -> None:
    x, fmt = _weights(), Format.parse(big)
    assert fmt.storage_bits(tuple(x.shape)) == Format.parse(fit).storage_bits(tuple(x.shape))
    assert torch.equal(decode(fmt, encode(fmt, x)), quantize(fmt, x))


def test_bits_per_element_stays_nominal() -> None:
    # 8 bits + a 32-bit scale shared by 40M elements: the format's nominal value, shape-free.
    assert Format.parse("int8_g40000000").bits_per_element == pytest.approx(8 + 32 / 4e7)


def test_channel_axis_and_one_dim_tensors_clamp_too() -> None:
    x = _weights()
    assert torch.equal(
        quantize(Format.parse("int8_g1000_a0"), x), quantize(Format.parse("int8_g64_a0"), x)
    )
    v = x[0, :10]
    assert torch.equal(quantize(Format.parse("int8_g32"), v), quantize(Format.parse("int8_c"), v))


@pytest.mark.parametrize(
    ("text", "blocks"),
    [
        ("int8_g40000000", (64, 1, 256)),
        ("int8_g100", (64, 3, 100)),  # a fitting group still pads its last block
        ("int8_b100000x100000", (1, 1, 64 * 256)),
        ("int8_b16x100000", (4, 1, 16 * 256)),
    ],
)
def test_blocks_never_pad_past_the_tensor(text: str, blocks: tuple[int, ...]) -> None:
    from quarch.formats._blocks import to_blocks

    assert tuple(to_blocks(Format.parse(text).scaling, _weights()).shape) == blocks
