"""SIGKILL at every write of every verb that writes outputs; after each kill no file under its
final name is partial, and the next run completes (issue 15, "SIGKILL at any moment").

The moments are the verb's own file-system writes under its output directory (each open for
writing and each rename, counted by an audit hook, see `killer.py`), killed at once or a few
milliseconds into the write. Each verb runs once clean to count its writes, then once killed at
each of them (a random sample where there are many: `QUARCH_CHAOS_KILLS` caps it), then once
more clean, which must complete. All slow: each run starts a Python with torch.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from integrity import problems

KILLER = Path(__file__).with_name("killer.py")
REPO = Path(__file__).resolve().parents[2]
MAX_KILLS = int(os.environ.get("QUARCH_CHAOS_KILLS", "12"))
pytestmark = pytest.mark.slow


def _run(watch: Path, kill_at: int, delay_ms: float, args: list[str], tmp: Path) -> tuple[int, int]:
    """(exit code, writes counted) of one run of `quarch ARGS` killed at write `kill_at`."""
    counts = tmp / "counts"  # outside every watched directory
    counts.mkdir(exist_ok=True)
    count = counts / f"count-{kill_at}-{random.random()}"
    done = subprocess.run(
        [sys.executable, str(KILLER), str(watch), str(kill_at), str(delay_ms), str(count), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"},
    )
    if kill_at == 0:
        assert done.returncode == 0, done.stderr[-3000:]
    else:
        assert done.returncode in (0, -9), done.stderr[-3000:]
    return done.returncode, int(count.read_text()) if count.exists() else -1


def kill_everywhere(
    args: list[str], watch: Path, tmp: Path, *, seed: int = 0, max_kills: int = MAX_KILLS
) -> dict[str, Any]:
    """Run `args` clean, killed at each write (up to MAX_KILLS of them), then clean again;
    assert the outputs under `watch` are whole after every run. Returns the counts."""
    rng = random.Random(seed)
    _, writes = _run(watch, 0, 0, args, tmp)
    assert writes > 0, "the verb wrote nothing under its output directory"
    moments = list(range(1, writes + 1))
    if len(moments) > max_kills:
        moments = sorted(rng.sample(moments, max_kills))
    killed = 0
    for k in moments:
        rc, _ = _run(watch, k, rng.choice([0, 0, 1, 5, 20]), args, tmp)
        killed += rc == -9
        assert problems(watch) == [], f"after a kill at write {k} of {writes}"
    _run(watch, 0, 0, args, tmp)
    assert problems(watch) == []
    counts = {"writes": writes, "kills": killed, "moments": len(moments)}
    print(f"chaos {args[0]}: {counts}")  # the README's figures (pytest -s shows them)
    return counts


STUDY = {
    "name": "chaos",
    "model": "tiny-llama",
    "scenarios": [{"name": "serve", "batch": 4, "prompt_len": 128, "output_len": 32}],
    "hardware": {"devices": ["h100-sxm"]},
    "space": {"groups": 2, "weight": ["float", "int8", "mxfp4"], "act": ["float"], "kv": ["float"]},
    "objectives": ["ppl", "tpot", "memory"],
    "search": {"trials": 6, "population": 4},
    "accuracy": {
        "eval_seqlen": 64,
        "eval_windows": 2,
        "sensitivity_seqlen": 48,
        "sensitivity_windows": 2,
        "max_final_points": 3,
    },
}


def _complete_trials(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return int(
            con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
        )


def _consistent(out: Path) -> None:
    """result.json names configs that exist, and configs/ holds no config of another front."""
    result = json.loads((out / "result.json").read_text())
    named = {(out / p["config"]).resolve() for p in result["points"] if p.get("config")}
    assert all(p.is_file() for p in named)
    assert {p.resolve() for p in (out / "configs").glob("*.yaml")} == named
    assert json.loads((out / "front.json").read_text())  # and the tables are there, whole
    assert (out / "report.html").is_file()


@pytest.fixture(scope="module")
def study_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import yaml

    path = tmp_path_factory.mktemp("chaos-study") / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    return path


def test_explore_killed_at_its_writes_resumes_to_exactly_n_trials(
    tmp_path: Path, study_file: Path
) -> None:
    out = tmp_path / "out"
    args = ["explore", str(study_file), "--out", str(out), "--quiet"]
    counts = kill_everywhere(args, out, tmp_path)
    assert counts["kills"] >= 1
    assert _complete_trials(out / "study.db") == STUDY["search"]["trials"]
    _consistent(out)
    # a fresh study killed at each of its first writes, each time resumed by the next run
    fresh = tmp_path / "fresh"
    for k in range(1, 4):
        _run(fresh, k, 0, ["explore", str(study_file), "--out", str(fresh), "--quiet"], tmp_path)
        assert problems(fresh) == []
    _run(fresh, 0, 0, ["explore", str(study_file), "--out", str(fresh), "--quiet"], tmp_path)
    assert _complete_trials(fresh / "study.db") == STUDY["search"]["trials"]
    _consistent(fresh)


def test_report_and_roofline_killed_at_their_writes(tmp_path: Path, study_file: Path) -> None:
    out = tmp_path / "out"
    _run(out, 0, 0, ["explore", str(study_file), "--out", str(out), "--quiet"], tmp_path)
    kill_everywhere(["report", str(out)], out, tmp_path)
    roof = tmp_path / "roof"
    kill_everywhere(
        ["roofline", "--model", "llama-3.1-8b", "--hw", "h100-sxm", "--out", str(roof), "--no-png"],
        roof,
        tmp_path,
    )
    assert (roof / "roofline.html").is_file()


@pytest.fixture(scope="module")
def tiny_checkpoint(
    tmp_path_factory: pytest.TempPathFactory, study_file: Path
) -> tuple[Path, Path]:
    """A tiny HF checkpoint (quantize and sensitivity read a model directory) and a config."""
    root = tmp_path_factory.mktemp("chaos-ckpt")
    config = root / "w-int8.yaml"
    config.write_text("rules:\n- {pattern: 're:.*', role: weight, format: int8}\n")
    ckpt = root / "tiny"
    args = ["export", "--to", "hf", "--model", "tiny-llama", "--config", str(config)]
    _run(ckpt, 0, 0, [*args, "--out", str(ckpt)], root)
    return ckpt, config


def test_export_killed_at_its_writes(tmp_path: Path, tiny_checkpoint: tuple[Path, Path]) -> None:
    _, config = tiny_checkpoint
    base = ["export", "--model", "tiny-llama", "--config", str(config)]
    out = tmp_path / "x" / "hf"  # the checkpoint is staged next to it, under x
    kill_everywhere([*base, "--to", "hf", "--out", str(out)], out.parent, tmp_path)
    assert (out / "quarch_export.json").is_file() and (out / "model.safetensors").is_file()
    gguf_out = tmp_path / "g"
    q8 = tmp_path / "q8.yaml"  # GGUF stores its own block types only
    q8.write_text("rules:\n- {pattern: 're:.*', role: weight, format: q8_0}\n")
    gguf_args = ["export", "--model", "tiny-llama", "--config", str(q8), "--to", "gguf"]
    kill_everywhere([*gguf_args, "--out", str(gguf_out / "m.gguf")], gguf_out, tmp_path)
    assert (gguf_out / "m.gguf").is_file()


def test_quantize_and_sensitivity_killed_at_their_writes(
    tmp_path: Path, tiny_checkpoint: tuple[Path, Path]
) -> None:
    ckpt, _ = tiny_checkpoint
    out = tmp_path / "records"
    small = ["--model", str(ckpt), "--dtype", "float32"]
    kill_everywhere(
        [
            "quantize",
            *small,
            "--weights",
            "int4",
            "--eval-seqlen",
            "32",
            "--eval-windows",
            "2",
            "--out",
            str(out / "q.json"),
        ],
        out,
        tmp_path,
    )
    kill_everywhere(
        [
            "sensitivity",
            *small,
            "--weights",
            "int4",
            "--windows",
            "1",
            "--seqlen",
            "32",
            "--out",
            str(out / "s.json"),
        ],
        out,
        tmp_path,
    )
    assert json.loads((out / "q.json").read_text()) and json.loads((out / "s.json").read_text())


def test_calibrate_killed_at_its_write(tmp_path: Path) -> None:
    out = tmp_path / "hw"
    args = ["calibrate", "--quick", "--threads", "1", "--out", str(out / "local.yaml")]
    out.mkdir()
    counts = kill_everywhere(args, out, tmp_path, max_kills=1)
    assert counts["writes"] >= 2  # the temporary's open and its rename
