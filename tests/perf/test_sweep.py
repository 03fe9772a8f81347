"""Batch predictions: `predict_many` and the vectorised `sweep_hardware` (quarch/perf/_sweep.py)."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pytest
from perf_cases import cases

from quarch.hardware import load_hardware
from quarch.models import load_model_spec
from quarch.perf import Scenario, predict
from quarch.perf._predict import affine_mean_of_max
from quarch.perf._sweep import (
    affine_mean_of_max_v,
    predict_many,
    scaled_hardware,
    sweep_hardware,
)

FIELDS = ("ttft_s", "tpot_s", "e2e_latency_s", "energy_j", "throughput_tokens_per_s")


def test_sweep_equals_predict_on_scaled_devices() -> None:
    rng = random.Random(1)
    checked = 0
    for case in cases(150, seed=7):
        spec = load_model_spec(case["model"])
        if case["window"] is not None and spec.mla is None:
            spec = replace(spec, sliding_window=case["window"])
        hw = load_hardware(case["device"])
        try:
            sc = Scenario(**case["scenario"])
            predict(spec, hw, sc, engine=case["engine"])
        except ValueError:
            continue
        scales = {k: [rng.uniform(0.3, 3.0) for _ in range(3)] for k in
                  ("matrix_scale", "vector_scale", "bandwidth_scale", "link_scale")}  # fmt: skip
        sweep = sweep_hardware(spec, hw, sc, engine=case["engine"], **scales)
        for j in range(3):
            variant = scaled_hardware(hw, **{k: v[j] for k, v in scales.items()})
            p = predict(spec, variant, sc, engine=case["engine"])
            for name in FIELDS:
                assert getattr(sweep, name)[j] == pytest.approx(getattr(p, name), rel=1e-12), (
                    case,
                    name,
                )
            cost = p.cost_per_million_tokens_usd
            got = sweep.cost_per_million_tokens_usd[j]
            assert (cost is None and math.isnan(got)) or got == pytest.approx(cost, rel=1e-12)
        checked += 1
    assert checked > 100


def test_sweep_broadcasts_to_a_grid() -> None:
    bw = np.array([0.5, 1.0, 2.0])
    mm = np.array([1.0, 4.0])
    sc = Scenario(batch=8, prompt_len=512, output_len=128)
    sweep = sweep_hardware(
        "llama-3.1-8b", "h100-sxm", sc, bandwidth_scale=bw[:, None], matrix_scale=mm[None, :]
    )
    assert sweep.tpot_s.shape == (3, 2)
    base = predict("llama-3.1-8b", "h100-sxm", sc)
    assert sweep.tpot_s[1, 0] == pytest.approx(base.tpot_s, rel=1e-12)
    # decode of an 8B model at batch 8 is memory-bound: more bandwidth, faster steps
    assert sweep.tpot_s[0, 0] > sweep.tpot_s[1, 0] > sweep.tpot_s[2, 0]


def test_sweep_rejects_bad_scales_and_derived_tiles() -> None:
    sc = Scenario(batch=1, prompt_len=16, output_len=4)
    with pytest.raises(ValueError, match="bandwidth_scale must be positive"):
        sweep_hardware("llama-3.1-8b", "h100-sxm", sc, bandwidth_scale=[1.0, -1.0])
    with pytest.raises(ValueError, match="tile side"):
        sweep_hardware("llama-3.1-8b", "tpu-v6e", sc, matrix_scale=2.0)


def test_affine_mean_of_max_vectorised_matches_the_scalar_one() -> None:
    rng = np.random.default_rng(0)
    a0, a1, b0, b1 = rng.uniform(0, 2, (4, 500))
    for steps in (1, 2, 7, 1000):
        got = affine_mean_of_max_v(a0, a1, b0, b1, steps)
        want = [affine_mean_of_max(*v, steps) for v in zip(a0, a1, b0, b1, strict=True)]
        assert got == pytest.approx(want, rel=1e-12, abs=0.0)


def test_predict_many_gathers_each_prediction() -> None:
    scs = [Scenario(batch=b, prompt_len=256, output_len=32) for b in (1, 4, 16)]
    table = predict_many("llama-3.1-8b", "h100-sxm", scs, engine="vllm")
    for i, sc in enumerate(scs):
        p = predict("llama-3.1-8b", "h100-sxm", sc, engine="vllm")
        assert table.tpot_s[i] == p.tpot_s and table.memory_bytes[i] == p.memory.total_bytes
        assert table.predictions[i].scenario == sc
    with pytest.raises(ValueError, match=r"scenarios\[1\]"):
        predict_many("llama-3.1-8b", "h100-sxm", [scs[0], Scenario(tp=3)])
