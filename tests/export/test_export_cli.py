"""`quarch export` end to end: a config file, a front point of a finished study, bad input."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from quarch.cli import app

needs_ct = pytest.mark.skipif(
    find_spec("compressed_tensors") is None, reason="needs compressed-tensors (quarch[export])"
)

RUNNER = CliRunner()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random tiny LLaMA saved as an HF directory."""
    from quarch.models import tiny_llama

    out = tmp_path_factory.mktemp("tiny-llama")
    loaded = tiny_llama()
    loaded.model.save_pretrained(str(out))
    loaded.tokenizer.save_pretrained(str(out))
    return out


def _run(*args: str) -> Any:
    return RUNNER.invoke(app, ["export", *args])


@needs_ct
def test_export_config_file_to_compressed_tensors(tmp_path: Path, tiny_dir: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "default:\n  weight: {format: int4_g32}\n  k_cache: fp8_e4m3\n  v_cache: fp8_e4m3\n"
    )
    out = tmp_path / "ct"
    result = _run(
        "--model",
        str(tiny_dir),
        "--config",
        str(cfg),
        "--to",
        "compressed-tensors",
        "--out",
        str(out),
        "--json",
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["target"] == "compressed-tensors"
    assert record["schemes"] == {"linear: weight=int4_g32, input=float": 14}
    assert record["kv_cache"]["k_cache"] == {"fp8_e4m3": 2}
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["format"] == "pack-quantized" and qc["kv_cache_scheme"]["type"] == "float"


@needs_ct
def test_export_bad_input_is_one_error_line(tmp_path: Path, tiny_dir: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("default:\n  weight: {format: nf4}\n")
    cases = [
        (["--config", str(cfg), "--to", "compressed-tensors"], "nearest supported: int4_g64"),
        (["--config", str(cfg), "--to", "ggml"], "unknown export target 'ggml'"),
        (["--to", "hf"], "give --config FILE, or --front"),
        (["--config", str(cfg), "--point", "x", "--to", "hf"], "--point is for --front"),
        (["--front", str(tmp_path), "--point", "x", "--to", "hf"], "no finished study"),
    ]
    for args, message in cases:
        result = _run("--model", str(tiny_dir), *args, "--out", str(tmp_path / "o"))
        assert result.exit_code == 2, (args, result.output)
        assert "error:" in result.output and message in result.output.replace("\n", " ")


def test_export_front_point(tmp_path: Path) -> None:
    """A design of a finished `quarch explore` (its front point's config) exports to hf."""
    from quarch.search import explore, study_from_dict

    study = {
        "name": "tiny-export",
        "model": "tiny-llama",
        "scenarios": [{"name": "serve", "batch": 4, "prompt_len": 128, "output_len": 32}],
        "space": {"groups": 2, "weight": ["float", "int8"], "act": ["float"], "kv": ["float"]},
        "search": {"trials": 6, "population": 3},
        "accuracy": {
            "eval_seqlen": 64,
            "eval_windows": 2,
            "sensitivity_seqlen": 48,
            "sensitivity_windows": 2,
            "max_final_points": 2,
        },
    }
    result = explore(study_from_dict(study), tmp_path / "study", progress=False)
    point = result.front_points[0]
    out = tmp_path / "hf"
    run = _run(
        "--front",
        str(tmp_path / "study"),
        "--point",
        point.name,
        "--to",
        "hf",
        "--out",
        str(out),
        "--json",
    )
    assert run.exit_code == 0, run.output
    record = json.loads(run.stdout)
    from quarch.quant import QuantConfig

    assert QuantConfig.from_dict(record["config"]) == QuantConfig.load(
        str(tmp_path / "study" / str(point.config))
    )
    assert (out / "model.safetensors").is_file()
