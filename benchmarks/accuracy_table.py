"""The README's accuracy table: SmolLM2-135M-Instruct perplexity under formats and methods.

Loads the shipped model once, then for each configuration quantizes it (restoring the float
model afterwards), measures perplexity with the pinned protocol on quarch's built-in evaluation
text, and prints a Markdown table (and writes JSON next to it). Run: `python
benchmarks/accuracy_table.py [--windows N] [--out quarch-out/accuracy.json]`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from quarch.eval import builtin_text, calibration_windows, perplexity
from quarch.eval._corpus import TextPart
from quarch.models import load_model
from quarch.quant import QuantConfig, quantized

WEIGHT_FORMATS = ("int8", "fp8_e4m3_c", "int4_g128", "mxfp4", "nvfp4")
METHODS = ("rtn", "gptq", "awq", "lqer")


def configs() -> list[tuple[str, QuantConfig | None]]:
    rows: list[tuple[str, QuantConfig | None]] = [("float (fp32)", None)]
    for fmt in WEIGHT_FORMATS:
        for method in METHODS:
            rows.append((f"W {fmt} · {method}", QuantConfig.uniform(weights=fmt, method=method)))
    rows.append(
        (
            "W8A8 int8 · smoothquant",
            QuantConfig.uniform(weights="int8", acts="int8", method="smoothquant"),
        )
    )
    rows.append(
        (
            "W8A8 int8 · smoothquant (folded)",
            QuantConfig.uniform(weights="int8", acts="int8", method="smoothquant", fold=True),
        )
    )
    rows.append(
        (
            "W int4_g128 · awq (folded)",
            QuantConfig.uniform(weights="int4_g128", method="awq", fold=True),
        )
    )
    rows.append(("W8A8 int8 · rtn", QuantConfig.uniform(weights="int8", acts="int8")))
    rows.append(
        (
            "W4A16 int4_g128 · gptq + KV fp8_e4m3",
            QuantConfig.uniform(weights="int4_g128", kv="fp8_e4m3", method="gptq"),
        )
    )
    rows.append(("KV only int4_g32_asym", QuantConfig.uniform(kv="int4_g32_asym")))
    rows.append(("W4A4 mxfp4 · rtn", QuantConfig.uniform(weights="mxfp4", acts="mxfp4")))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--windows", type=int, default=16, help="evaluation windows of 512 tokens")
    ap.add_argument("--calib", type=int, default=32, help="calibration windows of 512 tokens")
    ap.add_argument("--out", type=Path, default=Path("quarch-out/accuracy.json"))
    ap.add_argument("--only", default="", help="comma-separated substrings of row labels")
    args = ap.parse_args()
    torch.manual_seed(0)
    loaded = load_model()
    text = builtin_text(TextPart.EVAL)
    calib = calibration_windows(
        loaded.tokenizer, builtin_text(TextPart.CALIBRATION).text, n=args.calib, seqlen=512, seed=0
    )
    results = []
    for label, cfg in configs():
        if args.only and not any(s in label for s in args.only.split(",")):
            continue
        start = time.perf_counter()
        if cfg is None:
            res, bits = (
                perplexity(
                    loaded.model, loaded.tokenizer, text, max_windows=args.windows, progress=False
                ),
                32.0,
            )
        else:
            with quantized(loaded.model, cfg, calib_windows=calib) as report:
                res = perplexity(
                    loaded.model, loaded.tokenizer, text, max_windows=args.windows, progress=False
                )
                bits = report.bits_per_weight
        wall = time.perf_counter() - start
        results.append(
            {
                "config": label,
                "ppl": res.ppl,
                "bits_per_weight": bits,
                "wall_s": wall,
                "tokens": res.num_tokens,
                "text_sha256": res.text_sha256,
            }
        )
        print(f"| {label} | {bits:.3f} | {res.ppl:.3f} | {wall:.0f} |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
