"""Raw weight tensors from a .gguf or .safetensors file, without building a model.

GGUF tensors stored in a quantized type (Q4_1, Q8_0, …) are dequantized to float32 by the `gguf`
package's reference dequantizer, so what comes out is exactly what llama.cpp would compute with.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quarch.models._shipped import check_gguf, check_safetensors, shipped_gguf_path


@dataclass(frozen=True, kw_only=True)
class WeightFile:
    """A weight file and what it says about how its tensors are stored."""

    path: Path
    kind: str  # "gguf" | "safetensors"
    storage: dict[str, int]  # tensor count per stored type, e.g. {"Q4_1": 210, "F32": 61}

    @property
    def storage_note(self) -> str:
        parts = ", ".join(f"{n} × {t}" for t, n in self.storage.items())
        return f"{self.path.name}: {self.kind} file; tensors stored as {parts}"


def open_weight_file(path: str | Path | None = None) -> WeightFile:
    """Check a .gguf / .safetensors file (default: the shipped SmolLM2 GGUF) and describe it.

    Raises:
        ValueError: the file is missing, of another kind, truncated or corrupt.
    """
    p = shipped_gguf_path() if path is None else Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such file (expected a .gguf or .safetensors weight file)")
    match p.suffix.lower():
        case ".gguf":
            return WeightFile(path=p, kind="gguf", storage=check_gguf(p).tensor_types)
        case ".safetensors":
            return WeightFile(path=p, kind="safetensors", storage=check_safetensors(p))
        case _:
            raise ValueError(
                f"{p}: not a weight file quarch reads (expected .gguf or .safetensors, got "
                f"{p.suffix or 'no extension'!r})"
            )


def iter_weight_tensors(wf: WeightFile, *, min_dims: int = 2) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, float32 tensor) for every tensor with at least `min_dims` dims."""
    if wf.kind == "gguf":
        yield from _gguf_tensors(wf.path, min_dims)
    else:
        yield from _safetensors_tensors(wf.path, min_dims)


def count_weight_tensors(wf: WeightFile, *, min_dims: int = 2) -> int:
    if wf.kind == "gguf":
        from gguf import GGUFReader

        return sum(1 for t in GGUFReader(wf.path).tensors if len(t.shape) >= min_dims)
    with _safe_open(wf.path) as f:
        return len(_safetensors_names(f, min_dims))


def _gguf_tensors(path: Path, min_dims: int) -> Iterator[tuple[str, torch.Tensor]]:
    from gguf import GGUFReader
    from gguf.quants import dequantize

    for t in GGUFReader(path).tensors:
        if len(t.shape) < min_dims:
            continue
        values = np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        if not values.flags.writeable:  # an F32 tensor is a view of the read-only file mapping
            values = values.copy()
        # GGUF lists dims fastest-first; torch wants them slowest-first.
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        yield t.name, torch.from_numpy(values).reshape(shape)


@contextmanager
def _safe_open(path: Path) -> Iterator[Any]:
    """`safetensors.safe_open`, its errors (a header the quick check passed but the library
    refuses, a tensor it cannot read) turned into a one-line ValueError naming the file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            yield f
    except SafetensorError as error:
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise ValueError(f"{path}: unreadable safetensors file ({reason})") from None


def _safetensors_tensors(path: Path, min_dims: int) -> Iterator[tuple[str, torch.Tensor]]:
    with _safe_open(path) as f:
        for name in _safetensors_names(f, min_dims):
            yield name, f.get_tensor(name).to(torch.float32)


# safetensors dtype codes of floating-point tensors (the format's spec, safetensors README).
_FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})


def _safetensors_names(f: Any, min_dims: int) -> list[str]:
    """Names of the floating-point tensors with at least `min_dims` dims in an open safetensors
    file, in file order. (A `safe_open` handle is not iterable: its names come from `keys()`.)"""
    names = []
    for name in f.keys():  # noqa: SIM118 - safe_open has keys() but no __iter__
        sl = f.get_slice(name)
        if len(sl.get_shape()) >= min_dims and sl.get_dtype() in _FLOAT_DTYPES:
            names.append(name)
    return names
