"""The accuracy proxy: a sensitivity table per slot and choice, summed and calibrated.

**Table.** For every slot of the space (a group's attention or MLP weights, its activations, its
KV cache) and every non-float choice of it, the slot alone is quantized (the rest of the model
float) and two costs are measured on the sensitivity windows: the change of mean NLL,
`Δnll = nll − nll₀`, and the mean KL divergence from the float model's next-token distribution.
They are measured by `quarch.quant`'s sensitivity engine (`WindowEval`, `config_cost`: one
batch of windows, run from the slot's first block on the cached float prefix, RTN weights from
the lab's weight cache). The table is written to a JSON file in
the output directory after every entry, so a killed study resumes where it stopped and a
re-run with the same model and settings measures nothing again (`build_table`; `explore` keeps
every cell in the study's storage instead, through `_stages`).

**Proxy.** Quantization errors of different layers add up, to first order, in the log-likelihood
(the additivity `quarch.quant.measure_additivity` checks), so a design's proxy NLL is

    nll(design) = nll_float(eval) + Σ_kind α_kind · Σ_{slots of kind} cost(slot, choice)

with slot kinds weight, act and kv, and perplexity = exp(nll). A slot's kind names the tensors
it sets by `quarch.quant.Role`: weight slots the `WEIGHT` of their linear layers, act slots the
`INPUT` of every linear layer of their blocks, kv slots the `K_CACHE` and `V_CACHE` of their
attention modules (`slot_roles`). The cost summed is the KL divergence
by default (`signal="kl"`): on a few hundred tokens Δnll is dominated by noise for mild
quantization (it is often negative, e.g. −0.0001 nats for an int4 MLP group whose KL is 0.13 on
SmolLM2-135M), while the KL is non-negative and far steadier, and its expectation is the
expected NLL increase when the text follows the float model's distribution. `signal="nll"` sums
Δnll instead. `α_kind` is fitted (least squares
through the origin) on the uniform baselines, which are measured for real on the eval windows
before the search: it absorbs both the shift from the sensitivity windows to the eval windows
and the compounding (or cancelling) of errors when every group is quantized at once, which a
plain sum misses. Without baselines of a kind, α = 1. Clamped to [0, 10] against noise.

**Pair terms.** Where two slots of one layer group interact (their joint cost is not the sum
of their single costs, `_additivity` measures where), the table may hold a measured pair term
`cost(pair) − cost(a) − cost(b)` for that pair of choices; a design holding both choices adds
it, half to each slot's kind. Pair terms within a group keep the proxy a sum of per-group
terms, so the exact solver (`_exact`) stays exact.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quarch.quant import (
    QuantConfig,
    Role,
    Rule,
    WindowEval,
    config_cost,
    get_method,
)
from quarch.search._config import rule_patterns
from quarch.search._layout import ATTN, MLP, PARTS
from quarch.search._result import write_json_atomic
from quarch.search._space import Design, DesignSpace
from quarch.search._study import FLOAT

KINDS = ("weight", "act", "kv")
"""Slot kinds, the keys of α (see the module doc)."""

_SLOTS: dict[str, tuple[str, tuple[Role, ...]]] = {
    "w": ("weight", (Role.WEIGHT,)),
    "a": ("act", (Role.INPUT,)),
    "kv": ("kv", (Role.K_CACHE, Role.V_CACHE)),
}
"""Slot name head -> (kind, the tensor roles the slot sets)."""
ALPHA_MAX = 10.0


def _slot(slot: str) -> tuple[str, tuple[Role, ...]]:
    head = slot.split(".", 1)[0]
    if head not in _SLOTS:
        raise ValueError(f"not a slot of the proxy: {slot!r} (w.*, a.* or kv.*)")
    return _SLOTS[head]


def slot_kind(slot: str) -> str:
    """`weight`, `act` or `kv` from a slot name (`w.l0-4.attn`, `a.l0-4`, `kv.l0-4`)."""
    return _slot(slot)[0]


def slot_roles(slot: str) -> tuple[Role, ...]:
    """The tensor roles a slot sets (`kv.l0-4`: `K_CACHE` and `V_CACHE`)."""
    return _slot(slot)[1]


@dataclass(frozen=True, kw_only=True)
class SensEntry:
    slot: str
    choice: str
    delta_nll: float
    kl: float
    time_s: float


@dataclass(kw_only=True)
class ProxyTable:
    """The sensitivity table and the calibrated proxy (see the module doc)."""

    meta: dict[str, Any]
    base_nll: float  # float model on the sensitivity windows
    entries: dict[str, SensEntry] = field(default_factory=dict)
    signal: str = "kl"  # "kl" or "nll": which cost the proxy sums
    eval_float_nll: float | None = None
    alpha: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KINDS, 1.0))
    # pair_key -> measured interaction (Δ NLL term, KL term), nats/token
    pairs: dict[str, tuple[float, float]] = field(default_factory=dict)

    @staticmethod
    def key(slot: str, choice: str) -> str:
        return f"{slot}={choice}"

    @staticmethod
    def pair_key(a: tuple[str, str], b: tuple[str, str]) -> str:
        """The key of a pair of (slot, choice), in slot order: `w.l0-9.attn=int8|a.l0-9=fp8`."""
        first, second = sorted((a, b))
        return f"{ProxyTable.key(*first)}|{ProxyTable.key(*second)}"

    def cost(self, slot: str, choice: str) -> float:
        e = self.entries[self.key(slot, choice)]
        return e.kl if self.signal == "kl" else e.delta_nll

    def deltas(self, design: Design) -> dict[str, float]:
        """Σ cost per slot kind over the design's non-float slot choices."""
        out = dict.fromkeys(KINDS, 0.0)
        chosen = []
        for slot, choice in design.items:
            if slot.startswith("hw.") or choice == FLOAT:
                continue
            out[slot_kind(slot)] += self.cost(slot, choice)
            chosen.append((slot, choice))
        if self.pairs:
            for i, a in enumerate(chosen):
                for b in chosen[i + 1 :]:
                    terms = self.pairs.get(self.pair_key(a, b))
                    if terms is not None:
                        term = terms[1] if self.signal == "kl" else terms[0]
                        out[slot_kind(a[0])] += term / 2
                        out[slot_kind(b[0])] += term / 2
        return out

    def proxy_nll(self, design: Design) -> float:
        base = self.eval_float_nll if self.eval_float_nll is not None else self.base_nll
        d = self.deltas(design)
        return base + sum(self.alpha[r] * d[r] for r in KINDS)

    def proxy_ppl(self, design: Design) -> float:
        return math.exp(self.proxy_nll(design))

    def fit_alpha(self, measured: list[tuple[Design, float]]) -> dict[str, float]:
        """Fit α per kind on (design, measured eval NLL) pairs of single-kind designs."""
        assert self.eval_float_nll is not None
        sums = {r: [0.0, 0.0] for r in KINDS}  # Σ pred·meas, Σ pred²
        for design, nll in measured:
            d = self.deltas(design)
            active = [r for r in KINDS if d[r] != 0.0]
            if len(active) != 1:
                continue
            r = active[0]
            sums[r][0] += d[r] * (nll - self.eval_float_nll)
            sums[r][1] += d[r] * d[r]
        for r, (pm, pp) in sums.items():
            if pp > 0:
                self.alpha[r] = min(max(pm / pp, 0.0), ALPHA_MAX)
        return dict(self.alpha)

    # ---- files ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "entries": [dict(e.__dict__) for e in self.entries.values()],
            "pairs": {k: list(v) for k, v in self.pairs.items()},
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> ProxyTable:
        entries = {}
        for e in data.get("entries", []):
            entry = SensEntry(**e)
            entries[ProxyTable.key(entry.slot, entry.choice)] = entry
        return ProxyTable(
            meta=dict(data["meta"]),
            base_nll=float(data["base_nll"]),
            entries=entries,
            eval_float_nll=data.get("eval_float_nll"),
            alpha=dict(data.get("alpha") or dict.fromkeys(KINDS, 1.0)),
            signal=str(data.get("signal", "kl")),
            pairs={
                str(k): (float(v[0]), float(v[1])) for k, v in (data.get("pairs") or {}).items()
            },
        )

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.to_dict())


def needed_entries(space: DesignSpace) -> list[tuple[str, str, tuple[int, ...], str | None]]:
    """(slot, choice, layers, part) of every table entry the space needs."""
    out = []
    for g in space.groups:
        parts: tuple[str | None, ...] = PARTS if space.split_attn_mlp else (None,)
        for part in parts:
            slot = space.weight_slot(g.name, part or ATTN)
            out += [(slot, c, g.layers, part) for c in g.weight if c != FLOAT]
        out += [(f"a.{g.name}", c, g.layers, None) for c in g.act if c != FLOAT]
        out += [(f"kv.{g.name}", c, g.layers, None) for c in g.kv if c != FLOAT]
    return out


def table_meta(lab: Any, space: DesignSpace, model_id: str) -> dict[str, Any]:
    s = lab.settings
    w = lab.sens_windows
    return {
        "model": model_id,
        "text": lab.calib_text.name,
        "text_sha256": lab.calib_text.sha256,
        "seqlen": int(w.shape[1]),
        "windows": int(w.shape[0]),
        "calib_windows": s.calib_windows,
        "calib_seqlen": s.calib_seqlen,
        "seed": s.seed,
        "groups": {g.name: list(g.layers) for g in space.groups},
    }


def build_table(
    lab: Any,
    space: DesignSpace,
    path: Path | None,
    *,
    model_id: str,
    signal: str = "kl",
    progress: Callable[[int, int, str], None] | None = None,
) -> ProxyTable:
    """Measure (or load from `path`) every entry the space needs (see the module doc).

    progress: called as `progress(done, total, entry)` before each entry is measured.
    """
    meta = table_meta(lab, space, model_id)
    table: ProxyTable | None = None
    if path is not None and path.is_file():
        cached = ProxyTable.from_dict(json.loads(path.read_text(encoding="utf-8")))
        if cached.meta == meta:
            table = cached
    needed = needed_entries(space)
    missing = [
        e for e in needed if table is None or ProxyTable.key(e[0], e[1]) not in table.entries
    ]
    if table is not None and not missing:
        table.signal = signal
        return table
    ev = sensitivity_eval(lab)
    if table is None:
        table = ProxyTable(meta=meta, base_nll=ev.base_nll)
    table.signal = signal
    done = len(needed) - len(missing)
    for slot, choice, layers, part in missing:
        if progress is not None:
            progress(done, len(needed), f"{slot}={choice}")
        nll, kl, time_s = measure_cell(lab, ev, space, slot, choice, layers, part)
        table.entries[ProxyTable.key(slot, choice)] = SensEntry(
            slot=slot, choice=choice, delta_nll=nll - table.base_nll, kl=kl, time_s=time_s
        )
        done += 1
        if path is not None:
            table.save(path)
    if progress is not None:
        progress(done, len(needed), "")
    return table


def sensitivity_eval(lab: Any) -> WindowEval:
    """The lab's sensitivity windows as one batch, with the float-prefix cache."""
    windows = lab.sens_windows  # [n, seqlen]
    return WindowEval(lab.model, windows, batch_size=int(windows.shape[0]))


def measure_cell(
    lab: Any,
    ev: WindowEval,
    space: DesignSpace,
    slot: str,
    choice: str,
    layers: tuple[int, ...],
    part: str | None,
) -> tuple[float, float, float]:
    """One table cell: the slot alone quantized with `choice`, measured on the sensitivity
    windows; returns (mean NLL, mean KL from the float model, wall seconds)."""
    t0 = time.perf_counter()
    config, calibrated = slot_config(space, slot, choice, layers, part)
    calib = lab.float_stats() if calibrated else None
    nll, kl = config_cost(ev, config, calib=calib, weight_cache=lab.cache)
    return nll, kl, time.perf_counter() - t0


def slot_config(
    space: DesignSpace, slot: str, choice: str, layers: tuple[int, ...], part: str | None
) -> tuple[QuantConfig, bool]:
    """The config quantizing one slot alone, and whether its method needs calibration (then
    it is applied with the float model's statistics on the calibration windows)."""
    pats = rule_patterns(space, layers)
    roles = slot_roles(slot)
    if roles == (Role.WEIGHT,):
        opt = space.options[choice]
        assert opt.format is not None
        rule = Rule(
            pattern=pats[part] if part in (ATTN, MLP) else pats["both"],
            role=Role.WEIGHT,
            format=str(opt.format),
            method=opt.method.name,
            params=dict(opt.method.params),
        )
        return QuantConfig(rules=(rule,)), get_method(opt.method.name).needs_calibration
    rules = tuple(Rule(pattern=pats[_ROLE_PATTERN[r]], role=r, format=choice) for r in roles)
    return QuantConfig(rules=rules), False


_ROLE_PATTERN = {Role.INPUT: "both", Role.K_CACHE: "kv", Role.V_CACHE: "kv"}
"""Which of `rule_patterns`' patterns an activation or KV-cache role is set on."""
