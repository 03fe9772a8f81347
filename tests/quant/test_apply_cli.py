"""`quarch quantize` and `quarch sensitivity` end to end on a tiny LLaMA saved to disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quarch.cli import app
from quarch.models import tiny_llama
from quarch.quant import QuantConfig, Role
from quarch.quant._cli import config_from_options, parse_method_params


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny")
    loaded = tiny_llama(seed=0)
    loaded.model.save_pretrained(path)
    loaded.tokenizer.save_pretrained(path)
    return path


def test_method_params_and_config_options(tmp_path: Path) -> None:
    assert parse_method_params(["block_size=64", "percdamp=0.05", "act_order=true"]) == {
        "block_size": 64,
        "percdamp": 0.05,
        "act_order": True,
    }
    with pytest.raises(ValueError, match="key=value"):
        parse_method_params(["block_size"])
    cfg = config_from_options(
        config=None, weights="int4_g128", kv="int8", method="gptq", method_params=["percdamp=0.05"]
    )
    assert cfg.default[Role.WEIGHT].params == {"percdamp": 0.05}
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert config_from_options(config=path, weights=None) == cfg
    with pytest.raises(ValueError, match="not both"):
        config_from_options(config=path, weights="int8")
    with pytest.raises(ValueError, match="at least one"):
        config_from_options(config=None, weights=None)


def test_quantize_writes_a_reproducible_record(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    args = [
        "quantize", "--model", str(model_dir), "--weights", "int4_g32", "--kv", "int8",
        "--method", "gptq", "--method-param", "percdamp=0.02", "--calib-samples", "4",
        "--calib-seqlen", "64", "--eval-seqlen", "64", "--eval-windows", "2", "--baseline",
        "--json", "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert json.loads(result.stdout) == record  # --json prints the one record
    cfg = QuantConfig.from_dict(record["quantization"]["config"])
    assert cfg == QuantConfig.uniform(weights="int4_g32", kv="int8", method="gptq", percdamp=0.02)
    assert record["calibration"]["samples"] == 4 and record["calibration"]["used"]
    assert record["quantization"]["calibration"].startswith("block-sequential")
    assert record["perplexity"]["num_windows"] == 2
    assert len(record["perplexity"]["text_sha256"]) == 64
    assert record["versions"]["torch"]
    # int4_g32 with fp32 scales = 5 bits (docs/formats.md); LM head untouched
    assert record["quantization"]["bits_per_weight"] == pytest.approx(5.0)
    assert record["ppl_ratio"] == pytest.approx(record["perplexity"]["ppl"] / record["float_ppl"])
    # calibrated on the mix of calibration domains, measured on each evaluation domain
    assert record["calibration"]["text_name"] == "devil+jargon+wordnet:calibration"
    domains = record["domains"]
    assert list(domains) == ["python-reference", "kjv"]
    assert domains["python-reference"]["ppl"] == record["perplexity"]["ppl"]
    kjv = domains["kjv"]
    assert kjv["text_name"] == "kjv:eval" and kjv["num_windows"] == 2
    assert kjv["ppl_ratio"] == pytest.approx(kjv["ppl"] / kjv["float_ppl"])


def test_quantize_reports_user_errors(model_dir: Path) -> None:
    result = CliRunner().invoke(app, ["quantize", "--model", str(model_dir), "--weights", "int5x"])
    assert result.exit_code == 2
    assert "unknown format 'int5x'" in result.output


def test_sensitivity_verb(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "table.json"
    args = [
        "sensitivity", "--model", str(model_dir), "--weights", "int3", "--windows", "2",
        "--seqlen", "64", "--additivity", "2", "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "sensitivity: weight → int3" in result.output  # the table, not JSON
    record = json.loads(out.read_text())
    groups = [e["group"] for e in record["table"]["entries"]]
    assert groups == [f"model.layers.{i}.{g}" for i in (0, 1) for g in ("self_attn", "mlp")]
    assert len(record["additivity"]["points"]) == 2


def test_sensitivity_json_prints_one_record(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "table.json"
    args = [
        "sensitivity", "--model", str(model_dir), "--format", "int4", "--role", "k_cache",
        "--windows", "1", "--seqlen", "32", "--json", "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record == json.loads(out.read_text())
    assert record["table"]["role"] == "k_cache" and len(record["table"]["entries"]) == 2
    bad = CliRunner().invoke(app, [*args[:5], "--role", "bias", "--json"])
    assert bad.exit_code == 2 and "unknown tensor role 'bias'" in bad.output


def test_quantize_bfloat16_on_cpu_and_a_missing_gpu(model_dir: Path) -> None:
    import torch

    args = [
        "quantize", "--model", str(model_dir), "--weights", "int8", "--acts", "fp8_e4m3_c",
        "--eval-seqlen", "64", "--eval-windows", "2", "--baseline", "--json",
    ]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--dtype", "bfloat16"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert (record["model"]["dtype"], record["model"]["device"]) == ("bfloat16", "cpu")
    assert abs(record["ppl_ratio"] - 1) < 0.1  # 8-bit weights and inputs, bf16 arithmetic
    default = json.loads(CliRunner().invoke(app, args).stdout)
    assert default["model"]["dtype"] == "float32"  # the CPU default
    if not torch.cuda.is_available():
        result = CliRunner().invoke(app, [*args, "--device", "cuda"])
        assert result.exit_code == 2 and "not available" in result.output
