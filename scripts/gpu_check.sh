#!/usr/bin/env bash
# The GPU check of `quarch quantize` + `quarch eval`: the shipped SmolLM2-135M, float and with a
# config, measured on the CPU (float32, quarch's reference) and on the GPU (float32: the same
# arithmetic, so it must match within 0.5 %; and bfloat16, the GPU default, recorded beside it).
# Perplexities, their ratios and wall times go to a JSON file.
#
#   scripts/gpu_check.sh [OUT_JSON] [WEIGHT_FORMAT]   # defaults: quarch-out/gpu_check.json int4_g128
#
# Exit codes: 0 the GPU matches the CPU within 0.5 %; 1 it does not; 3 no CUDA GPU here (nothing
# was measured). PYTHON selects the interpreter (default: python); EVAL_WINDOWS the number of
# 512-token evaluation windows (default 16, the README's accuracy protocol).
set -euo pipefail
PYTHON=${PYTHON:-python}
OUT=${1:-quarch-out/gpu_check.json}
WEIGHTS=${2:-int4_g128}
WINDOWS=${EVAL_WINDOWS:-16}

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    "$PYTHON" -c 'import torch; print(f"gpu_check: torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no CUDA GPU; nothing measured", flush=True)' >&2
    exit 3
fi

mkdir -p "$(dirname "$OUT")"
"$PYTHON" - "$OUT" "$WEIGHTS" "$WINDOWS" <<'PY'
import json
import sys
import time

import torch

from quarch.quant import QuantConfig, run_quantize

out, weights, windows = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = QuantConfig.uniform(weights=weights)
TOLERANCE = 0.005  # the GPU's perplexity within 0.5 % of the CPU's


def measure(device: str, dtype: str) -> dict:
    t0 = time.perf_counter()
    record = run_quantize(
        model=None, config=config, eval_windows=windows, dtype=dtype, device=device,
        baseline=True, progress=False,
    )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return {
        "device": device,
        "dtype": dtype,
        "float_ppl": record["float_ppl"],
        "quantized_ppl": record["perplexity"]["ppl"],
        "eval_tokens": record["perplexity"]["num_tokens"],
        "quantize_s": record["quantization"]["time_s"],
        "total_s": time.perf_counter() - t0,
    }


runs = [measure("cpu", "float32"), measure("cuda", "float32"), measure("cuda", "bfloat16")]
cpu = runs[0]
checks = {}
for run in runs[1:]:
    for key in ("float_ppl", "quantized_ppl"):
        ratio = run[key] / cpu[key]
        checks[f"{run['device']} {run['dtype']} {key}"] = {
            "ratio_to_cpu": ratio, "within_0.5%": abs(ratio - 1) <= TOLERANCE,
        }
# the pass criterion: the same arithmetic (float32) on the GPU gives the CPU's perplexity
passed = all(v["within_0.5%"] for k, v in checks.items() if "float32" in k)
result = {
    "weights": weights, "eval_windows": windows, "gpu": torch.cuda.get_device_name(0),
    "torch": torch.__version__, "runs": runs, "checks": checks, "passed": passed,
}
with open(out, "w") as fh:
    json.dump(result, fh, indent=2)
print(json.dumps(result, indent=2))
sys.exit(0 if passed else 1)
PY
