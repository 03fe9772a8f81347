"""Where a model runs and in which dtype: `--device` and `--dtype` of the torch verbs.

`quarch quantize`, `eval`, `sensitivity` and `explore` load the model on one device: `cpu`,
`cuda` (or `cuda:N`) or `mps`. The weight dtype defaults by device: float32 on the CPU (where
bfloat16 matrix products are emulated and slower, and quarch's published figures were measured),
bfloat16 on GPUs (their native 16-bit matrix format, half the memory, what serving engines run).
A device this machine does not have is refused before anything loads, with the reason torch
gives. torch is imported only when a device is resolved, so `--help` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICES = ("cpu", "cuda", "mps")
"""Device kinds a verb accepts (`cuda:N` picks one GPU)."""

GPU_DTYPE = "bfloat16"
CPU_DTYPE = "float32"


def resolve_device(name: str) -> torch.device:
    """The torch device `name` (`cpu`, `cuda`, `cuda:1`, `mps`), checked to exist here.

    Raises:
        ValueError: an unknown name, or a device this machine (or this torch build) lacks.
    """
    import torch

    kind, _, index = str(name).partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise ValueError(f"unknown device {name!r}; valid: cpu, cuda, cuda:N, mps")
    if kind == "cuda":
        if not torch.cuda.is_available():
            build = (
                "without CUDA" if torch.version.cuda is None else f"with CUDA {torch.version.cuda}"
            )
            raise ValueError(
                f"device {name!r} is not available: torch {torch.__version__} (built {build}) "
                "sees no CUDA GPU; use --device cpu"
            )
        count = torch.cuda.device_count()
        if index and int(index) >= count:
            raise ValueError(f"device {name!r} is not available: {count} CUDA GPU(s) visible")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device {name!r} is not available: no Apple-silicon GPU (MPS) here; use --device cpu"
        )
    return torch.device(name)


def default_dtype(device: torch.device) -> str:
    """bfloat16 on GPUs, float32 on the CPU (see the module doc)."""
    return CPU_DTYPE if device.type == "cpu" else GPU_DTYPE


def device_and_dtype(device: str, dtype: str | None) -> tuple[torch.device, torch.dtype]:
    """The checked device and the torch dtype (`dtype` by name, or the device's default).

    Raises:
        ValueError: an unknown or missing device, or an unknown dtype name.
    """
    from quarch.eval import parse_dtype

    dev = resolve_device(device)
    return dev, parse_dtype(default_dtype(dev) if dtype is None else dtype)
