"""Random but reproducible prediction cases, shared by the old-vs-new equality test and the
script that wrote its golden file (`python tests/perf/perf_cases.py OUT.json`)."""

from __future__ import annotations

import json
import random
import sys
from dataclasses import replace
from typing import Any

from quarch.models import load_model_spec
from quarch.perf import Prediction, Scenario, predict

MODELS = ("llama-3.1-70b", "llama-3.1-8b", "mixtral-8x7b", "deepseek-v2-lite", "qwen2.5-7b")
DEVICES = ("h100-sxm", "b200", "mi300x", "a100-sxm", "l40s", "h200-sxm")
ENGINES = ("ideal", "vllm", "sglang", "tensorrt-llm")
WEIGHTS = ("bf16", "int4_g128", "int8", "fp8_e4m3", "mxfp4", "nvfp4", "int4_g128_asym")
ACTS = ("bf16", "bf16", "fp8_e4m3", "int8")
KVS = ("bf16", "fp8_e4m3", "int8")
FIELDS = ("ttft_s", "tpot_s", "e2e_latency_s", "energy_j", "throughput_tokens_per_s")


def cases(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` case descriptions: model, device, engine, sliding window, scenario fields."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        fields: dict[str, Any] = {
            "batch": rng.choice((1, 2, 3, 8, 16, 64, 200)),
            "prompt_len": rng.randint(1, 8192),
            "output_len": rng.randint(1, 1024),
            "tp": rng.choice((1, 2, 4, 8)),
            "weight_format": rng.choice(WEIGHTS),
            "act_format": rng.choice(ACTS),
            "kv_format": rng.choice(KVS),
        }
        if rng.random() < 0.3:
            fields["weight_overrides"] = {"attn": rng.choice(WEIGHTS)}
        out.append(
            {
                "model": rng.choice(MODELS),
                "device": rng.choice(DEVICES),
                "engine": rng.choice(ENGINES),
                "window": rng.choice((None, None, None, 512)),
                "scenario": fields,
            }
        )
    return out


def run(case: dict[str, Any]) -> Prediction | None:
    """The prediction of a case, or None where the scenario does not fit the model."""
    spec = load_model_spec(case["model"])
    if case["window"] is not None and spec.mla is None:
        spec = replace(spec, sliding_window=case["window"])
    try:
        sc = Scenario(**case["scenario"])
        return predict(spec, case["device"], sc, engine=case["engine"])
    except ValueError:
        return None


def values(p: Prediction | None) -> list[float] | None:
    """The pinned numbers of a prediction (None stays None)."""
    if p is None:
        return None
    return [float(getattr(p, f)) for f in FIELDS] + [p.memory.total_bytes]


if __name__ == "__main__":
    golden = [values(run(c)) for c in cases(int(sys.argv[2]) if len(sys.argv) > 2 else 600)]
    with open(sys.argv[1], "w", encoding="utf-8") as fh:
        json.dump(golden, fh)
