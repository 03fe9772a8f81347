"""Why GPTQ loses to RTN cross-domain: one variable at a time, each measured.

Loads the shipped model once; each variant quantizes it (int4_g128 unless named otherwise),
then measures mean NLL per window on

- the *development* set: the held-out evaluation parts of the calibration domains (`devil`,
  `jargon`, `wordnet`), where defaults are chosen, and
- the *test* set: the evaluation domains (`python-reference`, `kjv`), only reported.

Calibration windows come from the calibration mix (the calibration parts of the calibration
domains) unless a variant names another source. Results are appended to a JSON-lines file, one
line per variant (per-window NLLs included, for paired comparisons); variants already in the
file are skipped, so an interrupted study resumes. Run:
`python benchmarks/gptq_study.py [--variants a,b] [--out quarch-out/gptq_study.jsonl]`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from quarch.eval import (
    CALIBRATION_DOMAINS,
    EVAL_DOMAINS,
    calibration_windows,
    domain_text,
    mean_nll,
    token_windows,
    tokenize_text,
)
from quarch.models import load_model
from quarch.quant import QuantConfig, quantized

SEQLEN = 512


@dataclass(frozen=True, kw_only=True)
class Variant:
    name: str
    weights: str | None = "int4_g128"
    method: str = "gptq"
    params: dict[str, Any] = field(default_factory=dict)
    calib: str = "mix"  # "mix" or a domain name (its calibration part)
    calib_n: int = 32


VARIANTS = [
    Variant(name="float", weights=None, method="rtn"),
    Variant(name="rtn", method="rtn"),
    Variant(name="gptq"),
    Variant(name="gptq-calib-python-reference", calib="python-reference"),
    Variant(name="gptq-act-order", params={"act_order": True}),
    Variant(name="rtn-int4_g32_asym", weights="int4_g32_asym", method="rtn"),
    Variant(name="gptq-damp0.1", params={"percdamp": 0.1}),
    Variant(name="gptq-act-order-static", params={"act_order": True, "static_groups": True}),
    Variant(name="gptq-calib128", calib_n=128),
    Variant(name="gptq-static", params={"static_groups": True}),
    Variant(name="gptq-calib8", calib_n=8),
    Variant(name="gptq-int4_g32_asym", weights="int4_g32_asym"),
]


def _eval_windows(tokenizer: Any, windows: dict[str, int]) -> dict[str, torch.Tensor]:
    out = {}
    for name, n in windows.items():
        ids = tokenize_text(tokenizer, domain_text(name, "eval"))
        out[name] = token_windows(ids, SEQLEN, n)
    return out


def _calib_text(source: str) -> Any:
    from quarch.eval import builtin_text

    return builtin_text("calibration", None if source == "mix" else source)


def _measure(model: torch.nn.Module, sets: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    return {
        name: [mean_nll(model, w[i : i + 1]) for i in range(w.shape[0])] for name, w in sets.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variants", default="", help="comma-separated variant names (default all)")
    ap.add_argument("--test-windows", type=int, default=8, help="windows per evaluation domain")
    ap.add_argument("--dev-windows", type=int, default=4, help="windows per development domain")
    ap.add_argument("--out", type=Path, default=Path("quarch-out/gptq_study.jsonl"))
    args = ap.parse_args()
    wanted = [v for v in args.variants.split(",") if v]
    done = set()
    if args.out.exists():
        done = {json.loads(line)["variant"] for line in args.out.read_text().splitlines() if line}
    loaded = load_model()
    sets = _eval_windows(
        loaded.tokenizer,
        {d.value: args.test_windows for d in EVAL_DOMAINS}
        | {d.value: args.dev_windows for d in CALIBRATION_DOMAINS},
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for v in VARIANTS:
        if (wanted and v.name not in wanted) or v.name in done:
            continue
        start = time.perf_counter()
        if v.weights is None:
            nll = _measure(loaded.model, sets)
        else:
            cfg = QuantConfig.uniform(weights=v.weights, method=v.method, **v.params)
            calib = calibration_windows(
                loaded.tokenizer, _calib_text(v.calib), n=v.calib_n, seqlen=SEQLEN, seed=0
            )
            with quantized(loaded.model, cfg, calib_windows=calib):
                nll = _measure(loaded.model, sets)
        row = {
            "variant": v.name,
            "weights": v.weights,
            "method": v.method,
            "params": v.params,
            "calib": v.calib,
            "calib_n": v.calib_n,
            "wall_s": time.perf_counter() - start,
            "ppl": {k: math.exp(sum(x) / len(x)) for k, x in nll.items()},
            "nll": nll,
        }
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        ppl = " ".join(f"{k}={p:.3f}" for k, p in row["ppl"].items())
        print(f"{v.name}: {ppl} ({row['wall_s']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
