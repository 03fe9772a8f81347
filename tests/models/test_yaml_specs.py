"""Model YAML files go through the bounded YAML reader (quarch/_yaml.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from quarch.models import list_models, load_model_spec


def test_a_billion_laughs_model_file_is_refused_fast(tmp_path: Path) -> None:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 10)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"laughs\.yaml: YAML expands to more than") as info:
        load_model_spec(path)
    assert time.perf_counter() - t0 < 1.0 and len(str(info.value)) < 200


def test_a_broken_model_file_names_the_position_not_the_content(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("hidden_size: 64\nsecret_value: [s3cr3t-t0ken\n")
    with pytest.raises(ValueError, match=r"broken\.yaml: not valid YAML \(line 3") as info:
        load_model_spec(path)
    assert "s3cr3t" not in str(info.value)


def test_catalog_still_reads() -> None:
    names = list_models()
    assert names and load_model_spec(names[0]).name


def test_a_config_json_is_bounded_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from quarch import _yaml

    deep = tmp_path / "config.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"config\.json: JSON nested too deeply"):
        load_model_spec(deep)
    monkeypatch.setattr(_yaml, "MAX_YAML_BYTES", 1000)
    big = tmp_path / "big" / "config.json"
    big.parent.mkdir()
    big.write_text('{"model_type": "llama", "pad": "' + "x" * 2000 + '"}')
    with pytest.raises(ValueError, match=r"config\.json: 2\d{3} bytes; a file may be at most 1000"):
        load_model_spec(big.parent)
