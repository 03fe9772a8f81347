"""Property-based fuzzing of model specs (issue 15): a mutated catalog entry or hand-written
spec either builds a ModelSpec or raises a one-line ValueError/TypeError, never slowly."""

from __future__ import annotations

import copy
import os
from datetime import timedelta
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quarch.models import ModelSpec, load_model_spec
from quarch.models._config import _catalog_files

ENTRIES = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in _catalog_files().values()]
FUZZ = settings(
    max_examples=int(os.environ.get("QUARCH_FUZZ_EXAMPLES", "200")),  # more for a long campaign
    deadline=timedelta(seconds=2),  # generous for a loaded machine; the bugs took minutes
    suppress_health_check=[HealthCheck.too_slow],
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.integers(-3, 300),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["silu", "llama", "qwen2_moe", "deepseek_v3", "mixtral", "1e400"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(SCALARS, inner, max_size=4),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            out += _paths(child, (*prefix, key))
    return out


def _mutate(doc: Any, path: tuple[Any, ...], op: str, value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if op == "delete":
        del parent[path[-1]]
    elif op == "add":
        parent[f"{path[-1]}_extra"] = value
    else:
        parent[path[-1]] = value
    return doc


@FUZZ
@given(st.data())
def test_mutated_model_specs(data: st.DataObject) -> None:
    doc = copy.deepcopy(data.draw(st.sampled_from(ENTRIES)))
    if data.draw(st.booleans()):
        doc = doc["config"]  # the bare config.json form
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(doc)))
        op = data.draw(st.sampled_from(["replace", "delete", "add"]))
        doc = _mutate(doc, path, op, data.draw(VALUES))
    try:
        spec = load_model_spec(doc) if isinstance(doc, dict) else load_model_spec({"x": doc})
    except (ValueError, TypeError) as error:
        msg = str(error)
        assert "\n" not in msg and len(msg) < 1000, msg[:1200]
    else:
        assert isinstance(spec, ModelSpec)
        assert spec.num_params > 0


def test_absurd_depths_and_widths_are_refused_at_once() -> None:
    # 10^9 MoE layers once looped for minutes while the spec was built.
    for field, value in [("num_hidden_layers", 10**9), ("hidden_size", 10**30)]:
        doc = copy.deepcopy(next(e for e in ENTRIES if "n_routed_experts" in e["config"]))
        doc["config"][field] = value
        with pytest.raises(ValueError, match=r"must be a positive integer ≤ \d+, got \d+"):
            load_model_spec(doc)
