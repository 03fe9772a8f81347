"""Quantized-model evaluation and GPTQ, each timed against a reference measured in one run.

1. Evaluation: weights are quantized once at apply time and stored dequantized, so a
   weight-only quantized model should evaluate at about the float model's speed (target:
   ≤ 1.2×). Activation and KV-cache quantization do real work on every forward pass; their
   ratios are printed for information. The float model and each quantized copy are timed in
   turns on the same windows (best of `--repeats`, after one warm-up), which keeps the ratio
   fair on a busy machine.
2. GPTQ on every linear layer of the model (all projections of all blocks; the tied embedding /
   LM head is excluded, as a QuantConfig excludes it by default), given calibration statistics
   collected once (`quarch.quant.collect_calib` over `--calib` seeded windows of the built-in
   calibration text; not timed), against RTN on the same layers, with the mean layer-output
   error of both on the calibration samples. Torch runs on `--threads` threads (CI has 2 cores).

    .venv/bin/python benchmarks/bench_quant.py [--model PATH] [--seqlen 256] [--windows 2]
        [--gptq-format int4_g128] [--act-order] [--no-gptq]
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import torch

from quarch.eval import builtin_text, calibration_windows, token_windows, tokenize_text
from quarch.formats import Format
from quarch.models import load_model
from quarch.quant import (
    LayerCalib,
    QuantConfig,
    apply_config,
    collect_calib,
    get_method,
    reconstruction_error,
)

CONFIGS = {
    "W int4_g128 (rtn)": QuantConfig.uniform(weights="int4_g128"),
    "W8A8 int8": QuantConfig.uniform(weights="int8", acts="int8"),
    "KV int8": QuantConfig.uniform(kv="int8"),
}
TARGET = {"W int4_g128 (rtn)": 1.2}


def forward_all(model: torch.nn.Module, windows: torch.Tensor) -> None:
    with torch.inference_mode():
        for w in windows:
            model(input_ids=w[None], use_cache=False)


def timed(model: torch.nn.Module, windows: torch.Tensor) -> float:
    start = time.perf_counter()
    forward_all(model, windows)
    return time.perf_counter() - start


def linear_layers(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """Every linear layer a default QuantConfig quantizes (the LM head is excluded)."""
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and name != "lm_head"
    }


def run_method(
    method: str,
    layers: dict[str, torch.nn.Linear],
    calibs: dict[str, LayerCalib],
    fmt: Format,
    **params: Any,
) -> tuple[float, float]:
    """(wall seconds over all layers, mean relative layer-output error on calibration rows)."""
    m = get_method(method)
    seconds, errors = 0.0, []
    for name, lin in layers.items():
        w, calib = lin.weight.detach(), calibs[name]
        start = time.perf_counter()
        res = m(w, fmt, calib if m.needs_calibration else None, **params)
        seconds += time.perf_counter() - start
        errors.append(reconstruction_error(w, res, calib.samples))
    return seconds, sum(errors) / len(errors)


def bench_gptq(loaded: Any, fmt: Format, calib: int, seqlen: int, act_order: bool) -> None:
    layers = linear_layers(loaded.model)
    windows = calibration_windows(
        loaded.tokenizer, builtin_text("calibration"), n=calib, seqlen=seqlen, seed=0
    )
    start = time.perf_counter()
    with torch.inference_mode():
        calibs = collect_calib(loaded.model, [w[None] for w in windows], layers)
    calib_s = time.perf_counter() - start
    weights = sum(m.weight.numel() for m in layers.values())
    rtn_s, rtn_err = run_method("rtn", layers, calibs, fmt)
    gptq_s, gptq_err = run_method("gptq", layers, calibs, fmt, act_order=act_order)
    print(
        f"\nGPTQ, {fmt}, act_order={act_order}, on {len(layers)} linear layers "
        f"({weights / 1e6:.1f} M weights), torch threads {torch.get_num_threads()}"
    )
    print(f"calibration: {calib} windows x {seqlen} tokens in {calib_s:.1f} s (not in the ratio)")
    print(f"RTN : {rtn_s:8.2f} s   mean layer-output error {rtn_err:.4e}")
    print(f"GPTQ: {gptq_s:8.2f} s   mean layer-output error {gptq_err:.4e}")
    print(
        f"GPTQ / RTN: wall time {gptq_s / rtn_s:.1f}x, layer-output error {gptq_err / rtn_err:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model path [default: shipped SmolLM2]")
    parser.add_argument("--seqlen", type=int, default=256)
    parser.add_argument("--windows", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gptq-format", default="int4_g128")
    parser.add_argument("--calib", type=int, default=16, help="GPTQ calibration windows")
    parser.add_argument("--act-order", action="store_true")
    parser.add_argument("--no-gptq", action="store_true", help="skip the GPTQ part")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_model(args.model)
    ids = tokenize_text(loaded.tokenizer, builtin_text())
    windows = token_windows(ids, args.seqlen, args.windows)
    models: dict[str, Any] = {"float": loaded.model}
    for name, cfg in CONFIGS.items():
        m = copy.deepcopy(loaded.model)
        report = apply_config(m, cfg, progress=False)
        print(f"{name}: applied in {report.time_s:.1f} s, {report.bits_per_weight:.3f} bits/weight")
        models[name] = m
    best = {name: float("inf") for name in models}
    for m in models.values():  # warm-up
        forward_all(m, windows[:1])
    for _ in range(args.repeats):
        for name, m in models.items():
            best[name] = min(best[name], timed(m, windows))
    tokens = windows.numel()
    print(f"\n{tokens} tokens ({args.windows} windows of {args.seqlen}), best of {args.repeats}")
    print(f"{'model':<20} {'time_s':>8} {'tokens/s':>10} {'ratio':>7}")
    ok = True
    for name, t in best.items():
        ratio = t / best["float"]
        target = TARGET.get(name)
        mark = "" if target is None else (" ok" if ratio <= target else f" > {target}")
        ok &= target is None or ratio <= target
        print(f"{name:<20} {t:8.3f} {tokens / t:10.0f} {ratio:7.3f}{mark}")
    print("\nweight-only evaluation within target" if ok else "\nweight-only target missed")
    if not args.no_gptq:
        bench_gptq(loaded, Format.parse(args.gptq_format), args.calib, args.seqlen, args.act_order)


if __name__ == "__main__":
    main()
