"""quarch.search: the study (space, objectives, constraints), the proxy, the search, the front.

>>> from quarch.search import default_study, explore
>>> result = explore(default_study(), "quarch-out/explore")   # doctest: +SKIP
>>> [p.name for p in result.front_points]                      # doctest: +SKIP

Names load lazily (PEP 562): `from quarch.search import StudyResult, METRICS` imports only the
plain-data modules, so a reader of a finished study (`quarch report`) never loads torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quarch._lazy import lazy_attributes

if TYPE_CHECKING:
    from quarch.search._accuracy import AccuracyLab, Measured
    from quarch.search._additivity import Additivity, check_additivity, measure_pairs
    from quarch.search._config import bits_per_weight, design_config
    from quarch.search._evaluate import Evaluation, Evaluator
    from quarch.search._exact import ExactFront, exact_front
    from quarch.search._explore import DEFAULT_OUT, explore, load_study_model, prepare, proxy_error
    from quarch.search._gym import ExploreEnv, StepResult
    from quarch.search._layout import LinearInfo, ModelLayout, layout_from_spec, model_layout
    from quarch.search._metrics import (
        METRICS,
        Direction,
        Metric,
        MetricInfo,
        metric_info,
        stored_value,
    )
    from quarch.search._pareto import dominates, hypervolume, pareto_indices, spread
    from quarch.search._parse import load_study, read_study_file, study_from_dict
    from quarch.search._perf import PerfMetrics, PerfModel
    from quarch.search._proxy import ProxyTable, SensEntry, build_table
    from quarch.search._result import (
        RESULT_FILE,
        SCHEMA_VERSION,
        HardwareFacts,
        LayerFormats,
        PointResult,
        Sensitivity,
        StudyResult,
    )
    from quarch.search._runner import make_sampler, run_search
    from quarch.search._space import Design, DesignSpace, Group, Param, WeightOption, build_space
    from quarch.search._study import (
        FLOAT,
        AccuracySettings,
        Constraints,
        GroupSpec,
        HardwareSpec,
        MethodVariant,
        Objective,
        Sampler,
        ScenarioSpec,
        SearchSettings,
        SpaceSpec,
        StudySpec,
        TemplateParam,
        default_study,
        study_to_dict,
    )

_LAZY: dict[str, str] = {
    "AccuracyLab": "quarch.search._accuracy",
    "AccuracySettings": "quarch.search._study",
    "Constraints": "quarch.search._study",
    "DEFAULT_OUT": "quarch.search._explore",
    "Design": "quarch.search._space",
    "DesignSpace": "quarch.search._space",
    "Direction": "quarch.search._metrics",
    "Evaluation": "quarch.search._evaluate",
    "Evaluator": "quarch.search._evaluate",
    "ExploreEnv": "quarch.search._gym",
    "FLOAT": "quarch.search._study",
    "Group": "quarch.search._space",
    "GroupSpec": "quarch.search._study",
    "HardwareFacts": "quarch.search._result",
    "HardwareSpec": "quarch.search._study",
    "Additivity": "quarch.search._additivity",
    "ExactFront": "quarch.search._exact",
    "LayerFormats": "quarch.search._result",
    "LinearInfo": "quarch.search._layout",
    "METRICS": "quarch.search._metrics",
    "Measured": "quarch.search._accuracy",
    "MethodVariant": "quarch.search._study",
    "Metric": "quarch.search._metrics",
    "MetricInfo": "quarch.search._metrics",
    "ModelLayout": "quarch.search._layout",
    "Objective": "quarch.search._study",
    "Param": "quarch.search._space",
    "PerfMetrics": "quarch.search._perf",
    "PerfModel": "quarch.search._perf",
    "PointResult": "quarch.search._result",
    "ProxyTable": "quarch.search._proxy",
    "RESULT_FILE": "quarch.search._result",
    "SCHEMA_VERSION": "quarch.search._result",
    "Sampler": "quarch.search._study",
    "ScenarioSpec": "quarch.search._study",
    "SearchSettings": "quarch.search._study",
    "SensEntry": "quarch.search._proxy",
    "Sensitivity": "quarch.search._result",
    "SpaceSpec": "quarch.search._study",
    "StepResult": "quarch.search._gym",
    "StudyResult": "quarch.search._result",
    "StudySpec": "quarch.search._study",
    "TemplateParam": "quarch.search._study",
    "WeightOption": "quarch.search._space",
    "bits_per_weight": "quarch.search._config",
    "check_additivity": "quarch.search._additivity",
    "exact_front": "quarch.search._exact",
    "measure_pairs": "quarch.search._additivity",
    "build_space": "quarch.search._space",
    "build_table": "quarch.search._proxy",
    "default_study": "quarch.search._study",
    "design_config": "quarch.search._config",
    "dominates": "quarch.search._pareto",
    "explore": "quarch.search._explore",
    "hypervolume": "quarch.search._pareto",
    "layout_from_spec": "quarch.search._layout",
    "load_study": "quarch.search._parse",
    "load_study_model": "quarch.search._explore",
    "make_sampler": "quarch.search._runner",
    "metric_info": "quarch.search._metrics",
    "model_layout": "quarch.search._layout",
    "pareto_indices": "quarch.search._pareto",
    "prepare": "quarch.search._explore",
    "proxy_error": "quarch.search._explore",
    "run_search": "quarch.search._runner",
    "spread": "quarch.search._pareto",
    "study_from_dict": "quarch.search._parse",
    "read_study_file": "quarch.search._parse",
    "stored_value": "quarch.search._metrics",
    "study_to_dict": "quarch.search._study",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())


__all__ = [
    "DEFAULT_OUT",
    "FLOAT",
    "METRICS",
    "RESULT_FILE",
    "SCHEMA_VERSION",
    "AccuracyLab",
    "AccuracySettings",
    "Additivity",
    "Constraints",
    "Design",
    "DesignSpace",
    "Direction",
    "Evaluation",
    "Evaluator",
    "ExactFront",
    "ExploreEnv",
    "Group",
    "GroupSpec",
    "HardwareFacts",
    "HardwareSpec",
    "LayerFormats",
    "LinearInfo",
    "Measured",
    "MethodVariant",
    "Metric",
    "MetricInfo",
    "ModelLayout",
    "Objective",
    "Param",
    "PerfMetrics",
    "PerfModel",
    "PointResult",
    "ProxyTable",
    "Sampler",
    "ScenarioSpec",
    "SearchSettings",
    "SensEntry",
    "Sensitivity",
    "SpaceSpec",
    "StepResult",
    "StudyResult",
    "StudySpec",
    "TemplateParam",
    "WeightOption",
    "bits_per_weight",
    "build_space",
    "build_table",
    "check_additivity",
    "default_study",
    "design_config",
    "dominates",
    "exact_front",
    "explore",
    "hypervolume",
    "layout_from_spec",
    "load_study",
    "load_study_model",
    "make_sampler",
    "measure_pairs",
    "metric_info",
    "model_layout",
    "pareto_indices",
    "prepare",
    "proxy_error",
    "read_study_file",
    "run_search",
    "spread",
    "stored_value",
    "study_from_dict",
    "study_to_dict",
]
