"""`--device` / `--dtype`: devices are checked before anything loads, dtypes default by device."""

from __future__ import annotations

import pytest
import torch

from quarch._device import default_dtype, device_and_dtype, resolve_device


def test_cpu_defaults_to_float32() -> None:
    assert device_and_dtype("cpu", None) == (torch.device("cpu"), torch.float32)
    assert device_and_dtype("cpu", "bfloat16") == (torch.device("cpu"), torch.bfloat16)


def test_gpus_default_to_bfloat16() -> None:
    assert default_dtype(torch.device("cuda", 0)) == "bfloat16"
    assert default_dtype(torch.device("mps")) == "bfloat16"


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "cpu:1", "", "gpu"])
def test_unknown_devices_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_missing_cuda_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match=r"device 'cuda' is not available.*use --device cpu"):
        resolve_device("cuda")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_missing_mps_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match=r"device 'mps' is not available"):
        resolve_device("mps")


def test_unknown_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        device_and_dtype("cpu", "int8")
