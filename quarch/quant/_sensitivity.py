"""Per-layer sensitivity: quantize one layer group at a time, measure what it costs.

For each group (by default every attention and every MLP block: `model.layers.{i}.self_attn`,
`model.layers.{i}.mlp`) the group's tensors of one role get one format while the rest of the
model stays float, and we record on a fixed set of token windows:

- `delta_nll`: change of the mean next-token negative log-likelihood (nats/token) against the
  float model; `delta_ppl = ppl - ppl_float` with `ppl = exp(nll)`.
- `kl`: mean per-token KL(p_float || p_quant) over the predicted positions (nats).

The search uses the table as a fast accuracy proxy: the predicted cost of a mixed config is the
sum of its groups' `delta_nll` (additive in log-perplexity) and of their `kl`.
`measure_additivity` checks how well that sum predicts random multi-group configs, measured.

The engine is `WindowEval` (the float model's distributions kept once, scored by
`quarch.eval.NextTokenReference`, with a float-prefix cache) and `config_cost` (the cost of any
`QuantConfig`, run from the first block it touches); `quarch.search` builds its proxy table with
the same two.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from quarch._checks import check_positive_int
from quarch.eval import NextTokenReference
from quarch.models import decoder_blocks
from quarch.quant._apply import quantized
from quarch.quant._cache import WeightCache
from quarch.quant._calib import as_windows, collect_calib
from quarch.quant._config import QuantConfig, Role, Rule
from quarch.quant._kv import attention_modules
from quarch.quant._methods_api import LayerCalib, get_method


@dataclass(frozen=True, kw_only=True)
class SensitivityEntry:
    group: str  # a rule pattern: the module whose linears (or K/V) are quantized
    nll: float  # mean NLL per predicted token with only this group quantized (nats)
    delta_nll: float  # nll - float nll
    delta_ppl: float  # exp(nll) - exp(float nll)
    kl: float  # mean per-token KL(float || quantized), nats
    num_weights: int  # weights in the group (0 for K/V roles)
    time_s: float


@dataclass(frozen=True, kw_only=True)
class SensitivityTable:
    """Single-group costs of one (role, format, method) on one model and window set."""

    model: str
    role: str
    format: str
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)
    base_nll: float
    base_ppl: float
    num_windows: int
    seqlen: int
    num_tokens: int  # predicted tokens per evaluation
    seed: int
    text_sha256: str | None = None
    entries: tuple[SensitivityEntry, ...] = ()

    def entry(self, group: str) -> SensitivityEntry:
        for e in self.entries:
            if e.group == group:
                return e
        raise ValueError(
            f"no group {group!r} in the table; groups: {[e.group for e in self.entries]}"
        )

    def predict(self, groups: Sequence[str]) -> tuple[float, float]:
        """(predicted delta_nll, predicted kl) of quantizing all `groups` together: the sums."""
        es = [self.entry(g) for g in groups]
        return sum(e.delta_nll for e in es), sum(e.kl for e in es)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["params"] = dict(self.params)
        d["entries"] = [dict(e.__dict__) for e in self.entries]
        return d

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> SensitivityTable:
        d = dict(data)
        d["entries"] = tuple(SensitivityEntry(**e) for e in d.get("entries", ()))
        return SensitivityTable(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @staticmethod
    def from_json(text: str) -> SensitivityTable:
        return SensitivityTable.from_dict(json.loads(text))


class WindowEval:
    """NLL and KL against the float model on fixed token windows, with a float-prefix cache.

    The float model's next-token distributions are kept once (`quarch.eval.NextTokenReference`;
    memory: 2 × tokens × vocab × 4 bytes, 1024 tokens of a 49k vocabulary: 400 MB), so scoring
    a quantized model costs one forward pass, scored as `quarch.eval` scores perplexity.

    **Prefix cache.** When nothing before decoder block `start` is quantized, the blocks before
    it compute exactly what the float model computes, so the float hidden state entering every
    block is kept (captured during the reference pass) and `evaluate(start)` runs only the blocks
    from `start` on, fed that hidden state as `inputs_embeds` (half the work on average for a
    single-group cost). This is checked once: running every block from block 0's kept input must
    give the full model's logits (to 1e-5), else every evaluation runs the whole model
    (`prefix_exact` says which).

    windows: token windows `[n, seqlen]` (or a list of `[1, seqlen]`); `batch_size` of them run
    per forward pass (windows of one batch must have the same length).
    """

    def __init__(
        self,
        model: nn.Module,
        windows: torch.Tensor | Sequence[torch.Tensor],
        *,
        batch_size: int = 1,
        prefix_cache: bool = True,
    ) -> None:
        check_positive_int("batch_size", batch_size)
        self.model = model
        self.windows = as_windows(windows)
        if not self.windows:
            raise ValueError("no evaluation windows")
        self.batches = [
            _stack(self.windows[i : i + batch_size])
            for i in range(0, len(self.windows), batch_size)
        ]
        self.blocks = decoder_blocks(model) if prefix_cache else None
        self.references: list[NextTokenReference] = []
        self.block_inputs: list[list[torch.Tensor]] = []  # per batch, per block [b, seq, hidden]
        self.prefix_exact = self.blocks is not None
        for batch in self.batches:
            logits, inputs = self._reference_pass(batch)
            self.references.append(NextTokenReference(logits, batch))
            self.block_inputs.append(inputs)
            self.prefix_exact = self.prefix_exact and bool(inputs) and self._exact(inputs, logits)
        if not self.prefix_exact:
            self.block_inputs = [[] for _ in self.batches]  # not used: free the memory
        self.base_nll, _ = self.evaluate()

    @property
    def num_tokens(self) -> int:
        return sum(r.num_tokens for r in self.references)

    @torch.inference_mode()
    def evaluate(self, start: int = 0) -> tuple[float, float]:
        """(mean NLL per predicted token, mean KL(float || current model) per token), nats, of
        the model as it is now, running blocks `start..` only (see the class doc). The caller
        promises nothing before block `start` differs from the float model.

        KL is averaged over the predicted positions (each window's last position predicts
        nothing that is scored, so it is left out, as in the NLL).

        Raises:
            ValueError: NaN/Inf logits.
        """
        from quarch.eval import window_logits

        nll_sum, kl_sum = 0.0, 0.0
        for batch, ref, inputs in zip(
            self.batches, self.references, self.block_inputs, strict=True
        ):
            if start > 0 and self.prefix_exact:
                logits = self._logits_from(start, inputs[start])
            else:
                logits = window_logits(self.model, batch)  # [b, seq, vocab]
            nll, kl = ref.scores(logits)
            nll_sum += nll
            kl_sum += kl
        n = self.num_tokens
        return nll_sum / n, kl_sum / n

    def first_block(self, names: Iterable[str]) -> int:
        """The first decoder block holding any of the named modules; 0 when one lies outside the
        blocks (or there are no blocks, or no names), so evaluating from it is always exact."""
        if self.blocks is None:
            return 0
        head = self.blocks[0] + "."
        first: int | None = None
        for name in names:
            if not name.startswith(head):
                return 0
            index = int(name[len(head) :].split(".", 1)[0])
            first = index if first is None else min(first, index)
        return 0 if first is None else min(first, len(self.blocks[1]) - 1)

    @torch.inference_mode()
    def _reference_pass(self, batch: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The float logits `[b, seq, vocab]` and the hidden state entering each block."""
        from quarch.eval import window_logits

        found: list[torch.Tensor] = []
        if self.blocks is None:
            return window_logits(self.model, batch), found

        def keep(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            found.append((args[0] if args else kwargs["hidden_states"]).clone())

        hooks = [b.register_forward_pre_hook(keep, with_kwargs=True) for b in self.blocks[1]]
        try:
            logits = window_logits(self.model, batch)
        finally:
            for h in hooks:
                h.remove()
        if len(found) != len(self.blocks[1]):
            self.blocks = None  # the blocks were not each run once: no prefix cache
            found = []
        return logits, found

    @torch.inference_mode()
    def _exact(self, inputs: list[torch.Tensor], logits: torch.Tensor) -> bool:
        """Whether running every block from block 0's kept input gives the model's logits."""
        return torch.allclose(self._logits_from(0, inputs[0]), logits, rtol=1e-5, atol=1e-5)

    def _logits_from(self, start: int, hidden: torch.Tensor) -> torch.Tensor:
        """float32 logits of the blocks from `start` on, given the hidden state entering it."""
        assert self.blocks is not None
        prefix, blocks = self.blocks
        parent_name, _, attr = prefix.rpartition(".")
        parent = self.model.get_submodule(parent_name) if parent_name else self.model
        setattr(parent, attr, nn.ModuleList(list(blocks)[start:]))
        try:
            return self.model(inputs_embeds=hidden, use_cache=False).logits.float()
        finally:
            setattr(parent, attr, blocks)


def _stack(windows: Sequence[torch.Tensor]) -> torch.Tensor:
    lengths = {w.shape[1] for w in windows}
    if len(lengths) != 1:
        raise ValueError(f"windows of one batch must have one length, got {sorted(lengths)}")
    return torch.cat(list(windows))


def config_cost(
    ev: WindowEval,
    config: QuantConfig,
    *,
    calib: Mapping[str, LayerCalib] | None = None,
    weight_cache: WeightCache | None = None,
) -> tuple[float, float]:
    """(mean NLL, mean KL from the float model) of `ev.model` quantized as `config` says, run
    from the first decoder block the config touches (see `WindowEval`); the model is float again
    afterwards.

    calib: statistics for calibrated weight methods (e.g. from one float pass, `collect_calib`).
    weight_cache: round-to-nearest weights reused across calls (see `WeightCache`).
    """
    with quantized(ev.model, config, calib=calib, weight_cache=weight_cache) as report:
        touched = [
            r.name
            for r in report.layers
            if r.weight_format is not None or r.input_format is not None or r.kind == "attention"
        ]
        return ev.evaluate(start=ev.first_block(touched))


def layer_groups(model: nn.Module, role: Role | str = Role.WEIGHT) -> list[str]:
    """Default groups: for weights/inputs, each child of each transformer block holding linear
    layers (`...layers.{i}.self_attn`, `...layers.{i}.mlp`); for K/V, each attention module."""
    if Role(role) in (Role.K_CACHE, Role.V_CACHE):
        return list(attention_modules(model))
    found = decoder_blocks(model)
    if found is None:
        raise ValueError("no transformer block list found; pass groups= explicitly")
    prefix, blocks = found
    groups = []
    for i, block in enumerate(blocks):
        for child_name, child in block.named_children():
            if any(isinstance(m, nn.Linear) for m in child.modules()):
                groups.append(f"{prefix}.{i}.{child_name}")
    return groups


def _num_weights(model: nn.Module, group: str) -> int:
    sub = model.get_submodule(group)
    return sum(m.weight.numel() for m in sub.modules() if isinstance(m, nn.Linear))


def _group_config(group: str, role: Role, fmt: str, method: str, params: Mapping[str, Any]):
    return QuantConfig(
        rules=(Rule(pattern=group, role=role, format=fmt, method=method, params=dict(params)),)
    )


def _shared_calib(
    model: nn.Module, method: str, role: Role, windows: Sequence[torch.Tensor], seed: int
) -> dict[str, LayerCalib] | None:
    """For calibrated weight methods: statistics of every linear from one float pass."""
    if role is not Role.WEIGHT or not get_method(method).needs_calibration:
        return None
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return collect_calib(model, windows, names, seed=seed)


def _evaluator(
    windows: WindowEval | torch.Tensor | Sequence[torch.Tensor], model: nn.Module
) -> WindowEval:
    if isinstance(windows, WindowEval):
        if windows.model is not model:
            raise ValueError("the WindowEval was built on another model")
        return windows
    return WindowEval(model, windows)


def layer_sensitivity(
    model: nn.Module,
    windows: WindowEval | torch.Tensor | Sequence[torch.Tensor],
    *,
    format: str,
    role: Role | str = Role.WEIGHT,
    method: str = "rtn",
    params: Mapping[str, Any] | None = None,
    groups: Sequence[str] | None = None,
    calib_windows: torch.Tensor | Sequence[torch.Tensor] | None = None,
    seed: int = 0,
    model_name: str = "",
    text_sha256: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> SensitivityTable:
    """Quantize each group alone (`role` tensors in `format` with `method`) and measure.

    windows: evaluation token windows ([n, seqlen]) or a `WindowEval` built on `model`.
    calib_windows: needed by calibrated methods; their statistics come from one float pass
        (each group is quantized alone, so the rest of the model is float, as during that pass).
    progress: called with each group's name before it is measured.
    """
    role = Role(role)
    params = dict(params or {})
    ev = _evaluator(windows, model)
    groups = list(groups) if groups is not None else layer_groups(model, role)
    calib = None
    if role is Role.WEIGHT and get_method(method).needs_calibration:
        if calib_windows is None:
            raise ValueError(f"method {method!r} needs calib_windows")
        calib = _shared_calib(model, method, role, as_windows(calib_windows), seed)
    entries = []
    for group in groups:
        if progress is not None:
            progress(group)
        t0 = time.perf_counter()
        nll, kl = config_cost(ev, _group_config(group, role, format, method, params), calib=calib)
        entries.append(
            SensitivityEntry(
                group=group,
                nll=nll,
                delta_nll=nll - ev.base_nll,
                delta_ppl=math.exp(nll) - math.exp(ev.base_nll),
                kl=kl,
                num_weights=_num_weights(model, group) if role is Role.WEIGHT else 0,
                time_s=time.perf_counter() - t0,
            )
        )
    return SensitivityTable(
        model=model_name,
        role=str(role),
        format=format,
        method=method,
        params=params,
        base_nll=ev.base_nll,
        base_ppl=math.exp(ev.base_nll),
        num_windows=len(ev.windows),
        seqlen=int(ev.windows[0].shape[1]),
        num_tokens=ev.num_tokens,
        seed=seed,
        text_sha256=text_sha256,
        entries=tuple(entries),
    )


# ---- does the sum of single-group costs predict a multi-group config? -----------------------


@dataclass(frozen=True, kw_only=True)
class AdditivityPoint:
    groups: tuple[str, ...]
    predicted_delta_nll: float  # sum of the groups' single-group delta_nll
    measured_delta_nll: float
    predicted_kl: float
    measured_kl: float


@dataclass(frozen=True, kw_only=True)
class Additivity:
    """Predicted (sum of singles) against measured, over random subsets of groups.

    pearson_* / spearman_*: correlation across points; rel_error_delta_nll: mean of
    |predicted - measured| / |measured|; ratio_delta_nll: mean measured / predicted (> 1: the
    errors compound, < 1: they partly cancel).
    """

    points: tuple[AdditivityPoint, ...]
    pearson_delta_nll: float
    spearman_delta_nll: float
    pearson_kl: float
    rel_error_delta_nll: float
    ratio_delta_nll: float

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["points"] = [dict(p.__dict__, groups=list(p.groups)) for p in self.points]
        return d


def measure_additivity(
    model: nn.Module,
    table: SensitivityTable,
    windows: WindowEval | torch.Tensor | Sequence[torch.Tensor],
    *,
    num_subsets: int = 6,
    seed: int = 0,
    calib_windows: torch.Tensor | Sequence[torch.Tensor] | None = None,
) -> Additivity:
    """Quantize random subsets of the table's groups together (sizes spread from 2 to all) and
    compare the measured cost with the table's sum of single-group costs."""
    ev = _evaluator(windows, model)
    if abs(ev.base_nll - table.base_nll) > 1e-6 * max(1.0, abs(table.base_nll)):
        raise ValueError("the windows differ from the table's (float NLL does not match)")
    role = Role(table.role)
    names = [e.group for e in table.entries]
    if len(names) < 2:
        raise ValueError("need at least two groups in the table")
    rng = random.Random(seed)
    sizes = _spread(2, len(names), num_subsets)
    calib = None
    if role is Role.WEIGHT and get_method(table.method).needs_calibration:
        if calib_windows is None:
            raise ValueError(f"method {table.method!r} needs calib_windows")
        calib = _shared_calib(model, table.method, role, as_windows(calib_windows), table.seed)
    points = []
    for size in sizes:
        groups = tuple(sorted(rng.sample(names, size), key=names.index))
        cfg = QuantConfig(
            rules=tuple(
                Rule(
                    pattern=g,
                    role=role,
                    format=table.format,
                    method=table.method,
                    params=dict(table.params),
                )
                for g in groups
            )
        )
        nll, kl = config_cost(ev, cfg, calib=calib)
        pred_nll, pred_kl = table.predict(groups)
        points.append(
            AdditivityPoint(
                groups=groups,
                predicted_delta_nll=pred_nll,
                measured_delta_nll=nll - ev.base_nll,
                predicted_kl=pred_kl,
                measured_kl=kl,
            )
        )
    return _summarise(points)


def _spread(low: int, high: int, n: int) -> list[int]:
    """n subset sizes spread geometrically from low to high (inclusive)."""
    if n <= 1:
        return [high]
    return [round(low * (high / low) ** (i / (n - 1))) for i in range(n)]


def _summarise(points: list[AdditivityPoint]) -> Additivity:
    pred = torch.tensor([p.predicted_delta_nll for p in points], dtype=torch.float64)
    meas = torch.tensor([p.measured_delta_nll for p in points], dtype=torch.float64)
    pkl = torch.tensor([p.predicted_kl for p in points], dtype=torch.float64)
    mkl = torch.tensor([p.measured_kl for p in points], dtype=torch.float64)
    nonzero = meas.abs() > 0
    return Additivity(
        points=tuple(points),
        pearson_delta_nll=_pearson(pred, meas),
        spearman_delta_nll=_pearson(_ranks(pred), _ranks(meas)),
        pearson_kl=_pearson(pkl, mkl),
        rel_error_delta_nll=float(((pred - meas).abs() / meas.abs())[nonzero].mean()),
        ratio_delta_nll=float((meas / pred)[pred.abs() > 0].mean()),
    )


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(a.norm() * b.norm())
    return float((a * b).sum()) / denom if denom > 0 else float("nan")


def _ranks(x: torch.Tensor) -> torch.Tensor:
    return x.argsort().argsort().to(torch.float64)
