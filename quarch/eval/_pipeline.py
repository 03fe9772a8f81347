"""The `quarch eval` pipeline as an API: load a model, measure perplexity, return a record.

`eval_record` is the JSON-ready record of one evaluation (model, text, result, versions); other
pipelines that change the model first (`quarch.quant.run_quantize`) build theirs from it.
`print_eval` renders a record as the table `quarch eval` prints.
"""

from __future__ import annotations

import platform
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from quarch.eval._corpus import EvalText
    from quarch.eval._perplexity import PerplexityResult
    from quarch.models import LoadedModel

DTYPES = ("float32", "bfloat16", "float16")


def parse_dtype(name: str) -> torch.dtype:
    """A weight dtype by name (`float32`, `bfloat16`, `float16`).

    Raises:
        ValueError: any other name.
    """
    import torch

    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; valid: {', '.join(DTYPES)}")
    dtype: torch.dtype = getattr(torch, name)
    return dtype


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a result depends on."""
    versions = {"python": platform.python_version()}
    for package in ("quarch", "torch", "transformers", "gguf", "tokenizers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def eval_record(
    loaded: LoadedModel, result: PerplexityResult, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A JSON-ready record of one evaluation: model, text, result, versions, plus `extra`."""
    parameter = next(loaded.model.parameters())
    return {
        "model": {
            "source": loaded.source,
            "kind": str(loaded.kind),
            "note": loaded.note,
            "dtype": str(parameter.dtype).removeprefix("torch."),
            "device": str(parameter.device),
            "load_s": loaded.load_s,
        },
        "perplexity": asdict(result),
        "versions": package_versions(),
        **(extra or {}),
    }


def run_eval(
    *,
    model: str | None = None,
    text_file: Path | None = None,
    dataset: str | None = None,
    seqlen: int = 512,
    max_windows: int | None = None,
    batch_size: int = 1,
    dtype: str | None = None,
    device: str = "cpu",
    trust_remote_code: bool = False,
    tasks: list[str] | None = None,
    task_limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Load a model, measure its perplexity (and lm-eval tasks); the record `quarch eval --json`
    prints (task scores under `tasks`). Without a text file or dataset, perplexity is measured
    on every evaluation domain of the built-in corpus: `domains` holds each result by domain
    name and `perplexity` the first's (the Python reference). `device`: cpu, cuda[:N] or mps;
    `dtype` None: bfloat16 on GPUs, float32 on the CPU (`quarch._device`).

    Raises:
        ValueError / ImportError: bad arguments, a missing model or text, a missing harness.
    """
    from quarch.eval import _tasks
    from quarch.eval._perplexity import perplexity
    from quarch.models import load_model

    names = list(tasks or [])
    if names:
        _tasks.require_harness()
    texts = domain_texts(text_file=text_file, dataset=dataset)
    from quarch._device import device_and_dtype

    dev, torch_dtype = device_and_dtype(device, dtype)
    loaded = load_model(model, dtype=torch_dtype, trust_remote_code=trust_remote_code, device=dev)
    extra = None
    if names:
        scores = _tasks.evaluate_tasks(
            loaded.model, loaded.tokenizer, names, limit=task_limit, batch_size=batch_size
        )
        extra = {"tasks": scores}
    results = {
        name: perplexity(
            loaded.model,
            loaded.tokenizer,
            text,
            seqlen=seqlen,
            max_windows=max_windows,
            batch_size=batch_size,
            progress=progress,
        )
        for name, text in texts.items()
    }
    record = eval_record(loaded, next(iter(results.values())), extra)
    if len(results) > 1:
        record["domains"] = {name: asdict(r) for name, r in results.items()}
    return record


def domain_texts(*, text_file: Path | None, dataset: str | None) -> dict[str, EvalText]:
    """The texts to evaluate on, by name: the file or dataset asked for, else every evaluation
    domain of the built-in corpus (the first is the one `perplexity` fields report)."""
    from quarch.eval._corpus import select_text
    from quarch.eval._domains import eval_texts

    if text_file is None and dataset is None:
        return eval_texts()
    text = select_text(text_file=text_file, dataset=dataset)
    return {text.name: text}


def domain_rows(record: dict[str, Any]) -> dict[str, str]:
    """Table rows `perplexity (<domain>)` for a record with per-domain results, else none."""
    return {
        f"perplexity ({name})": f"{result['ppl']:.3f}"
        for name, result in record.get("domains", {}).items()
    }


def print_eval(record: dict[str, Any], rows: dict[str, Any] | None = None) -> None:
    """Print an evaluation record (`eval_record`) as a table on stdout, with extra `rows`."""
    from rich.console import Console
    from rich.table import Table

    m, p = record["model"], record["perplexity"]
    tokens_per_s = p["num_windows"] * p["seqlen"] / p["wall_s"] if p["wall_s"] > 0 else 0.0
    table = Table(title=f"perplexity ({p['protocol']})", show_header=False)
    lines = [
        ("model", f"{m['source']} ({m['kind']})"),
        ("weights", m["note"]),
        ("text", f"{p['text_name']} (sha256 {p['text_sha256'][:16]}…)"),
        ("seqlen × windows", f"{p['seqlen']} × {p['num_windows']}"),
        ("tokens predicted", f"{p['num_tokens']:,}"),
        ("tokens not evaluated", f"{p['dropped_tokens']:,} of {p['text_tokens']:,}"),
        *((str(k), str(v)) for k, v in (rows or {}).items()),
        ("NLL (nats/token)", f"{p['nll']:.4f}"),
        ("perplexity", f"[bold]{p['ppl']:.3f}[/bold]"),
        ("95% interval (t over windows)", f"{p['ppl_low']:.3f} – {p['ppl_high']:.3f}"),
        ("wall time", f"{p['wall_s']:.1f} s ({tokens_per_s:,.0f} tokens/s)"),
    ]
    for name, value in lines:
        table.add_row(name, value)
    Console().print(table)
