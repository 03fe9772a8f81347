"""The `quarch quantize` and `quarch sensitivity` pipelines as API functions returning records.

`run_quantize` loads a model, quantizes it with a `QuantConfig` (calibrating when a method needs
it) and measures its perplexity; `run_sensitivity` measures a per-group sensitivity table (and
optionally its additivity). Both return JSON-ready records holding everything needed to rerun:
the config (formats, methods, parameters, seed), calibration windows and seqlen, the text hash,
package versions. The CLI verbs (`quant/_cli.py`) only parse options, call these and print.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quarch.quant._config import QuantConfig, Role, _role, available_methods, parse_format

if TYPE_CHECKING:
    import torch

    from quarch.eval import EvalText
    from quarch.models import LoadedModel


def needs_calibration(config: QuantConfig) -> bool:
    """Whether a weight method of the config needs calibration windows."""
    specs = [r.spec for r in config.rules if r.role is Role.WEIGHT and r.format is not None]
    specs += [s for role, s in config.default.items() if role is Role.WEIGHT and s.format]
    return any(available_methods()[s.method].needs_calibration for s in specs)


def calibration_text(*, dataset: str | None, calib_text_file: Path | None) -> EvalText:
    """The calibration text: a file, the dataset's calibration split, or the built-in corpus's
    calibration part (which never overlaps its evaluation part)."""
    from quarch.eval import select_text

    if calib_text_file is not None:
        return select_text(text_file=calib_text_file)
    return select_text(dataset=dataset, part="calibration")


def _windows(
    loaded: LoadedModel, text: EvalText, samples: int, seqlen: int, seed: int
) -> torch.Tensor:
    from quarch.eval import calibration_windows

    return calibration_windows(loaded.tokenizer, text, n=samples, seqlen=seqlen, seed=seed)


def _calibration_record(
    text: EvalText | None, samples: int, seqlen: int, seed: int
) -> dict[str, Any]:
    if text is None:
        return {"used": False}
    return {
        "used": True,
        "text_name": text.name,
        "text_sha256": text.sha256,
        "samples": samples,
        "seqlen": seqlen,
        "seed": seed,
    }


def run_quantize(
    *,
    model: str | None,
    config: QuantConfig,
    calib: tuple[int, int, Path | None] = (32, 512, None),
    eval_seqlen: int = 512,
    eval_windows: int | None = None,
    text_file: Path | None = None,
    dataset: str | None = None,
    dtype: str | None = None,
    device: str = "cpu",
    baseline: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Load, quantize, evaluate; the record `quarch quantize --json` prints.

    Args:
        model: HF dir, .gguf file or cached hub id (None: the shipped SmolLM2).
        config: what to quantize how.
        calib: (windows, seqlen, text file or None) of the calibration set, used when a method
            needs calibration.
        eval_seqlen, eval_windows: perplexity windows (all windows when None).
        text_file, dataset: the evaluation text (default: every evaluation domain of the
            built-in corpus, each under `domains`; the top-level fields are the first's).
        dtype: weight dtype (`float32`, `bfloat16`, `float16`; None: bfloat16 on GPUs,
            float32 on the CPU).
        device: `cpu`, `cuda[:N]` or `mps` (refused when this machine lacks it).
        baseline: measure the float model first (`float_ppl`, `float_perplexity`, `ppl_ratio`).
        progress: progress bars on stderr.

    Returns:
        `quarch.eval.eval_record` fields plus `quantization` (the `QuantReport`), `calibration`,
        `float_ppl`, `ppl_ratio` (with its paired 95 % interval `ppl_ratio_interval`) and
        `wall_s` (with `baseline`, also `float_perplexity`).
    """
    from quarch._device import device_and_dtype
    from quarch.eval import domain_texts, eval_record, perplexity, ratio_interval
    from quarch.models import load_model
    from quarch.quant._apply import apply_config

    t0 = time.perf_counter()
    samples, calib_seqlen, calib_file = calib
    dev, torch_dtype = device_and_dtype(device, dtype)
    texts = domain_texts(text_file=text_file, dataset=dataset)
    loaded = load_model(model, dtype=torch_dtype, device=dev)

    def measure_all() -> dict[str, Any]:
        return {
            name: perplexity(
                loaded.model,
                loaded.tokenizer,
                text,
                seqlen=eval_seqlen,
                max_windows=eval_windows,
                progress=progress,
            )
            for name, text in texts.items()
        }

    bases = measure_all() if baseline else None
    base = None if bases is None else next(iter(bases.values()))
    calib_text = None
    windows = None
    if needs_calibration(config):
        calib_text = calibration_text(dataset=dataset, calib_text_file=calib_file)
        windows = _windows(loaded, calib_text, samples, calib_seqlen, config.seed)
    report = apply_config(loaded.model, config, calib_windows=windows, progress=progress)
    results = measure_all()
    result = next(iter(results.values()))
    record = eval_record(loaded, result)
    if len(results) > 1:
        record["domains"] = {
            name: {
                **asdict(r),
                "float_ppl": None if bases is None else bases[name].ppl,
                "ppl_ratio": None if bases is None else r.ppl / bases[name].ppl,
                "ppl_ratio_interval": None
                if bases is None
                else ratio_interval(r.window_nll, bases[name].window_nll),
            }
            for name, r in results.items()
        }
    record["quantization"] = report.to_dict()
    record["calibration"] = _calibration_record(calib_text, samples, calib_seqlen, config.seed)
    record["float_ppl"] = None if base is None else base.ppl
    if base is not None:
        record["float_perplexity"] = asdict(base)
    record["ppl_ratio"] = None if base is None else result.ppl / base.ppl
    # paired over the same windows: the 95 % interval of the ratio (quarch.eval._interval)
    record["ppl_ratio_interval"] = (
        None if base is None else ratio_interval(result.window_nll, base.window_nll)
    )
    record["wall_s"] = time.perf_counter() - t0
    return record


def run_sensitivity(
    *,
    model: str | None,
    fmt: str,
    role: str = "weight",
    method: str = "rtn",
    params: dict[str, Any] | None = None,
    windows: int = 4,
    seqlen: int = 256,
    additivity: int = 0,
    calib: tuple[int, int] = (32, 512),
    seed: int = 0,
    text_file: Path | None = None,
    dataset: str | None = None,
    dtype: str | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Load, measure the sensitivity table (and additivity); the record `quarch sensitivity
    --json` prints: `table` (a `SensitivityTable`), `text_name`, `additivity` (when asked),
    `versions`, `wall_s`.

    Raises:
        ValueError: a bad format, role, method or parameter (before the model is loaded).
    """
    from quarch.eval import package_versions, select_text, token_windows, tokenize_text
    from quarch.models import load_model
    from quarch.quant._methods_api import get_method
    from quarch.quant._sensitivity import (
        WindowEval,
        layer_groups,
        layer_sensitivity,
        measure_additivity,
    )

    t0 = time.perf_counter()
    parse_format(fmt, where="--weights/--format")
    tensor_role = _role(role)
    get_method(method).resolve_params(params)
    from quarch._device import device_and_dtype

    dev, torch_dtype = device_and_dtype(device, dtype)
    text = select_text(text_file=text_file, dataset=dataset)
    loaded = load_model(model, dtype=torch_dtype, device=dev)
    ids = token_windows(tokenize_text(loaded.tokenizer, text), seqlen, windows)
    calib_windows = None
    if tensor_role is Role.WEIGHT and get_method(method).needs_calibration:
        ctext = calibration_text(dataset=dataset, calib_text_file=None)
        calib_windows = _windows(loaded, ctext, calib[0], calib[1], seed)
    ev = WindowEval(loaded.model, ids)
    total = len(layer_groups(loaded.model, tensor_role))
    with _progress_bar(progress, total) as advance:
        table = layer_sensitivity(
            loaded.model,
            ev,
            format=fmt,
            role=tensor_role,
            method=method,
            params=params,
            calib_windows=calib_windows,
            seed=seed,
            model_name=loaded.source,
            text_sha256=text.sha256,
            progress=lambda _group: advance(),
        )
    record: dict[str, Any] = {"table": table.to_dict(), "text_name": text.name}
    if additivity:
        add = measure_additivity(
            loaded.model, table, ev, num_subsets=additivity, seed=seed, calib_windows=calib_windows
        )
        record["additivity"] = add.to_dict()
    record["versions"] = package_versions()
    record["wall_s"] = time.perf_counter() - t0
    return record


@contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Callable[[], None]]:
    """A rich progress bar over groups on stderr, yielding its `advance()`; or nothing."""
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("sensitivity", total=total)
        yield lambda: bar.advance(task)
