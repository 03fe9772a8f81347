"""A gym-style environment over a study's design space, for users' own optimizers.

    env = ExploreEnv(evaluator)                 # from `prepare(...)` or a built Evaluator
    obs, info = env.reset(seed=0)
    while True:
        action = my_optimizer.ask(env.params)   # {param: choice}, or one index per param
        result = env.step(action)               # StepResult; unpacks as gymnasium's 5-tuple
        my_optimizer.tell(action, result.info["values"])
        if result.terminated or result.truncated:
            break
    env.front                                   # the non-dominated feasible designs so far

The observation of a step is the design's metrics (`ppl`, `bits`, `tpot@<scenario>`, …). The
reward is the gain in hypervolume of the feasible front, with every objective divided by the
float baseline's value and the reference point 1.1 × the worst uniform baseline per objective,
so it is positive exactly when the step improved the front. With `study=` each step is also
stored as a completed Optuna trial, so reports and resumed searches include it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quarch.search._evaluate import Evaluation, Evaluator
from quarch.search._pareto import hypervolume, pareto_indices
from quarch.search._space import Design, Param


@dataclass(frozen=True, kw_only=True)
class StepResult:
    """What `step` returns; iterates as (observation, reward, terminated, truncated, info)."""

    observation: dict[str, float | None]
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.observation, self.reward, self.terminated, self.truncated, self.info))


class ExploreEnv:
    """Steps over designs of an evaluator's space (see the module doc).

    Args:
        evaluator: scores designs (proxy perplexity and the performance model).
        max_steps: steps before `truncated` is set.
        study: an Optuna study with the evaluator's objectives to record steps into.
    """

    @classmethod
    def open(
        cls,
        spec: Any,
        out_dir: str | Any = "quarch-out/explore",
        *,
        max_steps: int = 100,
        record: bool = True,
        progress: bool = True,
    ) -> ExploreEnv:
        """An environment over a study's space: the model, proxy table and baselines are
        prepared (or read from `out_dir`) as `explore` does; with `record`, steps are stored in
        the study's storage, so a later `quarch explore` on the same directory includes them."""
        from pathlib import Path

        from quarch.search._explore import prepare
        from quarch.search._progress import Progress
        from quarch.search._runner import open_study

        out = Path(out_dir)
        ctx = prepare(spec, out, Progress(progress))
        ev = Evaluator(ctx.space, ctx.proxy, ctx.perf, spec.objectives, spec.constraints)
        study = None
        if record:
            url = spec.search.storage or f"sqlite:///{(out / 'study.db').resolve()}"
            study = open_study(spec.name, url, len(spec.objectives))
        return cls(ev, max_steps=max_steps, study=study)

    def __init__(self, evaluator: Evaluator, *, max_steps: int = 100, study: Any = None) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.evaluator = evaluator
        self.space = evaluator.space
        self.max_steps = max_steps
        self.study = study
        base = [evaluator.evaluate(d) for _, d in self.space.baselines()]
        self._scale = [abs(v) or 1.0 for v in base[0].values]
        worst = [max(ev.values[i] / self._scale[i] for ev in base) for i in range(len(self._scale))]
        # 10 % beyond the worst baseline (also for a maximised metric, whose values are < 0)
        self.reference = [w + 0.1 * abs(w) for w in worst]
        self.reset()

    @property
    def params(self) -> tuple[Param, ...]:
        """The sampled dimensions: categorical choices or numeric ranges."""
        return self.space.params

    @property
    def nvec(self) -> list[int]:
        """Choices per categorical param (a MultiDiscrete action space); 0 for ranges."""
        return [len(p.choices) for p in self.params]

    def reset(self, *, seed: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Forget the steps taken; returns (observation, info)."""
        self.rng = random.Random(seed)
        self.steps = 0
        self.history: list[tuple[Design, Evaluation]] = []
        self._hv = 0.0
        info = {"params": [p.name for p in self.params], "nvec": self.nvec}
        return {}, info

    def sample(self) -> dict[str, Any]:
        """A random action (uniform over each param)."""
        out: dict[str, Any] = {}
        for p in self.params:
            if p.categorical:
                out[p.name] = self.rng.choice(p.choices)
            else:
                assert p.low is not None and p.high is not None
                v = self.rng.uniform(p.low, p.high)
                out[p.name] = round(v) if p.integer else v
        return out

    def design_of(self, action: Mapping[str, Any] | Sequence[Any]) -> Design:
        """A dict of param values, or one entry per param (an index for categorical ones)."""
        if isinstance(action, Mapping):
            return self.space.design(action)
        if len(action) != len(self.params):
            raise ValueError(f"action has {len(action)} entries; the space has {len(self.params)}")
        values = {}
        for p, a in zip(self.params, action, strict=True):
            if p.categorical:
                if not isinstance(a, int) or not 0 <= a < len(p.choices):
                    raise ValueError(
                        f"action for {p.name!r}: index {a!r} not in 0..{len(p.choices) - 1}"
                    )
                values[p.name] = p.choices[a]
            else:
                values[p.name] = a
        return self.space.design(values)

    def step(self, action: Mapping[str, Any] | Sequence[Any]) -> StepResult:
        """Evaluate one design (see the module doc)."""
        design = self.design_of(action)
        ev = self.evaluator.evaluate(design)
        self.history.append((design, ev))
        self.steps += 1
        hv = self.hypervolume()
        reward, self._hv = hv - self._hv, hv
        if self.study is not None:
            self._record(design, ev)
        info = {
            "key": design.key,
            "values": ev.values,
            "feasible": ev.feasible,
            "constraints": ev.constraints,
            "hypervolume": hv,
            "front_size": len(self.front),
        }
        return StepResult(
            observation=dict(ev.metrics),
            reward=reward,
            terminated=False,
            truncated=self.steps >= self.max_steps,
            info=info,
        )

    @property
    def front(self) -> list[tuple[Design, Evaluation]]:
        feasible = [(d, e) for d, e in self.history if e.feasible]
        return [feasible[i] for i in pareto_indices([e.values for _, e in feasible])]

    def hypervolume(self) -> float:
        """Hypervolume of the feasible front (normalised objectives, see the module doc)."""
        pts = [[v / s for v, s in zip(e.values, self._scale, strict=True)] for _, e in self.front]
        return hypervolume(pts, self.reference)

    def _record(self, design: Design, ev: Evaluation) -> None:
        import optuna
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        dists: dict[str, Any] = {}
        for p in self.params:
            if p.categorical:
                dists[p.name] = CategoricalDistribution(list(p.choices))
            elif p.integer:
                dists[p.name] = IntDistribution(int(p.low or 0), int(p.high or 0), log=p.log)
            else:
                dists[p.name] = FloatDistribution(float(p.low or 0), float(p.high or 0), log=p.log)
        trial = optuna.trial.create_trial(
            params=self.space.sampled(design),
            distributions=dists,
            values=list(ev.values),
            user_attrs={"key": design.key, "metrics": ev.metrics, "source": "gym"},
            constraints=dict(zip(self.evaluator.constraint_names(), ev.constraints, strict=True)),
        )
        self.study.add_trial(trial)
