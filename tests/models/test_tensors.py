"""Raw weight tensors of a .safetensors file through the API (`quarch formats --weights`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from quarch.models import count_weight_tensors, iter_weight_tensors, open_weight_file


@pytest.fixture
def weights(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "layer.0.weight": torch.randn(8, 16, generator=gen),
        "layer.0.bias": torch.randn(8, generator=gen),
        "layer.1.weight": torch.randn(4, 8, generator=gen).to(torch.bfloat16),
        "position_ids": torch.arange(12, dtype=torch.int64).reshape(3, 4),  # not a weight
        "conv.weight": torch.randn(2, 3, 4, generator=gen).half(),
    }
    path = tmp_path / "w.safetensors"
    save_file(tensors, str(path))
    return path, tensors


def test_safetensors_tensors_come_out_as_float32(
    weights: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    path, tensors = weights
    wf = open_weight_file(path)
    assert wf.kind == "safetensors" and wf.storage == {"F32": 2, "BF16": 1, "I64": 1, "F16": 1}
    got = dict(iter_weight_tensors(wf))
    assert sorted(got) == ["conv.weight", "layer.0.weight", "layer.1.weight"]
    for name, tensor in got.items():
        assert tensor.dtype == torch.float32
        assert torch.equal(tensor, tensors[name].to(torch.float32))


def test_count_matches_what_iteration_yields(weights: tuple[Path, dict[str, torch.Tensor]]) -> None:
    wf = open_weight_file(weights[0])
    for min_dims in (1, 2, 3):
        names = [n for n, _ in iter_weight_tensors(wf, min_dims=min_dims)]
        assert count_weight_tensors(wf, min_dims=min_dims) == len(names)
    assert [n for n, _ in iter_weight_tensors(wf, min_dims=3)] == ["conv.weight"]
