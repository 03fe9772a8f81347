"""GPTQ's own objective, measured out of domain: a cheap study of why GPTQ loses cross-domain.

GPTQ minimises each linear layer's output error on its calibration inputs, ‖X(W − Ŵ)ᵀ‖²
(arXiv:2210.17323 eq. 1). This study measures that same error on *other* text: for a weight
error ΔW = W − Ŵ and a domain's input second moment H_d = E[x xᵀ], the mean squared output error
per token is tr(ΔW H_d ΔWᵀ). Reported per domain as the sum over every linear layer of the
error relative to the layer's output power tr(W H_d Wᵀ) (so layers weigh alike), for RTN and
GPTQ variants changing one variable at a time.

All statistics come from the float model in one pass per text (`collect_calib`), not GPTQ's
block-sequential pass, so one set of Hessians serves every variant: a study of the layer
objective, cheap enough to run on a busy CPU; perplexity (benchmarks/accuracy_table.py) checks
the conclusions. Texts: the calibration mix and the Python reference's calibration part
(calibration sources), the evaluation parts of the calibration domains (development set, where
a default is chosen), and the evaluation domains (test set, reported only).

Run: `python benchmarks/gptq_proxy_study.py [--calib N] [--heldout N] [--out FILE]`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from quarch.eval import (
    CALIBRATION_DOMAINS,
    EVAL_DOMAINS,
    builtin_text,
    calibration_windows,
    domain_text,
    token_windows,
    tokenize_text,
)
from quarch.formats import Format
from quarch.models import load_model
from quarch.quant._calib import collect_calib
from quarch.quant.methods._base import LayerCalib
from quarch.quant.methods._gptq import gptq
from quarch.quant.methods._rtn import rtn

SEQLEN = 512

VARIANTS: list[tuple[str, str, str, dict[str, Any]]] = [
    # (name, method, calibration source, GPTQ parameters); defaults: percdamp 0.01, no act-order
    ("rtn", "rtn", "", {}),
    ("gptq", "gptq", "mix", {}),
    ("gptq calib=python-reference", "gptq", "python-reference", {}),
    ("gptq calib=mix, a quarter of the tokens", "gptq", "mix-small", {}),
    ("gptq percdamp=0.1", "gptq", "mix", {"percdamp": 0.1}),
    ("gptq percdamp=0.001", "gptq", "mix", {"percdamp": 0.001}),
    ("gptq act_order", "gptq", "mix", {"act_order": True}),
    ("gptq act_order static_groups", "gptq", "mix", {"act_order": True, "static_groups": True}),
    ("gptq static_groups", "gptq", "mix", {"static_groups": True}),
]
DEFAULTS = {"percdamp": 0.01, "block_size": 128, "act_order": False, "static_groups": False}


def _linears(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    return {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and ".layers." in f".{n}"
    }


def _stats(loaded: Any, windows: torch.Tensor, names: list[str]) -> dict[str, LayerCalib]:
    with torch.no_grad():
        return collect_calib(loaded.model, list(windows.split(1)), names)


def _relative_error(w: torch.Tensor, q: torch.Tensor, h: torch.Tensor) -> float:
    d = (w - q).double()
    w64, h64 = w.double(), h.double()
    return float(torch.trace(d @ h64 @ d.T) / torch.trace(w64 @ h64 @ w64.T))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--format", default="int4_g128")
    ap.add_argument("--calib", type=int, default=16, help="calibration windows of 512 tokens")
    ap.add_argument("--heldout", type=int, default=3, help="windows of 512 tokens per domain")
    ap.add_argument("--out", type=Path, default=Path("quarch-out/gptq_proxy_study.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    fmt = Format.parse(args.format)
    loaded = load_model()
    tok = loaded.tokenizer
    layers = _linears(loaded.model)
    names = list(layers)

    def calib(text: Any, n: int) -> dict[str, LayerCalib]:
        return _stats(loaded, calibration_windows(tok, text, n=n, seqlen=SEQLEN, seed=0), names)

    sources = {
        "mix": calib(builtin_text("calibration"), args.calib),
        "mix-small": calib(builtin_text("calibration"), max(1, args.calib // 4)),
        "python-reference": calib(domain_text("python-reference", "calibration"), args.calib),
    }
    heldout: dict[str, dict[str, LayerCalib]] = {}
    for d in (*CALIBRATION_DOMAINS, *EVAL_DOMAINS):
        ids = token_windows(tokenize_text(tok, domain_text(d, "eval")), SEQLEN, args.heldout)
        heldout[d.value] = _stats(loaded, ids, names)
    print(f"statistics collected in {time.perf_counter() - t0:.0f} s", flush=True)
    rows = []
    for name, method, source, params in VARIANTS:
        start = time.perf_counter()
        err = {d: 0.0 for d in heldout}
        for lname, layer in layers.items():
            w = layer.weight.detach().to(torch.float32)
            if method == "rtn":
                q = rtn(w, fmt, None, act_format=None).weight
            else:
                kw = DEFAULTS | params
                q = gptq(w, fmt, sources[source][lname], act_format=None, **kw).weight
            for d, stats in heldout.items():
                err[d] += _relative_error(w, q, stats[lname].hessian)
        rows.append({"variant": name, "error": err, "wall_s": time.perf_counter() - start})
        dev = sum(err[d.value] for d in CALIBRATION_DOMAINS) / len(CALIBRATION_DOMAINS)
        test = " ".join(f"{d.value}={err[d.value]:.3f}" for d in EVAL_DOMAINS)
        print(f"{name}: dev={dev:.3f} {test}", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"format": args.format, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
