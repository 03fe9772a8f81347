"""A finished study as plain data: what `explore` returns and stores, what the report reads.

`StudyResult` holds no live object (no model, proxy table, performance model or Optuna study):
only the resolved study, every evaluated point (its design, a one-line summary, its per-layer
formats, proxy and measured metrics, per-scenario performance breakdown where it was kept, and
its config file), the front, the proxy's error, stage times, the sensitivity table and the
facts about the hardware and formats the figures need. It is written as `result.json` in the
output directory (atomically, with a schema version) and read back by `StudyResult.load`;
`from_dict(to_dict())` gives an equal result. This module imports nothing heavy, so `quarch
report` can redraw a report without torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from quarch._atomic import write_json
from quarch.search._metrics import METRICS

SCHEMA_VERSION = 1
"""Bumped whenever a field changes meaning or goes away (readers refuse other versions)."""

RESULT_FILE = "result.json"

Metrics = dict[str, float | None]


@dataclass(frozen=True, kw_only=True)
class LayerFormats:
    """The choices one layer's tensors take: attention and MLP weight options, activation and
    KV-cache formats (`float`: the serving dtype)."""

    attn: str
    mlp: str
    act: str
    kv: str

    def as_tuple(self) -> tuple[str, str, str, str]:
        return (self.attn, self.mlp, self.act, self.kv)


@dataclass(frozen=True, kw_only=True)
class PointResult:
    """One evaluated design: a search trial or a uniform baseline.

    proxy: its metrics with the proxy's perplexity. final: with the measured perplexity (None
    when it was not measured). perf: per scenario, the performance model's breakdown (the
    fields of `PerfMetrics`), kept for measured points only. config: the QuantConfig file,
    relative to the output directory (front points only). excluded: why the study's engine
    cannot serve the design (None: it can, or no engine constraint applies).
    """

    name: str
    key: str
    baseline: bool
    trial: int | None
    design: dict[str, Any]
    summary: str
    hardware: str
    layers: tuple[LayerFormats, ...]
    proxy: Metrics
    feasible: bool
    measured: dict[str, Any] | None = None
    final: Metrics | None = None
    perf: dict[str, dict[str, Any]] = field(default_factory=dict)
    config: str | None = None
    excluded: str | None = None

    @property
    def metrics(self) -> Metrics:
        """The measured metrics where there are some, else the proxy's."""
        return self.final if self.final is not None else self.proxy

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["layers"] = [list(layer.as_tuple()) for layer in self.layers]
        return out

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> PointResult:
        d = dict(data)
        d["layers"] = tuple(
            LayerFormats(attn=a, mlp=m, act=x, kv=k) for a, m, x, k in d.get("layers", [])
        )
        return PointResult(**d)


@dataclass(frozen=True, kw_only=True)
class HardwareFacts:
    """What the roofline needs of one device: its name, memory levels (name, bytes/s) and the
    matrix peak of each native format (FLOP/s)."""

    display_name: str
    memory: tuple[tuple[str, float], ...]
    matrix_flops_per_s: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "display_name": self.display_name,
            "memory": [list(m) for m in self.memory],
            "matrix_flops_per_s": dict(self.matrix_flops_per_s),
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> HardwareFacts:
        return HardwareFacts(
            display_name=str(data["display_name"]),
            memory=tuple((str(n), float(b)) for n, b in data["memory"]),
            matrix_flops_per_s=dict(data["matrix_flops_per_s"]),
        )


@dataclass(frozen=True, kw_only=True)
class Sensitivity:
    """The proxy table as the report shows it: the cost (KL or Δ NLL, nats/token) of each slot
    quantized alone, slots in layer order."""

    signal: str
    slots: tuple[str, ...]
    choices: tuple[str, ...]
    cost: dict[str, float]  # "slot=choice" -> cost

    def value(self, slot: str, choice: str) -> float | None:
        return self.cost.get(f"{slot}={choice}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "slots": list(self.slots),
            "choices": list(self.choices),
            "cost": dict(self.cost),
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Sensitivity:
        return Sensitivity(
            signal=str(data["signal"]),
            slots=tuple(data["slots"]),
            choices=tuple(data["choices"]),
            cost=dict(data["cost"]),
        )


@dataclass(frozen=True, kw_only=True)
class StudyResult:
    """A finished study (see the module doc).

    study: the resolved study mapping (the YAML form, every default written out).
    points: every evaluated design, baselines first. front / proxy_front: keys of the final
        front (measured, sorted by bits) and of the proxy front points that were measured.
    formats: every choice's stored format (`float` → the serving dtype) with its bits per
        element, scales included. hardware: `HardwareFacts` by each point's `hardware` label.
    out_dir: where it was loaded from or written to (not part of the data).
    """

    study: dict[str, Any]
    model_name: str
    num_layers: int
    trials: int
    points: tuple[PointResult, ...]
    front: tuple[str, ...]
    proxy_front: tuple[str, ...]
    proxy_error: dict[str, float | None]
    eval_info: dict[str, Any]
    sensitivity: Sensitivity
    hardware: dict[str, HardwareFacts]
    formats: dict[str, tuple[str, float]]  # choice -> (format name, bits per element)
    timings: dict[str, float] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    out_dir: Path | None = field(default=None, compare=False)

    # ---- reading ----------------------------------------------------------------------

    def point(self, key: str) -> PointResult:
        for p in self.points:
            if p.key == key:
                return p
        raise KeyError(f"no point with key {key!r}")

    @property
    def front_points(self) -> list[PointResult]:
        return [self.point(k) for k in self.front]

    @property
    def baselines(self) -> list[PointResult]:
        return [p for p in self.points if p.baseline]

    @property
    def scenarios(self) -> list[str]:
        return [str(s["name"]) for s in self.study["scenarios"]]

    @property
    def objectives(self) -> list[str]:
        return [str(o) for o in self.study["objectives"]]

    @property
    def float_ppl(self) -> float:
        return float(self.eval_info["float_ppl"])

    @property
    def spec(self) -> Any:
        """The study as a `StudySpec` (parsed, so format names are checked)."""
        from quarch.search._parse import study_from_dict

        return study_from_dict(self.study)

    def config_path(self, point: PointResult) -> Path | None:
        """The absolute path of a point's config file (None without one or an `out_dir`)."""
        if point.config is None or self.out_dir is None:
            return None
        return self.out_dir / point.config

    # ---- files ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Every field but `out_dir` (tuples stay tuples; JSON writes them as lists), the
        nested records as their own `to_dict`, and the metric registry for other readers."""
        out = {k: v for k, v in self.__dict__.items() if k != "out_dir"}
        return {
            **out,
            "points": [p.to_dict() for p in self.points],
            "sensitivity": self.sensitivity.to_dict(),
            "hardware": {k: h.to_dict() for k, h in self.hardware.items()},
            # for other readers of the file: what each metric key means (not read back; the
            # registry in `_metrics` is the one declaration)
            "metrics": {
                i.key: {
                    "title": i.title,
                    "unit": i.unit,
                    "direction": i.direction.value,
                    "per_scenario": i.per_scenario,
                }
                for i in METRICS.values()
            },
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any], out_dir: Path | None = None) -> StudyResult:
        """The result of a `to_dict` mapping.

        Raises:
            ValueError: another schema version.
        """
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"study result schema version {version!r}; this quarch reads {SCHEMA_VERSION} "
                "(re-run `quarch explore` on the same directory to rewrite it)"
            )
        return StudyResult(
            study=dict(data["study"]),
            model_name=str(data["model_name"]),
            num_layers=int(data["num_layers"]),
            trials=int(data["trials"]),
            points=tuple(PointResult.from_dict(p) for p in data["points"]),
            front=tuple(data["front"]),
            proxy_front=tuple(data["proxy_front"]),
            proxy_error=dict(data["proxy_error"]),
            eval_info=dict(data["eval_info"]),
            sensitivity=Sensitivity.from_dict(data["sensitivity"]),
            hardware={k: HardwareFacts.from_dict(h) for k, h in data["hardware"].items()},
            formats={k: (str(f), float(b)) for k, (f, b) in data["formats"].items()},
            timings=dict(data.get("timings", {})),
            schema_version=int(version),
            out_dir=out_dir,
        )

    def save(self, out_dir: str | Path | None = None) -> Path:
        """Write `result.json` into `out_dir` (default: this result's) atomically; returns its
        path."""
        folder = Path(out_dir) if out_dir is not None else self.out_dir
        if folder is None:
            raise ValueError("StudyResult.save: no output directory given")
        path = folder / RESULT_FILE
        write_json_atomic(path, self.to_dict())
        return path

    @staticmethod
    def load(out_dir: str | Path) -> StudyResult:
        """The result stored in a study's output directory.

        Raises:
            ValueError: no `result.json` there, or one that is not a study result.
        """
        folder = Path(out_dir)
        path = folder / RESULT_FILE
        if not path.is_file():
            raise ValueError(
                f"{str(folder)!r} holds no finished study ({RESULT_FILE} missing); run "
                "`quarch explore --out DIR` first"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
        try:
            return StudyResult.from_dict(data, out_dir=folder)
        except (KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a study result ({err!r})") from None

    def with_out_dir(self, out_dir: str | Path) -> StudyResult:
        return replace(self, out_dir=Path(out_dir))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that a kill at any moment leaves the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data, indent=1, default=str)
