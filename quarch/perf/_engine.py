"""The serving engine as an input of the performance model: what an engine adds to the kernels.

The op graph and the roofline price the kernels a forward pass needs. A real engine runs them
with its own costs on top, and two engines on the same GPU, model and formats can differ by
1.3-1.7x. An `Engine` names those costs, each a physical or software effect with its source:

- **Per-step host cost** (`step_overhead_s`): scheduling, input preparation, sampling and output
  processing that the GPU waits for once per forward pass (a decode step, or the prefill). An
  engine that overlaps them with the GPU (TensorRT-LLM's and SGLang's overlap schedulers) pays
  (almost) none.
- **Graph capture** (`prefill_cuda_graphs`, `decode_cuda_graphs`, `cuda_graph_max_batch`): a
  pass captured in a CUDA graph pays the device's graph-replay cost per kernel
  (`Efficiency.launch_overhead_s`); an eager pass pays `eager_launch_s` per kernel. Decode
  batches above `cuda_graph_max_batch` run eagerly (engines capture graphs for a list of batch
  sizes up to a maximum).
- **Attention kernel** (`attention_kernel`, `attention_fraction`,
  `attention_bandwidth_fraction`): the kernel family, the fraction of the matrix peak it
  attains (None: the device's `attention_fraction`), and the fraction of the device's attained
  streaming bandwidth its KV reads reach (1.0: as fast as a streaming copy).
- **16-bit LM head and embedding** (`high_precision_head`): quantized checkpoints keep the
  embedding and the LM head in 16-bit; the engine then runs them in 16-bit whatever the scenario's
  weight format (a `weight_overrides` entry for those roles still wins).
- **16-bit residual communication** (`residual_comm_16bit`): tensor-parallel all-reduces and
  pipeline sends carry the 16-bit residual stream, not the activation format, so with narrow
  activations they move 16 bits per element (MoE all-to-alls keep their own width).
- **Activation quantization** (`act_quant_kernel`): with activations narrower than 16 bits,
  whether each quantized linear layer's input is quantized by a kernel of its own (read the 16-bit
  input, write the narrow one, one more launch) rather than fused into the kernel before it.

`ideal` is quarch's behaviour without an engine: no host cost, every pass graph-captured, the
device's fused-attention efficiency, the scenario's formats everywhere, quantization fused. It is
the default, so predictions without `engine=` are unchanged. Profiles live in
`quarch/perf/engines/*.yaml`, every number with its source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from quarch.perf._deploy import (
    FusedGroup,
    KernelSupport,
    fused_groups_from_data,
    kernels_from_data,
)

ENGINE_DIR = Path(__file__).with_name("engines")
"""Where the engine profiles live."""

ATTENTION_KERNELS = ("fused", "paged", "flashinfer", "xqa", "triton")
"""Attention kernel families an engine may name (informational; the numbers carry the effect)."""

HIGH_PRECISION_FORMAT = "bf16"
"""Format of the LM head and embedding in engines that keep them in 16-bit."""


@dataclass(frozen=True, kw_only=True)
class Engine:
    """A serving engine's costs on top of the kernels (see the module doc).

    Fields:
        name: profile name (`vllm`).
        display_name: human name with the version the numbers describe.
        step_overhead_s: host time the GPU waits for once per forward pass.
        prefill_cuda_graphs, decode_cuda_graphs: whether that pass is graph-captured.
        cuda_graph_max_batch: largest captured decode batch (sequences per replica); None: any.
        eager_launch_s: per-kernel cost of an eager (not captured) pass.
        attention_kernel: kernel family (one of `ATTENTION_KERNELS`).
        attention_fraction: fraction of the matrix peak attention attains; None: the device's.
        attention_bandwidth_fraction: fraction of the device's attained bandwidth KV reads reach.
        high_precision_head: LM head and embedding run in 16-bit.
        act_quant_kernel: narrow activations are quantized by a separate kernel per linear input.
        residual_comm_16bit: all-reduces and pipeline sends carry 16-bit activations.
        fused_groups: linear layers the engine packs into one (one scheme each; `_deploy.py`).
        kernels: (weight, activation) format classes with a kernel, per architecture
            (`_deploy.py`); empty: the profile states none, and nothing is excluded.
        sources: field name -> where its number comes from.
    """

    name: str
    display_name: str = ""
    step_overhead_s: float = 0.0
    prefill_cuda_graphs: bool = True
    decode_cuda_graphs: bool = True
    cuda_graph_max_batch: int | None = None
    eager_launch_s: float = 0.0
    attention_kernel: str = "fused"
    attention_fraction: float | None = None
    attention_bandwidth_fraction: float = 1.0
    high_precision_head: bool = False
    act_quant_kernel: bool = False
    residual_comm_16bit: bool = False
    fused_groups: tuple[FusedGroup, ...] = ()
    kernels: tuple[KernelSupport, ...] = ()
    sources: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _check_engine(self)

    @property
    def is_ideal(self) -> bool:
        """Whether the engine adds nothing to the kernels (predictions as without an engine)."""
        return (
            self.step_overhead_s == 0.0
            and self.prefill_cuda_graphs
            and self.decode_cuda_graphs
            and self.cuda_graph_max_batch is None
            and self.attention_fraction is None
            and self.attention_bandwidth_fraction == 1.0
            and not self.high_precision_head
            and not self.act_quant_kernel
            and not self.residual_comm_16bit
        )

    def decode_graphed(self, seqs_per_replica: int) -> bool:
        """Whether a decode step of `seqs_per_replica` sequences replays a captured graph."""
        if not self.decode_cuda_graphs:
            return False
        return self.cuda_graph_max_batch is None or seqs_per_replica <= self.cuda_graph_max_batch


def _check_engine(e: Engine) -> None:
    if not isinstance(e.name, str) or not e.name:
        raise ValueError(f"Engine.name must be a non-empty string, got {e.name!r}")
    for name in ("step_overhead_s", "eager_launch_s"):
        value = getattr(e, name)
        if not _real(value) or value < 0:
            raise ValueError(f"engine {e.name!r}: {name} must be a number >= 0, got {value!r}")
    for name in ("prefill_cuda_graphs", "decode_cuda_graphs", "high_precision_head"):
        if not isinstance(getattr(e, name), bool):
            raise TypeError(f"engine {e.name!r}: {name} must be a bool, got {getattr(e, name)!r}")
    for name in ("act_quant_kernel", "residual_comm_16bit"):
        if not isinstance(getattr(e, name), bool):
            raise TypeError(f"engine {e.name!r}: {name} must be a bool")
    cap = e.cuda_graph_max_batch
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise ValueError(
            f"engine {e.name!r}: cuda_graph_max_batch must be a positive integer or null, "
            f"got {cap!r}"
        )
    if e.attention_kernel not in ATTENTION_KERNELS:
        raise ValueError(
            f"engine {e.name!r}: attention_kernel must be one of {ATTENTION_KERNELS}, "
            f"got {e.attention_kernel!r}"
        )
    frac = e.attention_fraction
    if frac is not None and (not _real(frac) or not 0 < frac <= 1):
        raise ValueError(
            f"engine {e.name!r}: attention_fraction must be in (0, 1] or null, got {frac!r}"
        )
    bw = e.attention_bandwidth_fraction
    if not _real(bw) or not 0 < bw <= 1:
        raise ValueError(
            f"engine {e.name!r}: attention_bandwidth_fraction must be in (0, 1], got {bw!r}"
        )


def _real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


IDEAL = Engine(
    name="ideal",
    display_name="ideal fused engine (quarch's kernels, nothing added)",
    sources=(
        ("*", "no engine costs: the kernels as the roofline and efficiency model price them"),
    ),
)
"""The default engine: predictions identical to those without an engine."""


_FIELDS = {f.name for f in fields(Engine)} - {"name", "sources"}
_DEPLOY_FIELDS = {"fused_groups": fused_groups_from_data, "kernels": kernels_from_data}
"""Deployment data (rows that carry their own sources; see `_deploy.py`)."""
_NEEDS_SOURCE = {
    "step_overhead_s",
    "eager_launch_s",
    "cuda_graph_max_batch",
    "attention_fraction",
    "attention_bandwidth_fraction",
    "prefill_cuda_graphs",
    "decode_cuda_graphs",
    "high_precision_head",
    "act_quant_kernel",
    "residual_comm_16bit",
}


def engine_from_dict(data: object, origin: str = "<dict>") -> Engine:
    """An `Engine` from a parsed YAML document (see `quarch/perf/engines/*.yaml`).

    Every number and flag is written as `{value: ..., source: "..."}` (or `estimate: "..."`, the
    derivation of a number no source states directly); `name` and `display_name` are plain.

    Raises:
        ValueError: an unknown or missing field, a value without a source, or a bad value.
    """
    if not isinstance(data, dict):
        raise ValueError(
            f"{origin}: an engine profile must be a mapping, got {type(data).__name__}"
        )
    if "name" not in data:
        raise ValueError(f"{origin}: engine profile has no 'name'")
    unknown = set(data) - _FIELDS - {"name"}
    if unknown:
        raise ValueError(
            f"{origin}: unknown engine fields {sorted(unknown)}; valid: {sorted(_FIELDS)}"
        )
    kwargs: dict[str, Any] = {"name": data["name"]}
    sources: list[tuple[str, str]] = []
    for key, raw in data.items():
        if key in ("name", "display_name"):
            kwargs[key] = raw
            continue
        if key in ("attention_kernel",) and isinstance(raw, str):
            kwargs[key] = raw
            continue
        if key in _DEPLOY_FIELDS:
            kwargs[key] = _DEPLOY_FIELDS[key](raw, origin)
            continue
        if not isinstance(raw, dict) or "value" not in raw:
            raise ValueError(f"{origin}: {key} must be {{value: ..., source: ...}}, got {raw!r}")
        cited = raw.get("source") or raw.get("estimate")
        if key in _NEEDS_SOURCE and (not isinstance(cited, str) or not cited.strip()):
            raise ValueError(f"{origin}: {key} has no source (give source: or estimate:)")
        kwargs[key] = raw["value"]
        if isinstance(cited, str):
            sources.append((key, cited))
    missing = _NEEDS_SOURCE - set(data)
    if missing:
        raise ValueError(f"{origin}: engine profile lacks {sorted(missing)} (each with a source)")
    kwargs["sources"] = tuple(sources)
    try:
        return Engine(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{origin}: {err}") from None


def list_engines() -> tuple[str, ...]:
    """Names of the shipped engine profiles (`ideal` included)."""
    names = {p.stem for p in ENGINE_DIR.glob("*.yaml")}
    return tuple(sorted(names | {IDEAL.name}))


@lru_cache(maxsize=32)
def load_engine(name: str) -> Engine:
    """The shipped profile `name` (`ideal`, `vllm`, `tensorrt-llm`, `sglang`, ...) or a YAML path.

    Raises:
        ValueError: an unknown name, or a profile that does not validate.
    """
    if not isinstance(name, str):
        raise TypeError(f"engine must be an Engine or a profile name, got {type(name).__name__}")
    if name == IDEAL.name:
        return IDEAL
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = ENGINE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown engine {name!r}; valid: {', '.join(list_engines())}")
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    return engine_from_dict(data, str(path))


def resolve_engine(engine: Engine | str | None) -> Engine:
    """`engine` as an `Engine` (None: `IDEAL`)."""
    if engine is None:
        return IDEAL
    if isinstance(engine, Engine):
        return engine
    return load_engine(engine)
