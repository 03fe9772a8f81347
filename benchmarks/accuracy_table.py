"""The README's accuracy table: SmolLM2-135M-Instruct perplexity under formats and methods.

Cross-domain by default, as published PTQ results are measured: every calibrated method is
calibrated on the built-in calibration mix (`devil+jargon+wordnet`) and evaluated on each
evaluation domain (`python-reference`, `kjv`), which the mix does not contain. With `--in-domain`
each calibrated row is also run with calibration from the Python reference's own calibration
part and evaluated on its evaluation part (the protocol of the previous table), so the two sit
side by side.

Loads the shipped model once, then for each configuration quantizes it (restoring the float
model afterwards), measures perplexity with the pinned protocol, and prints a Markdown table.
Rows are appended to a JSON-lines file as they finish; rows already there are skipped, so an
interrupted run resumes. Run: `python benchmarks/accuracy_table.py [--windows N] [--in-domain]
[--only substrings] [--out quarch-out/accuracy.jsonl]`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from quarch.eval import (
    EvalText,
    builtin_text,
    calibration_windows,
    domain_text,
    eval_texts,
    perplexity,
)
from quarch.models import load_model
from quarch.quant import QuantConfig, quantized
from quarch.quant._pipeline import needs_calibration

IN_DOMAIN = "python-reference"


def configs() -> list[tuple[str, QuantConfig | None]]:
    """The table's rows, most important first."""
    u = QuantConfig.uniform
    return [
        ("float (fp32)", None),
        ("W int4_g128 · rtn", u(weights="int4_g128")),
        ("W int4_g128 · gptq", u(weights="int4_g128", method="gptq")),
        ("W int4_g128 · awq", u(weights="int4_g128", method="awq")),
        ("W int4_g128 · lqer", u(weights="int4_g128", method="lqer")),
        ("W mxfp4 · rtn", u(weights="mxfp4")),
        ("W nvfp4 · rtn", u(weights="nvfp4")),
        ("W mxint8 · rtn", u(weights="mxint8")),
        ("W mxfp8_e4m3 · rtn", u(weights="mxfp8_e4m3")),
        (
            "W8A8 fp8_e4m3_c (per-channel W, per-token A) · rtn",
            u(weights="fp8_e4m3_c", acts="fp8_e4m3_c"),
        ),
        ("W fp8_e4m3_c · rtn", u(weights="fp8_e4m3_c")),
        ("W q4_1 · rtn (the source GGUF's own grid)", u(weights="q4_1")),
        ("W int8 · rtn", u(weights="int8")),
        ("W mxfp4 · gptq", u(weights="mxfp4", method="gptq")),
        ("W nvfp4 · gptq", u(weights="nvfp4", method="gptq")),
        ("W8A8 int8 · smoothquant", u(weights="int8", acts="int8", method="smoothquant")),
        (
            "W8A8 int8 · smoothquant (folded)",
            u(weights="int8", acts="int8", method="smoothquant", fold=True),
        ),
        ("W int4_g128 · awq (folded)", u(weights="int4_g128", method="awq", fold=True)),
    ]


def _measure(loaded: Any, texts: dict[str, EvalText], windows: int) -> dict[str, dict[str, Any]]:
    out = {}
    for name, text in texts.items():
        res = perplexity(loaded.model, loaded.tokenizer, text, max_windows=windows, progress=False)
        out[name] = {"ppl": res.ppl, "tokens": res.num_tokens, "text_sha256": res.text_sha256}
    return out


def _run(
    loaded: Any,
    cfg: QuantConfig | None,
    texts: dict[str, EvalText],
    calib_text: EvalText,
    args: argparse.Namespace,
) -> dict[str, Any]:
    start = time.perf_counter()
    if cfg is None:
        return {
            "domains": _measure(loaded, texts, args.windows),
            "bits_per_weight": 32.0,
            "wall_s": time.perf_counter() - start,
        }
    calib = calibration_windows(loaded.tokenizer, calib_text, n=args.calib, seqlen=512, seed=0)
    with quantized(loaded.model, cfg, calib_windows=calib) as report:
        domains = _measure(loaded, texts, args.windows)
        bits = report.bits_per_weight
    return {
        "domains": domains,
        "bits_per_weight": bits,
        "wall_s": time.perf_counter() - start,
        "calibration": calib_text.name if needs_calibration(cfg) else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--windows", type=int, default=16, help="windows of 512 tokens per domain")
    ap.add_argument("--calib", type=int, default=32, help="calibration windows of 512 tokens")
    ap.add_argument("--in-domain", action="store_true", help="also the in-domain protocol")
    ap.add_argument("--out", type=Path, default=Path("quarch-out/accuracy.jsonl"))
    ap.add_argument("--only", default="", help="comma-separated substrings of row labels")
    args = ap.parse_args()
    torch.manual_seed(0)
    done: set[tuple[str, str]] = set()
    if args.out.exists():
        rows = [json.loads(line) for line in args.out.read_text().splitlines() if line]
        done = {(r["config"], r["protocol"]) for r in rows}
    loaded = load_model()
    cross = (eval_texts(), builtin_text("calibration"))
    within = (
        {IN_DOMAIN: domain_text(IN_DOMAIN, "eval")},
        domain_text(IN_DOMAIN, "calibration"),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for label, cfg in configs():
        if args.only and not any(s in label for s in args.only.split(",")):
            continue
        protocols = [("cross-domain", cross)]
        if args.in_domain and cfg is not None and needs_calibration(cfg):
            protocols.append(("in-domain", within))
        for protocol, (texts, calib_text) in protocols:
            if (label, protocol) in done:
                continue
            row = {
                "config": label,
                "protocol": protocol,
                **_run(loaded, cfg, texts, calib_text, args),
            }
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            ppl = " | ".join(f"{d['ppl']:.3f}" for d in row["domains"].values())
            print(f"| {label} | {protocol} | {row['bits_per_weight']:.3f} | {ppl} |", flush=True)


if __name__ == "__main__":
    main()
