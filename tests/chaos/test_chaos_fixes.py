"""The root causes of issue 15 fixed alongside the atomic outputs: each one as the user met it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quarch.cli import app
from quarch.models import load_model_spec
from quarch.perf import Scenario
from quarch.perf._scenario import check_context
from quarch.search import build_space, layout_from_spec, study_from_dict
from quarch.search._config import design_config
from quarch.search._outputs import CONFIG_HEAD, prune_configs
from quarch.search._runner import SEED_LIMIT, make_sampler
from quarch.search._storage_policy import check_storage

# ---- search.storage from a study file stays inside the output directory -----------------


def test_a_study_files_storage_inside_the_output_directory_is_used(tmp_path: Path) -> None:
    out = tmp_path / "out"
    check_storage(None, out, trusted=False)
    check_storage(f"sqlite:///{out / 'study.db'}", out, trusted=False)
    check_storage(f"sqlite:///{out / 'sub' / 'x.db'}", out, trusted=False)
    check_storage(":memory:", out, trusted=False)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////tmp/unrelated.db",
        "sqlite:///relative-to-the-working-directory.db",
        "sqlite:///OUT/../escape.db",
        "sqlite:///file:OUT/study.db?uri=true",
        "postgresql://user:secret@db.example/optuna",
    ],
)
def test_a_study_files_storage_elsewhere_is_refused(tmp_path: Path, url: str) -> None:
    out = tmp_path / "out"
    url = url.replace("OUT", str(out))
    with pytest.raises(ValueError, match=r"^search\.storage: .* --allow-storage$"):
        check_storage(url, out, trusted=False)
    check_storage(url, out, trusted=True)  # given on the command line: the user's choice


@pytest.mark.parametrize(
    ("url", "error"),
    [("x://", ValueError), ("not a url", ValueError), ("mysql://nowhere/x", ImportError)],
)
def test_a_storage_no_driver_opens_is_refused_even_from_the_command_line(
    tmp_path: Path, url: str, error: type
) -> None:
    with pytest.raises(error, match=r"^search\.storage: "):
        check_storage(url, tmp_path, trusted=True)


def test_a_symlink_out_of_the_output_directory_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "study.db").symlink_to(tmp_path / "elsewhere.db")
    with pytest.raises(ValueError, match=r"search\.storage"):
        check_storage(f"sqlite:///{out / 'study.db'}", out, trusted=False)


def test_explore_refuses_a_study_files_storage_before_any_work(tmp_path: Path) -> None:
    study = tmp_path / "study.yaml"
    victim = tmp_path / "victim.db"
    victim.write_bytes(b"")
    study.write_text(f"model: tiny-llama\nsearch: {{storage: 'sqlite:///{victim}'}}\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["explore", str(study), "--out", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "search.storage" in result.stderr and "--allow-storage" in result.stderr
    assert victim.read_bytes() == b"" and not out.exists()


# ---- seeds ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "error"),
    [
        (1.9, TypeError),
        (True, TypeError),
        (-1, ValueError),
        (2**32, ValueError),
        (10**40, ValueError),
    ],
)
def test_a_seed_that_is_no_sampler_seed_is_refused(seed: object, error: type) -> None:
    with pytest.raises(error, match=r"search\.seed"):
        study_from_dict({"search": {"seed": seed}})


def test_a_seed_near_the_top_resumes(tmp_path: Path) -> None:
    spec = study_from_dict({"search": {"seed": SEED_LIMIT - 1}, "space": {"groups": 2}})
    space = build_space(spec, layout_from_spec(load_model_spec("smollm2-135m")))
    for offset in (0, 1, 1000 * 3 + 996):  # a first run, a resume, a worker
        make_sampler(spec.search, space, seed_offset=offset)


# ---- the float reference when no group may choose float weights ----------------------------


def test_a_space_without_float_weights_still_measures_the_float_reference() -> None:
    spec = study_from_dict({"space": {"groups": 2, "weight": ["int4_g128", "nvfp4"]}})
    space = build_space(spec, layout_from_spec(load_model_spec("smollm2-135m")))
    name, design = space.baselines()[0]
    assert name == "float"
    config = design_config(space, design)
    assert all(rule.format is None or str(rule.format) == "float" for rule in config.rules) or (
        not config.rules
    )
    for g in space.groups:  # and float is still no search choice
        assert "float" not in g.weight


# ---- a prompt longer than the model's context ----------------------------------------------


def test_a_prompt_beyond_the_context_is_refused() -> None:
    spec = load_model_spec("llama-3.1-8b")
    check_context(spec, Scenario(prompt_len=spec.max_position_embeddings - 1, output_len=1))
    with pytest.raises(ValueError, match=r"exceed Llama-3\.1-8B's context of 131072 tokens"):
        check_context(spec, Scenario(prompt_len=10**9, output_len=128))
    result = CliRunner().invoke(
        app, ["predict", "--model", "llama-3.1-8b", "--hw", "h100-sxm", "--prompt", str(10**9)]
    )
    assert result.exit_code == 2 and result.stderr.startswith("error: prompt 1000000000 + output")


# ---- configs of earlier fronts -------------------------------------------------------------


def test_prune_configs_removes_only_quarchs_configs_of_other_fronts(tmp_path: Path) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    for name in ("kept.yaml", "old-front.yaml"):
        (folder / name).write_text(f"{CONFIG_HEAD}'s', model m\nrules: []\n")
    (folder / "mine.yaml").write_text("# my own notes\nrules: []\n")
    removed = prune_configs(tmp_path, {"k": "configs/kept.yaml"})
    assert [p.name for p in removed] == ["old-front.yaml"]
    assert sorted(p.name for p in folder.iterdir()) == ["kept.yaml", "mine.yaml"]


# ---- an output that cannot be written stops a verb before its work --------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["quantize", "--weights", "int4"],
        ["sensitivity", "--weights", "int4"],
        ["calibrate", "--quick"],
        ["export", "--to", "hf", "--model", "tiny-llama", "--config", "CONFIG"],
        ["export", "--to", "gguf", "--model", "tiny-llama", "--config", "CONFIG"],
        ["roofline", "--model", "llama-3.1-8b", "--hw", "h100-sxm", "--no-png"],
        ["explore", "--model", "tiny-llama"],
    ],
    ids=lambda a: "-".join(a[:2]),
)
def test_an_unwritable_output_stops_the_verb_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    import quarch.measure._calibrate as calibrate_module
    import quarch.models as models
    import quarch.search._explore as explore_module

    def no_work(*_a: object, **_k: object) -> None:
        raise AssertionError("the verb started its work before checking its output")

    for module, name in (
        (models, "load_model"),
        (models, "tiny_model"),
        (calibrate_module, "calibrate"),
        (explore_module, "load_study_model"),
    ):
        monkeypatch.setattr(module, name, no_work)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output's directory should be")
    config = tmp_path / "c.yaml"
    config.write_text("rules:\n- {pattern: 're:.*', role: weight, format: int8}\n")
    out = str(blocker / ("x.json" if args[0] in ("quantize", "sensitivity") else "out"))
    args = [a.replace("CONFIG", str(config)) for a in args]
    result = CliRunner().invoke(app, [*args, "--out", out])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --out "), result.stderr
    assert "not a writable directory" in lines[0] or "not a directory" in lines[0]


def test_a_full_disk_or_refused_write_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    from quarch._cli_util import user_errors

    with pytest.raises(Exception) as caught, user_errors():
        raise OSError(28, os.strerror(28), str(tmp_path / "report.html"))
    assert type(caught.value).__name__ == "Exit"


# ---- a refused re-run leaves the study directory as it was ----------------------------------


@pytest.mark.slow
def test_a_refused_rerun_keeps_study_yaml_and_a_new_front_prunes_old_configs(
    tmp_path: Path,
) -> None:
    from quarch.search import explore

    out = tmp_path / "out"
    base = {
        "model": "tiny-llama",
        "space": {"groups": 2, "weight": ["float", "int8"], "act": ["float"], "kv": ["float"]},
        "objectives": ["ppl", "memory"],
        "search": {"trials": 3, "population": 2},
        "accuracy": {
            "eval_seqlen": 32,
            "eval_windows": 1,
            "sensitivity_seqlen": 32,
            "sensitivity_windows": 1,
            "max_final_points": 2,
        },
    }
    first = explore(study_from_dict(base), out, progress=False)
    before = (out / "study.yaml").read_text()
    other = {**base, "space": {**base["space"], "weight": ["float", "mxfp4"]}}
    with pytest.raises(ValueError, match="another design space"):
        explore(study_from_dict(other), out, progress=False)
    assert (out / "study.yaml").read_text() == before
    # the same study under another name in the same directory: a new front, old configs pruned
    second = explore(study_from_dict({**other, "name": "second"}), out, progress=False)

    def configs(result: object) -> set[Path]:
        paths = (result.config_path(p) for p in result.points)  # type: ignore[attr-defined]
        return {p.resolve() for p in paths if p is not None}

    assert {p.resolve() for p in (out / "configs").glob("*.yaml")} == configs(second)
    assert "second" in (out / "study.yaml").read_text()
    assert configs(first) != configs(second)
