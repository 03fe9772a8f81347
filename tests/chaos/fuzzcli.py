"""Generated bad inputs over every `quarch` verb, run in-process through typer's `CliRunner`,
counted by outcome.

Each case is one verb with cheap valid arguments and one field made bad: a hostile or clumsy
value for an option (wrong type, out of range, huge, negative, markup, control characters, a
path to nothing, to a directory, to a file of garbage), or a damaged input file (study,
hardware, QuantConfig, model weights, a study's result). Every case must end in one of

- `refused`: exit code 2 and one `error: ...` line on stderr (the clean refusal);
- `usage`: click's own usage error (exit 2, `Usage:` / `Error` box) for a malformed option;
- `accepted`: exit 0 (the value was fine after all: e.g. a long but valid name);

and never in `traceback` (any other exception, or another exit code), `hang` (over the time
limit) or `echo` (the content of a file that is no input of ours printed back).

Usage: `python tests/chaos/fuzzcli.py N [SEED [PROGRESS_FILE]]` prints the counts as JSON (and
stores them in PROGRESS_FILE every 100 cases).
"""

from __future__ import annotations

import json
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOSTILE_STRINGS = [
    "",
    " ",
    "-1",
    "0",
    "1e999",
    "nan",
    "inf",
    "9" * 40,
    "-" + "9" * 30,
    "x" * 5000,
    "[/x]",
    "[red]a[/red]",
    "a[/x].yaml",
    "\x00",
    "\x1b[31m",
    "é\u202e",
    "../../../../etc/passwd",
    "/dev/zero",
    "/proc/self/mem",
    "e1234567890m3",
    "int8_g40000000",
    "e9m9",
    "int999",
    "int4_g0",
    "mxfp4_b0x0",
    "cb[" + ",".join(["1"] * 3000) + "]",
    "fp8_e4m3_s" + "e8m0" * 50,
    "nvfp4,,,,",
    "float,float",
    "h100-sxm,h100-sxm",
    "tiny-nonexistent",
    "sqlite:////etc/x.db",
    "postgresql://u:p@127.0.0.1:1/x",
    "{a: 1}",
    "*alias",
    "%s%s%n",
    "None",
]
SECRET = "hunter2-do-not-print"
"""The password in the fuzzer's `secret.txt`: no message may print it."""
ENV = {"COLUMNS": "200", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
HOSTILE_INTS = ["-1", "0", "-99999999999", "99999999999", str(2**64), "1.5", "abc", "", "1e3"]


@dataclass
class Files:
    """Damaged input files, made once per run in `root`."""

    root: Path
    paths: dict[str, Path] = field(default_factory=dict)

    def make(self) -> Files:
        r = self.root
        r.mkdir(parents=True, exist_ok=True)
        laughs = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
            f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        )
        texts = {
            "empty.yaml": "",
            "garbage.yaml": "\x00\x01\x02 not: [yaml",
            "list.yaml": "- 1\n- 2\n",
            "scalar.yaml": "42\n",
            "laughs.yaml": laughs,
            "deep.yaml": "[" * 5000 + "]" * 5000,
            "wrongtypes.yaml": "name: 5\nsearch: {trials: true, seed: 1.9}\nspace: {groups: x}\n",
            "study_bad_layers.yaml": "space:\n  groups:\n    - {layers: 0-99999999999}\n",
            "study_storage.yaml": "search: {storage: 'sqlite:////tmp/unrelated.db'}\n",
            "hw_partial.yaml": "name: x\nmemory: [{bytes: -1}]\n",
            "secret.txt": f"password={SECRET}\napi_key=SECRET\n",
            "config_bad.yaml": "rules: [{match: '*', weights: e99m99}]\n",
            "config_types.yaml": "rules: 5\nseed: true\n",
            "bad.json": "{not json",
            "notutf8.yaml": "",
        }
        for name, text in texts.items():
            (r / name).write_text(text, encoding="utf-8")
        (r / "notutf8.yaml").write_bytes(b"\xff\xfe\xfa name: \x80\n")
        rng = random.Random(0)
        (r / "random.gguf").write_bytes(b"GGUF" + rng.randbytes(2000))
        (r / "random.safetensors").write_bytes(rng.randbytes(2000))
        (r / "huge_header.safetensors").write_bytes((2**62).to_bytes(8, "little") + b"{}")
        (r / "truncated.safetensors").write_bytes(
            (60).to_bytes(8, "little")
            + b'{"w":{"dtype":"F32","shape":[100000,100000],"data_offsets":[0,4'
        )
        (r / "a_dir").mkdir(exist_ok=True)
        import numpy as np
        from safetensors.numpy import save_file

        small = {"w": np.ones((4, 64), np.float32), "b": np.ones(4, np.float32)}
        save_file(small, str(r / "small.safetensors"))
        study = r / "study_dir"
        study.mkdir(exist_ok=True)
        (study / "result.json").write_text('{"front": 5}', encoding="utf-8")
        bad_front = r / "front_dir"
        bad_front.mkdir(exist_ok=True)
        (bad_front / "result.json").write_text("[]", encoding="utf-8")
        (r / "blocker").write_text("a file where a directory is expected", encoding="utf-8")
        self.paths = {p.name: p for p in r.iterdir()}
        return self

    def any(self, rng: random.Random) -> str:
        choices = [*self.paths.values(), self.root / "missing.yaml", self.root / "blocker" / "x"]
        return str(rng.choice(choices))


Case = list[str]
Maker = Callable[[random.Random, Files], Case]


def _string(rng: random.Random, files: Files) -> str:
    return rng.choice(HOSTILE_STRINGS) if rng.random() < 0.8 else files.any(rng)


def _bad_int(rng: random.Random, _files: Files) -> str:
    return rng.choice(HOSTILE_INTS)


def _out(rng: random.Random, files: Files) -> str:
    """An output path that cannot be written: under a file, in /proc, under /dev/null."""
    return rng.choice(
        [str(files.root / "blocker" / "out"), "/proc/quarch-out", "/dev/null/x", "/proc/self/x"]
    )


def _out_file(rng: random.Random, files: Files) -> str:
    """`_out`, or a directory where an output file is expected."""
    return str(files.root / "a_dir") if rng.random() < 0.25 else _out(rng, files)


def _one_bad(
    rng: random.Random, files: Files, base: Case, fields: dict[str, Callable[..., str]]
) -> Case:
    name = rng.choice(list(fields))
    value = fields[name](rng, files)
    args = list(base)
    if name in args:  # replace the base's value of that option
        args[args.index(name) + 1] = value
    else:
        args += [name, value]
    return args


_PRED = ["--model", "llama-3.1-8b", "--hw", "h100-sxm"]
_SCEN = {
    "--batch": _bad_int,
    "--prompt": lambda r, f: r.choice([*HOSTILE_INTS, "1000000000", "131073"]),
    "--output": _bad_int,
    "--tp": _bad_int,
    "--pp": _bad_int,
    "--ep": _bad_int,
    "--dp": _bad_int,
    "--weights": _string,
    "--acts": _string,
    "--kv": _string,
    "--model": _string,
    "--hw": _string,
}


def _verbs() -> dict[str, Maker]:
    """Per verb, a maker of one bad case (the verb's args)."""
    return {
        "formats": lambda r, f: [
            "formats",
            *_one_bad(
                r,
                f,
                ["--weights", str(f.root / "small.safetensors"), "--max-tensors", "1"],
                {
                    "--weights": lambda r, f: f.any(r),
                    "--formats": _string,
                    "--max-tensors": _bad_int,
                },
            ),
        ],
        "models": lambda r, f: ["models", _string(r, f)],
        "hw": lambda r, f: ["hw", "show", _string(r, f)],
        "predict": lambda r, f: [
            "predict",
            *_one_bad(r, f, _PRED, {**_SCEN, "--engine": _string}),
        ],
        "roofline": lambda r, f: [
            "roofline",
            *_one_bad(
                r, f, [*_PRED, "--out", str(f.root / "roof"), "--no-png"], {**_SCEN, "--out": _out}
            ),
        ],
        "calibrate": lambda r, f: [
            "calibrate",
            "--quick",
            *_one_bad(
                r,
                f,
                [],
                {"--out": _out_file, "--device": _string, "--threads": _bad_int, "--stat": _string},
            ),
        ],
        "validate": lambda r, f: [
            "validate",
            *_one_bad(r, f, ["--quick"], {"--hw": lambda r, f: f.any(r), "--split": _string}),
        ],
        "quantize": lambda r, f: [
            "quantize",
            *_one_bad(
                r,
                f,
                [],
                {
                    "--model": lambda r, f: f.any(r),
                    "--config": lambda r, f: f.any(r),
                    "--weights": _string,
                    "--acts": _string,
                    "--kv": _string,
                    "--method": _string,
                    "--rotation": _string,
                    "--out": _out_file,
                    "--dtype": _string,
                },
            ),
        ],
        "sensitivity": lambda r, f: [
            "sensitivity",
            *_one_bad(
                r,
                f,
                ["--weights", "int4"],
                {
                    "--model": lambda r, f: f.any(r),
                    "--weights": _string,
                    "--role": _string,
                    "--method": _string,
                    "--out": _out_file,
                    "--dtype": _string,
                },
            ),
        ],
        "eval": lambda r, f: [
            "eval",
            *_one_bad(
                r,
                f,
                [],
                {
                    "--model": lambda r, f: f.any(r),
                    "--text-file": lambda r, f: f.any(r),
                    "--dtype": _string,
                    "--tasks": _string,
                    "--dataset": _string,
                },
            ),
        ],
        "explore": _explore_case,
        "report": lambda r, f: ["report", f.any(r)],
        "export": lambda r, f: [
            "export",
            *_one_bad(
                r,
                f,
                ["--to", "hf", "--out", str(f.root / "ckpt"), "--model", "tiny-llama"],
                {
                    "--to": _string,
                    "--out": _out,
                    "--config": lambda r, f: f.any(r),
                    "--front": lambda r, f: f.any(r),
                    "--model": lambda r, f: f.any(r),
                    "--point": lambda r, f: "x",
                },
            ),
        ],
    }


def _explore_case(rng: random.Random, files: Files) -> Case:
    base = ["explore", "--model", "tiny-llama", "--groups", "2", "--trials", "2", "--quiet"]
    base += ["--out", str(files.root / "study_out"), "--no-report"]
    if rng.random() < 0.3:  # a damaged study file
        return [*base[:1], files.any(rng), *base[1:]]
    fields: dict[str, Callable[..., str]] = {
        "--model": lambda r, f: f.any(r),
        "--hw": _string,
        "--trials": _bad_int,
        "--sampler": _string,
        "--seed": lambda r, f: r.choice(["-1", str(2**32), str(2**70), "1.9", "true"]),
        "--workers": _bad_int,
        "--storage": lambda r, f: r.choice(["study.db", "", "x://", "mysql://nowhere/x"]),
        "--objectives": _string,
        "--groups": _bad_int,
        "--weights": _string,
        "--acts": _string,
        "--kv": _string,
        "--methods": _string,
        "--out": _out,
        "--tpot-slo": lambda r, f: r.choice(["-1", "0", "nan", "inf", "x"]),
    }
    return _one_bad(rng, files, base, fields)


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def _raise(*_: Any) -> None:
        raise TimeoutError("hang")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def classify(result: Any) -> str:
    """refused | usage | accepted | echo | traceback, from a `CliRunner` result."""
    stderr = result.stderr if result.stderr_bytes is not None else ""
    if SECRET in stderr or SECRET in result.stdout:
        return "echo"  # a file that is no input of ours was printed back
    if result.exit_code == 0 and result.exception is None:
        return "accepted"
    if isinstance(result.exception, SystemExit) or result.exception is None:
        # the refusal is the last line (a library's progress bar may come before it)
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        refused = bool(lines) and lines[-1].startswith("error: ") and "Traceback" not in stderr
        if result.exit_code == 2 and refused:
            return "refused"
        if result.exit_code == 2 and ("Usage:" in stderr or "Error" in stderr):
            return "usage"
    return "traceback"


@dataclass
class Outcome:
    counts: Counter[str] = field(default_factory=Counter)
    by_verb: dict[str, Counter[str]] = field(default_factory=dict)
    bad: list[tuple[list[str], str]] = field(default_factory=list)
    accepted: list[list[str]] = field(default_factory=list)
    verb_seconds: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "cases": sum(self.counts.values()),
            "counts": dict(self.counts),
            "by_verb": {v: dict(c) for v, c in self.by_verb.items()},
            "seconds": round(self.seconds, 1),
            "verb_seconds": {v: round(t, 1) for v, t in self.verb_seconds.items()},
            "accepted": [a[:12] for a in self.accepted[:20]],
            "bad": [(a[:8], why[-600:]) for a, why in self.bad[:20]],
        }


def run(
    n: int,
    seed: int,
    root: Path,
    *,
    limit_s: float = 60.0,
    progress: Path | None = None,
    only: set[str] | None = None,
) -> Outcome:
    """Run `n` generated bad cases (round robin over the verbs) with seed `seed`."""
    from typer.testing import CliRunner

    from quarch.cli import app

    files = Files(root).make()
    verbs = _verbs()
    rng = random.Random(seed)
    runner = CliRunner()
    out = Outcome()
    t0 = time.perf_counter()
    names = [v for v in verbs if only is None or v in only]
    for i in range(n):
        verb = names[i % len(names)]
        args = verbs[verb](rng, files)
        t1 = time.perf_counter()
        try:
            with _time_limit(limit_s):
                result = runner.invoke(app, args, env=ENV)
            if isinstance(result.exception, TimeoutError):
                raise result.exception
            kind = classify(result)
            why = result.stderr if kind == "traceback" else ""
            if kind == "traceback" and result.exception is not None:
                import traceback

                why += "".join(traceback.format_exception(result.exception))
        except TimeoutError:
            kind, why = "hang", "over the time limit"
        out.verb_seconds[verb] += time.perf_counter() - t1
        if kind == "accepted":
            out.accepted.append(args)
        out.counts[kind] += 1
        out.by_verb.setdefault(verb, Counter())[kind] += 1
        if kind in ("traceback", "hang", "echo"):
            out.bad.append((args, why))
        if progress is not None and (i + 1) % 100 == 0:
            out.seconds = time.perf_counter() - t0
            progress.write_text(json.dumps(out.to_dict(), indent=1))
    out.seconds = time.perf_counter() - t0
    return out


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's quarch
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    progress = Path(sys.argv[3]) if len(sys.argv) > 3 else None
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(count, seed, Path(tmp), progress=progress).to_dict(), indent=1))
