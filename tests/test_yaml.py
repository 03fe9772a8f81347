"""The bounded YAML reader every user file goes through (quarch/_yaml.py, issue 15)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from quarch import _yaml
from quarch._yaml import MAX_YAML_BYTES, MAX_YAML_NODES, load_yaml_file, load_yaml_text


def _laughs(levels: int, width: int = 10) -> str:
    """The "billion laughs" document: each level lists `width` aliases of the one before."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def _refused(text: str) -> str:
    t0 = time.perf_counter()
    with pytest.raises(ValueError) as info:
        load_yaml_text(text, where="doc.yaml")
    assert time.perf_counter() - t0 < 2.0
    msg = str(info.value)
    assert msg.startswith("doc.yaml: ") and "\n" not in msg and len(msg) < 200, msg
    return msg


def test_billion_laughs_is_refused_by_expanded_size() -> None:
    text = _laughs(9)  # 10^10 leaves from < 1 kB
    assert len(text) < 1024
    assert "expands to more than" in _refused(text)


def test_aliases_within_the_bound_are_read() -> None:
    doc = load_yaml_text(_laughs(3))  # 10^4 leaves
    assert len(doc["l3"]) == 10 and doc["l3"][0] is doc["l2"]
    merged = load_yaml_text("a: &x {k: 1}\nb:\n  <<: *x\n  d: 2\n")
    assert merged == {"a": {"k": 1}, "b": {"k": 1, "d": 2}}


def test_expanded_size_counts_every_node_once_per_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_yaml, "MAX_YAML_NODES", 1 + 10 * (1 + 10) + 5)
    load_yaml_text("[" + ", ".join(["&a [1,2,3,4,5,6,7,8,9,10]"] + ["*a"] * 9) + "]")
    monkeypatch.setattr(_yaml, "MAX_YAML_NODES", 1 + 10 * (1 + 10) - 1)
    with pytest.raises(ValueError, match="expands to more than"):
        load_yaml_text("[" + ", ".join(["&a [1,2,3,4,5,6,7,8,9,10]"] + ["*a"] * 9) + "]")


def test_self_referencing_alias_is_refused() -> None:
    assert "refers to itself" in _refused("a: &a [1, *a]\n")


def test_deep_nesting_is_a_value_error() -> None:
    _refused("[" * 20_000 + "]" * 20_000)


def test_syntax_errors_give_position_and_reason_not_the_line() -> None:
    secret = "correct-horse-battery-staple"
    msg = _refused(f"ok: 1\nkey: [{secret}\n")
    assert secret not in msg and "line" in msg


def test_only_safe_tags_and_one_document() -> None:
    _refused("x: !!python/object/apply:os.system ['true']\n")
    _refused("a: 1\n---\nb: 2\n")


def test_file_size_is_checked_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (MAX_YAML_BYTES + 1))
    with pytest.raises(ValueError, match=rf"^big\.yaml: {MAX_YAML_BYTES + 1} bytes"):
        load_yaml_file(path)


def test_non_utf8_and_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(ValueError, match=r"^bin\.yaml: not UTF-8 text \(bad byte at offset 3\)$"):
        load_yaml_file(path)
    with pytest.raises(ValueError, match=r"^gone\.yaml: cannot read"):
        load_yaml_file(tmp_path / "gone.yaml")


def test_ordinary_documents_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("name: x\nvalues: [1, 2.5, true, null]\nnested: {a: [b, c]}\n")
    assert load_yaml_file(path) == {
        "name": "x",
        "values": [1, 2.5, True, None],
        "nested": {"a": ["b", "c"]},
    }
    assert load_yaml_text("") is None
    assert MAX_YAML_NODES >= 100_000
