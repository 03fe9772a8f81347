"""A tiny finished study to report on (the random tiny LLaMA, a few trials)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_result(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from quarch.report import write_report
    from quarch.search import explore, study_from_dict

    study = {
        "name": "tiny-report",
        "model": "tiny-llama",
        "scenarios": [{"name": "serve", "batch": 4, "prompt_len": 128, "output_len": 32}],
        "hardware": {"devices": ["h100-sxm"], "price_per_hour_usd": 2.5},
        "space": {
            "groups": 2,
            "weight": ["float", "int8", "mxfp4"],
            "act": ["float", "fp8_e4m3_c"],
            "kv": ["float", "fp8_e4m3"],
        },
        "objectives": ["ppl", "tpot", "memory"],
        "search": {"trials": 16, "population": 6},
        "accuracy": {
            "eval_seqlen": 64,
            "eval_windows": 3,
            "sensitivity_seqlen": 48,
            "sensitivity_windows": 2,
            "max_final_points": 4,
        },
    }
    out = tmp_path_factory.mktemp("tiny-report")
    result = explore(study_from_dict(study), out, progress=False)
    write_report(result)
    return result
