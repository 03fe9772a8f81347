"""Property-based fuzzing of Hardware files (issue 15): a mutated document or a mangled file
either loads or raises a one-line ValueError naming the file; nothing else, never slowly."""

from __future__ import annotations

import copy
import itertools
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quarch.hardware import Hardware, hardware_from_dict, load_hardware

TOY = Path(__file__).parent / "data" / "toy-gpu.yaml"
TOY_TEXT = TOY.read_text()
TOY_DOC = yaml.safe_load(TOY_TEXT)
FUZZ = settings(
    max_examples=int(os.environ.get("QUARCH_FUZZ_EXAMPLES", "200")),  # more for a long campaign
    deadline=timedelta(seconds=2),  # generous for a loaded machine; the bugs took minutes
    suppress_health_check=[HealthCheck.too_slow],
)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["ds", "gpu", "hbm", "switch", "bf16", "fp8", "value", "source", "1e400"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(SCALARS, inner, max_size=4),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into a document (mapping keys and list indices)."""
    out = [prefix]
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return out
    for key, child in items:
        out += _paths(child, (*prefix, key))
    return out


def _mutate(doc: Any, path: tuple[Any, ...], op: str, value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if op == "delete":
        del parent[key]
    elif op == "add" and isinstance(parent, dict):
        parent[f"{key}_extra"] = value
    else:
        parent[key] = value
    return doc


def _check_error(error: ValueError, where: str) -> None:
    msg = str(error)
    assert msg.startswith(where), msg
    assert "\n" not in msg and len(msg) < 500, msg[:600]


@FUZZ
@given(st.data())
def test_mutated_hardware_documents(data: st.DataObject) -> None:
    doc = copy.deepcopy(TOY_DOC)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(doc)))
        op = data.draw(st.sampled_from(["replace", "delete", "add"]))
        doc = _mutate(doc, path, op, data.draw(VALUES))
    try:
        hw = hardware_from_dict(doc, where="fuzz.yaml")
    except ValueError as error:
        _check_error(error, "fuzz.yaml")
    else:
        assert isinstance(hw, Hardware)


_names = itertools.count()


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-hw")


@FUZZ
@given(
    edits=st.lists(
        st.tuples(
            st.integers(0, len(TOY_TEXT)),
            st.integers(0, 8),
            st.text(alphabet=st.sampled_from(list(":-[]{}&*!|>'\"#,\n\t x1.e")), max_size=6),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mangled_hardware_files(fuzz_dir: Path, edits: list[tuple[int, int, str]]) -> None:
    text = TOY_TEXT
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut :]
    path = fuzz_dir / f"mangled-{next(_names)}.yaml"  # a new name: the loader caches by path
    path.write_text(text)
    try:
        hw = load_hardware(path)
    except ValueError as error:
        _check_error(error, path.name)
    else:
        assert isinstance(hw, Hardware)


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_as_a_hardware_file(fuzz_dir: Path, raw: bytes) -> None:
    path = fuzz_dir / f"raw-{next(_names)}.yaml"
    path.write_bytes(raw)
    with pytest.raises(ValueError) as info:
        load_hardware(path)
    _check_error(info.value, path.name)


DESIGN: dict[str, Any] = {
    "systolic_rows": 128,
    "systolic_cols": 256,
    "num_arrays": 8,
    "clock_hz": 1.5e9,
    "sram_bytes": 128e6,
    "sram_bytes_per_s": 50e12,
    "memory_tech": "hbm3e",
    "memory_stacks_or_channels": 6,
}
OPTIONAL = ["vector_lanes", "sram_pj_per_byte", "pj_per_flop", "tdp_w", "idle_w"]


@FUZZ
@given(
    changes=st.dictionaries(
        st.sampled_from([*DESIGN, *OPTIONAL, "format_multipliers"]),
        st.one_of(
            SCALARS,
            st.integers(1, 10**400),
            st.floats(min_value=0, allow_infinity=True),
            st.dictionaries(st.sampled_from(["bf16", "fp8", "fp4", "fp12", "int8"]), SCALARS),
        ),
        max_size=4,
    )
)
def test_fuzzed_accelerator_designs(changes: dict[str, Any]) -> None:
    from quarch.hardware import accelerator

    try:
        hw = accelerator(**(DESIGN | changes))
    except ValueError as error:
        _check_error(error, "accelerator")
    else:
        assert isinstance(hw, Hardware)
