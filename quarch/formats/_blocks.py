"""Reshaping a tensor into scale blocks and back.

`to_blocks` gives a float32 view of shape `grid + (block,)`: one row per scale block. Groups and
channels run along `scaling.axis`; 2-D blocks over the last two dims. A dimension that the block
does not divide is zero-padded; padding never changes a block's maximum, and rules that average
(`mean`) divide by the real element count that `block_counts` returns.

A block never pads past the tensor it scales: a group (or a 2-D block side) longer than its
dimension is cut to that dimension (`block_extent`), so `int8_g40000000` scales each row of a
64x256 tensor as one block instead of padding every row to 40 million elements. The format's
nominal `bits_per_element` is unchanged; `storage_bits(shape)` counts the blocks really stored.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from quarch.formats._spec import Format, Scaling, ScalingKind


def _check_axis(scaling: Scaling, ndim: int) -> int:
    if ndim == 0:
        return 0
    if not -ndim <= scaling.axis < ndim:
        raise ValueError(f"axis {scaling.axis} is out of range for a tensor with {ndim} dims")
    return scaling.axis % ndim


def block_extent(block: int, dim: int) -> int:
    """The length a block really spans along a dimension of size `dim`: `block`, cut to `dim`
    (at least 1, so an empty dimension still has a well-formed, empty grid)."""
    return max(1, min(block, dim))


def _group(scaling: Scaling, n: int) -> int:
    """Elements per block along the scaled axis of length n: the group size, or the whole axis
    for channel scaling."""
    return block_extent(scaling.block[0] if scaling.kind is ScalingKind.GROUP else n, n)


def _block2d(scaling: Scaling, rows: int, cols: int) -> tuple[int, int]:
    r, c = scaling.block
    return block_extent(r, rows), block_extent(c, cols)


def grid_shape(scaling: Scaling, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of the scale tensor for a tensor of `shape`."""
    match scaling.kind:
        case ScalingKind.NONE:
            return ()
        case ScalingKind.TENSOR:
            return (1,)
        case ScalingKind.CHANNEL | ScalingKind.GROUP:
            if not shape:
                return (1,)
            ax = _check_axis(scaling, len(shape))
            k = _group(scaling, shape[ax])
            rest = tuple(s for i, s in enumerate(shape) if i != ax)
            return (*rest, math.ceil(shape[ax] / k))
        case ScalingKind.BLOCK2D:
            if len(shape) < 2:
                raise ValueError(f"2-D block scaling needs a tensor of ≥ 2 dims, got {shape}")
            r, c = _block2d(scaling, shape[-2], shape[-1])
            return (*shape[:-2], math.ceil(shape[-2] / r), math.ceil(shape[-1] / c))


def num_scale_blocks(fmt: Format, shape: tuple[int, ...]) -> int:
    return (
        math.prod(grid_shape(fmt.scaling, shape)) if fmt.scaling.kind is not ScalingKind.NONE else 0
    )


def to_blocks(scaling: Scaling, x: torch.Tensor) -> torch.Tensor:
    """float32 tensor of shape grid + (block,)."""
    match scaling.kind:
        case ScalingKind.NONE:
            raise AssertionError("unscaled formats have no blocks")
        case ScalingKind.TENSOR:
            return x.reshape(1, -1)
        case ScalingKind.CHANNEL | ScalingKind.GROUP:
            if x.dim() == 0:
                return x.reshape(1, 1)
            ax = _check_axis(scaling, x.dim())
            xt = x.movedim(ax, -1)
            n = xt.shape[-1]
            k = _group(scaling, n)
            pad = (-n) % k
            if pad:
                xt = F.pad(xt, (0, pad))
            return xt.reshape(*xt.shape[:-1], xt.shape[-1] // k, k)
        case ScalingKind.BLOCK2D:
            rows, cols = x.shape[-2], x.shape[-1]
            r, c = _block2d(scaling, rows, cols)
            pr, pc = (-rows) % r, (-cols) % c
            if pr or pc:
                x = F.pad(x, (0, pc, 0, pr))
            lead = x.shape[:-2]
            xb = x.reshape(*lead, x.shape[-2] // r, r, x.shape[-1] // c, c)
            return xb.transpose(-3, -2).reshape(*lead, x.shape[-2] // r, x.shape[-1] // c, r * c)


def from_blocks(scaling: Scaling, yb: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of `to_blocks`: drop the padding and restore `shape`."""
    match scaling.kind:
        case ScalingKind.NONE:
            raise AssertionError("unscaled formats have no blocks")
        case ScalingKind.TENSOR:
            return yb.reshape(shape)
        case ScalingKind.CHANNEL | ScalingKind.GROUP:
            if len(shape) == 0:
                return yb.reshape(shape)
            ax = _check_axis(scaling, len(shape))
            flat = yb.reshape(*yb.shape[:-2], -1)[..., : shape[ax]]
            return flat.movedim(-1, ax).reshape(shape)
        case ScalingKind.BLOCK2D:
            r, c = _block2d(scaling, shape[-2], shape[-1])
            lead = yb.shape[:-3]
            gr, gc = yb.shape[-3], yb.shape[-2]
            y = yb.reshape(*lead, gr, gc, r, c).transpose(-3, -2).reshape(*lead, gr * r, gc * c)
            return y[..., : shape[-2], : shape[-1]].reshape(shape)


def block_counts(scaling: Scaling, shape: tuple[int, ...]) -> torch.Tensor:
    """Number of real (unpadded) elements in each block, shaped grid + (1,)."""
    ones = torch.ones(shape, dtype=torch.float32)
    return to_blocks(scaling, ones).sum(-1, keepdim=True)
