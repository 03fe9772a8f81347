"""`quarch eval` end to end on the tiny model saved as an HF directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from quarch.eval._cli import register
from quarch.models import LoadedModel

TEXT = "A command line interface is a thin shell over the Python API. " * 12


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so the verb is invoked by name as in `quarch eval`
    register(app)
    return app


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny: LoadedModel) -> Path:
    folder = tmp_path_factory.mktemp("tiny-hf")
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder


def test_eval_json(app: typer.Typer, model_dir: Path, tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    args = ["eval", "--model", str(model_dir), "--text-file", str(text), "--seqlen", "64"]
    result = CliRunner().invoke(app, [*args, "--max-windows", "5", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    ppl = record["perplexity"]
    assert (ppl["seqlen"], ppl["num_windows"], ppl["num_tokens"]) == (64, 5, 315)
    assert ppl["text_name"] == str(text) and ppl["protocol"] == "gptq-nonoverlap"
    assert record["model"]["kind"] == "hf-dir" and record["model"]["dtype"] == "float32"
    assert {"python", "torch", "transformers", "quarch"} <= set(record["versions"])


def test_eval_table(app: typer.Typer, model_dir: Path, tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    args = ["eval", "--model", str(model_dir), "--text-file", str(text), "--seqlen", "128"]
    result = CliRunner().invoke(app, [*args, "--dtype", "bfloat16"])
    assert result.exit_code == 0, result.output
    assert "perplexity" in result.stdout and "128 × 5" in result.stdout


def test_eval_bfloat16_on_cpu_and_missing_gpu(
    app: typer.Typer, model_dir: Path, tmp_path: Path
) -> None:
    import torch

    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    args = ["eval", "--model", str(model_dir), "--text-file", str(text), "--seqlen", "64"]
    runs = {}
    for dtype in ("float32", "bfloat16"):
        result = CliRunner().invoke(
            app, [*args, "--max-windows", "3", "--device", "cpu", "--dtype", dtype, "--json"]
        )
        assert result.exit_code == 0, result.output
        runs[dtype] = json.loads(result.stdout)
    assert runs["bfloat16"]["model"]["dtype"] == "bfloat16"
    assert runs["bfloat16"]["model"]["device"] == "cpu"
    f32, b16 = (runs[d]["perplexity"]["ppl"] for d in ("float32", "bfloat16"))
    assert abs(b16 / f32 - 1) < 0.05  # bf16 weights and arithmetic: close, not equal
    if not torch.cuda.is_available():
        result = CliRunner().invoke(app, [*args, "--device", "cuda"])
        assert result.exit_code == 2 and "not available" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dtype", "int8"], "unknown dtype 'int8'"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--dataset", "wikitext-2-raw-v1"], "not both"),
        (["--seqlen", "100000"], "fewer than one window"),
    ],
)
def test_eval_errors(
    app: typer.Typer, model_dir: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    args = ["eval", "--model", str(model_dir), "--text-file", str(text), *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_eval_reports_every_evaluation_domain(app: typer.Typer, model_dir: Path) -> None:
    args = ["eval", "--model", str(model_dir), "--seqlen", "32", "--max-windows", "2"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    domains = record["domains"]
    assert list(domains) == ["python-reference", "kjv"]
    assert domains["kjv"]["text_name"] == "kjv:eval" and domains["kjv"]["num_windows"] == 2
    assert domains["python-reference"] == record["perplexity"]  # the first is the headline
    assert domains["kjv"]["text_sha256"] != record["perplexity"]["text_sha256"]
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "perplexity (kjv)" in table.stdout and "perplexity (python-reference)" in table.stdout
