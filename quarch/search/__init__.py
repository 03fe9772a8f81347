"""quarch.search: the study (space, objectives, constraints), the proxy, the search, the front.

>>> from quarch.search import default_study, explore
>>> result = explore(default_study(), "quarch-out/explore")   # doctest: +SKIP
>>> [p.name for p in result.front]                             # doctest: +SKIP
"""

from quarch.search._accuracy import AccuracyLab, Measured
from quarch.search._config import bits_per_weight, design_config
from quarch.search._evaluate import Evaluation, Evaluator
from quarch.search._explore import (
    DEFAULT_OUT,
    ExploreResult,
    Point,
    explore,
    load_study_model,
    prepare,
    proxy_error,
)
from quarch.search._gym import ExploreEnv, StepResult
from quarch.search._layout import LinearInfo, ModelLayout, layout_from_spec, model_layout
from quarch.search._pareto import dominates, hypervolume, pareto_indices
from quarch.search._parse import load_study, study_from_dict
from quarch.search._perf import PerfMetrics, PerfModel
from quarch.search._proxy import ProxyTable, SensEntry, build_table
from quarch.search._runner import make_sampler, run_search
from quarch.search._space import Design, DesignSpace, Group, Param, WeightOption, build_space
from quarch.search._study import (
    FLOAT,
    AccuracySettings,
    Constraints,
    GroupSpec,
    HardwareSpec,
    MethodVariant,
    Metric,
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

__all__ = [
    "DEFAULT_OUT",
    "FLOAT",
    "AccuracyLab",
    "AccuracySettings",
    "Constraints",
    "Design",
    "DesignSpace",
    "Evaluation",
    "Evaluator",
    "ExploreEnv",
    "ExploreResult",
    "Group",
    "GroupSpec",
    "HardwareSpec",
    "LinearInfo",
    "Measured",
    "MethodVariant",
    "Metric",
    "ModelLayout",
    "Objective",
    "Param",
    "PerfMetrics",
    "PerfModel",
    "Point",
    "ProxyTable",
    "Sampler",
    "ScenarioSpec",
    "SearchSettings",
    "SensEntry",
    "SpaceSpec",
    "StepResult",
    "StudySpec",
    "TemplateParam",
    "WeightOption",
    "bits_per_weight",
    "build_space",
    "build_table",
    "default_study",
    "design_config",
    "dominates",
    "explore",
    "hypervolume",
    "layout_from_spec",
    "load_study",
    "load_study_model",
    "make_sampler",
    "model_layout",
    "pareto_indices",
    "prepare",
    "proxy_error",
    "run_search",
    "study_from_dict",
    "study_to_dict",
]
