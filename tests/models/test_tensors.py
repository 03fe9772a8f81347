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


def test_gguf_tensors_are_writable_copies(tiny_gguf: tuple[Path, dict]) -> None:
    import warnings

    wf = open_weight_file(tiny_gguf[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on a tensor over a read-only array
        tensors = dict(iter_weight_tensors(wf, min_dims=1))
    assert len(tensors) == count_weight_tensors(wf, min_dims=1) == 21
    for tensor in tensors.values():
        tensor.add_(0.0)  # would write into the file's read-only mapping


@pytest.mark.parametrize(
    ("offsets", "why"),
    [("[0, 1e400]", "bad data_offsets"), ("[8, 4]", "bad data_offsets"), ("[-1, 4]", "bad data")],
)
def test_safetensors_offsets_must_be_ordered_byte_counts(
    tmp_path: Path, offsets: str, why: str
) -> None:
    header = f'{{"w": {{"dtype": "F32", "shape": [1], "data_offsets": {offsets}}}}}'.encode()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(8))
    with pytest.raises(ValueError, match=why):
        open_weight_file(path)


def test_library_errors_become_value_errors(tmp_path: Path) -> None:
    # The quick header check passes (offsets in range) but safetensors refuses the file: its
    # data is not fully covered by the tensors.
    header = b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    path = tmp_path / "gap.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(8))
    wf = open_weight_file(path)
    with pytest.raises(ValueError, match=r"gap\.safetensors: unreadable safetensors file"):
        list(iter_weight_tensors(wf))
