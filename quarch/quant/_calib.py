"""Calibration statistics (`LayerCalib`) at the input of linear layers, by forward hooks.

Two ways to collect them:

- `collect_calib`: one pass of the model as it is over the calibration windows.
- `calibrate_blockwise`: block-sequential, as in GPTQ (Frantar et al. 2023, "GPTQ: Accurate
  Post-Training Quantization for Generative Pre-trained Transformers", §4, "quantize ... layer by
  layer, ... the inputs of each block are the outputs of the already quantized previous blocks",
  https://arxiv.org/abs/2210.17323). The inputs of the first transformer block are captured once;
  then, block by block, the block's linear layers are observed on those inputs, the block is
  quantized (by a callback), and the quantized block is run again to give the next block its
  inputs. All linear layers of a block see the same (float-block) pass; the per-sublayer
  "true-sequential" refinement inside a block is not done.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from quarch.models import decoder_blocks
from quarch.quant._methods_api import LayerCalib

MAX_SAMPLES = 512  # input rows kept per layer for the searches of AWQ / SmoothQuant / LQER


class CalibAccumulator:
    """Streaming version of `LayerCalib.from_inputs`: sums, maxima and a seeded row sample."""

    def __init__(self, in_features: int, *, max_samples: int = MAX_SAMPLES, seed: int = 0) -> None:
        self.in_features = in_features
        self.max_samples = max_samples
        self.gen = torch.Generator().manual_seed(seed)  # CPU: same sample on any device
        self.n = 0
        # Allocated on the first input's device.
        self.xxt = self.abs_sum = self.abs_max = self.keys = self.rows = torch.empty(0)

    def _start(self, device: torch.device) -> None:
        d, f64 = self.in_features, torch.float64
        self.xxt = torch.zeros(d, d, dtype=f64, device=device)
        self.abs_sum = torch.zeros(d, dtype=f64, device=device)
        self.abs_max = torch.zeros(d, dtype=torch.float32, device=device)
        self.keys = torch.empty(0)
        self.rows = torch.empty(0, d, device=device)

    def add(self, x: torch.Tensor) -> None:
        x2 = x.detach().reshape(-1, self.in_features).to(torch.float32)  # [tokens, in]
        if not bool(torch.isfinite(x2).all()):
            raise ValueError("calibration input has NaN/Inf")
        if self.n == 0:
            self._start(x2.device)
        self.xxt += (x2.T @ x2).to(torch.float64)
        a = x2.abs()
        self.abs_sum += a.sum(0, dtype=torch.float64)
        self.abs_max = torch.maximum(self.abs_max, a.amax(0))
        self.n += x2.shape[0]
        # Keep the rows with the largest random keys: a uniform sample without replacement.
        keys = torch.cat([self.keys, torch.rand(x2.shape[0], generator=self.gen)])
        rows = torch.cat([self.rows, x2])
        if keys.numel() > self.max_samples:
            top = keys.topk(self.max_samples).indices.sort().values
            keys, rows = keys[top], rows[top.to(rows.device)]
        self.keys, self.rows = keys, rows

    def result(self) -> LayerCalib:
        if self.n == 0:
            raise ValueError("no calibration tokens reached this layer")
        return LayerCalib(
            hessian=(self.xxt / self.n).to(torch.float32),
            act_absmean=(self.abs_sum / self.n).to(torch.float32),
            act_absmax=self.abs_max.clone(),
            samples=self.rows.clone(),
            num_tokens=self.n,
        )


def as_windows(calib_windows: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Token windows as a list of [1, seqlen] int64 tensors."""
    if isinstance(calib_windows, torch.Tensor):
        t = calib_windows if calib_windows.dim() == 2 else calib_windows.reshape(1, -1)
        return [row.reshape(1, -1).long() for row in t]
    return [torch.as_tensor(w).reshape(1, -1).long() for w in calib_windows]


class _Observer:
    """Forward pre-hooks feeding accumulators. Layers that read the very same input tensor
    (q/k/v of attention, gate/up of a SwiGLU MLP) share one accumulator, so X Xᵀ is computed
    once per distinct input."""

    def __init__(self, modules: Mapping[str, nn.Module], seed: int) -> None:
        self.seed = seed
        self.names = sorted(modules)
        self.accs: dict[str, CalibAccumulator] = {}  # leader name -> accumulator
        self.leader: dict[str, str] = {}  # layer name -> leader name
        self.last: dict[str, torch.Tensor] = {}  # leader name -> the input it saw last
        self.handles = [
            m.register_forward_pre_hook(self._hook(name)) for name, m in sorted(modules.items())
        ]

    def _hook(self, name: str) -> Any:
        def hook(_mod: nn.Module, args: tuple[Any, ...]) -> None:
            self.see(name, args[0])

        return hook

    def see(self, name: str, x: torch.Tensor) -> None:
        lead = self.leader.get(name)
        if lead is None:  # first input of this layer: same tensor as a leader's last one?
            lead = next((n for n, t in self.last.items() if t is x), name)
            self.leader[name] = lead
            if lead != name:
                return
            self.accs[name] = CalibAccumulator(x.shape[-1], seed=self.seed + len(self.accs))
        if lead != name:
            if self.last[lead] is not x:
                raise RuntimeError(f"{name} stopped sharing its input with {lead}")
            return
        self.accs[name].add(x)
        self.last[name] = x

    def results(self) -> dict[str, LayerCalib]:
        """Each layer's statistics (its own tensors, also when shared)."""
        missing = [n for n in self.names if n not in self.leader]
        if missing:
            raise ValueError(f"no calibration tokens reached {missing[:3]}")
        return {n: self.accs[self.leader[n]].result() for n in self.names}

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.last.clear()


@torch.no_grad()
def collect_calib(
    model: nn.Module,
    windows: Iterable[torch.Tensor],
    names: Iterable[str],
    *,
    seed: int = 0,
) -> dict[str, LayerCalib]:
    """One forward pass of `model` over `windows`, observing the inputs of the named linears."""
    modules = dict(model.named_modules())
    obs = _Observer({n: modules[n] for n in names}, seed)
    try:
        for w in windows:
            model(input_ids=w.to(_device(model)), use_cache=False)
    finally:
        obs.remove()
    return obs.results()


class _Stop(Exception):
    pass


@torch.no_grad()
def _capture_block_inputs(
    model: nn.Module, block: nn.Module, windows: Sequence[torch.Tensor]
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    captured: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def hook(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        captured.append((args, dict(kwargs)))
        raise _Stop

    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for w in windows:
            with contextlib.suppress(_Stop):
                model(input_ids=w.to(_device(model)), use_cache=False)
    finally:
        handle.remove()
    if len(captured) != len(windows):
        raise RuntimeError("the first transformer block was not reached by every window")
    return captured


@torch.no_grad()
def calibrate_blockwise(
    model: nn.Module,
    windows: Sequence[torch.Tensor],
    needs_calib: set[str],
    quantize_layers: Callable[[list[str], Mapping[str, LayerCalib]], None],
    all_layers: Sequence[str],
    *,
    seed: int = 0,
) -> str:
    """Quantize `all_layers` (linear names) block by block; see the module docstring.

    `quantize_layers(names, calib)` replaces the named layers given their statistics. Layers
    outside the transformer blocks are observed afterwards in one pass of the (by then
    quantized) model. Returns the protocol used, for the report.
    """
    found = decoder_blocks(model)
    if found is None:
        quantize_layers(list(all_layers), collect_calib(model, windows, needs_calib, seed=seed))
        return "one pass of the float model (no transformer block list found)"
    prefix, blocks = found
    inputs = _capture_block_inputs(model, blocks[0], windows)
    done: set[str] = set()
    for i, block in enumerate(blocks):
        head = f"{prefix}.{i}."
        names = [n for n in all_layers if n.startswith(head)]
        targets = {n: block.get_submodule(n[len(head) :]) for n in names if n in needs_calib}
        calib: dict[str, LayerCalib] = {}
        if targets:
            obs = _Observer(targets, seed + 1000 * i)
            try:
                for args, kwargs in inputs:
                    block(*args, **kwargs)
            finally:
                obs.remove()
            calib = obs.results()
        quantize_layers(names, calib)
        done.update(names)
        if i + 1 < len(blocks):
            inputs = [_next_inputs(block(*args, **kwargs), args, kwargs) for args, kwargs in inputs]
    rest = [n for n in all_layers if n not in done]
    if rest:
        rest_calib = collect_calib(model, windows, [n for n in rest if n in needs_calib], seed=seed)
        quantize_layers(rest, rest_calib)
    return (
        "block-sequential (each block calibrated on the outputs of the quantized blocks before it)"
    )


def _next_inputs(
    out: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The next block's call: this block's output hidden states in place of its input."""
    hidden = out[0] if isinstance(out, tuple) else out
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
