"""`export_model`: quantize with quarch's emulation, write a checkpoint other tools load.

Targets (`Target`):

- `hf`: dequantized weights as safetensors with config.json and the tokenizer; transformers'
  `from_pretrained` (or any tool reading HF checkpoints) loads it as a float model whose weights
  are quarch's quantized weights. Run-time formats (linear inputs, KV cache) cannot be expressed
  in a plain HF checkpoint: they are listed under `not_expressed` in `quarch_export.json`.
- `compressed-tensors`: packed integer / float8 codes with quarch's scales, per-layer schemes and
  a KV-cache scheme (see `_ct.py`), loaded by vLLM and by transformers with `compressed-tensors`.
- `gguf`: one GGUF file for llama.cpp (`out_dir` ending in .gguf, else out_dir/model.gguf), each
  weight in the GGUF type of its format, bit-exact to quarch's emulation (see `_gguf.py`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch
from torch import nn

from quarch._atomic import staged_dir, writable_dir, writable_file, write_json
from quarch._checks import choice
from quarch.export._collect import Quantized, kv_formats_by_role, quantize_for_export
from quarch.export._write import (
    SIDECAR,
    save_checkpoint,
    untie_if_needed,
    write_sidecar,
    written_files,
)
from quarch.quant import QuantConfig


class Target(StrEnum):
    """Checkpoint layouts `export_model` writes."""

    HF = "hf"
    COMPRESSED_TENSORS = "compressed-tensors"
    GGUF = "gguf"

    @staticmethod
    def parse(value: str | Target) -> Target:
        return choice(Target, value, "export target")


@dataclass(frozen=True, kw_only=True)
class ExportRecord:
    """What an export wrote.

    schemes: scheme description ("weight=int4_g128, input=float") -> number of layers.
    kv_cache: {"k_cache": {format: layers}, "v_cache": {...}} ("float" = not quantized).
    not_expressed: run-time formats the target cannot carry (quarch applies them, the checkpoint
        does not say so); empty when the checkpoint holds the whole design.
    warnings: what loads in transformers but not in a serving engine (e.g. a fused group of
        vLLM with mixed schemes).
    """

    target: Target
    out_dir: str
    source: str
    config: Mapping[str, Any]
    schemes: Mapping[str, int]
    kv_cache: Mapping[str, Mapping[str, int]]
    not_expressed: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    bytes_written: int = 0
    time_s: float = 0.0
    versions: Mapping[str, str] = field(default_factory=dict)
    tensor_types: Mapping[str, int] = field(default_factory=dict)  # gguf: GGUF type -> tensors

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": str(self.target),
            "out_dir": self.out_dir,
            "source": self.source,
            "config": dict(self.config),
            "schemes": dict(self.schemes),
            "kv_cache": {k: dict(v) for k, v in self.kv_cache.items()},
            "not_expressed": list(self.not_expressed),
            "warnings": list(self.warnings),
            "files": list(self.files),
            "bytes_written": self.bytes_written,
            "time_s": self.time_s,
            "versions": dict(self.versions),
            "tensor_types": dict(self.tensor_types),
        }


def _scheme_counts(q: Quantized) -> dict[str, int]:
    out: dict[str, int] = {}
    for layer in q.layers.values():
        w = "float" if layer.weight_format is None else str(layer.weight_format)
        x = "float" if layer.input_format is None else str(layer.input_format)
        key = f"{layer.kind}: weight={w}, input={x}"
        out[key] = out.get(key, 0) + 1
    return out


def _hf_not_expressed(q: Quantized) -> list[str]:
    out = []
    inputs: dict[str, int] = {}
    for layer in q.layers.values():
        if layer.input_format is not None:
            inputs[str(layer.input_format)] = inputs.get(str(layer.input_format), 0) + 1
    for fmt, n in inputs.items():
        out.append(
            f"inputs of {n} linear layers quantized to {fmt} at run time: a plain HF checkpoint "
            "has no activation formats, so loaders run these layers with float inputs"
        )
    for role, counts in kv_formats_by_role(q.kv).items():
        quant = {f: n for f, n in counts.items() if f != "float"}
        for fmt, n in quant.items():
            out.append(
                f"{role} of {n} attention layers in {fmt}: a plain HF checkpoint has no KV-cache "
                "format, so loaders keep the cache in float"
            )
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("quarch", "torch", "transformers", "compressed-tensors"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def _linear_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def check_output(out_dir: str | Path, target: str | Target) -> Path:
    """Refuse an output that cannot be written before any work: the checkpoint directory's
    parent (or, for gguf, the .gguf file's directory) is created and proven writable; returns
    `out_dir` as a path.

    Raises:
        ValueError: naming the path, when it is not writable or of the wrong kind.
    """
    out = Path(out_dir)
    if Target.parse(target) is Target.GGUF:
        from quarch.export._gguf import gguf_file

        writable_file(gguf_file(out))
    elif out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a directory")
    else:
        writable_dir(out if out.is_dir() else out.parent)
    return out


def export_model(
    loaded: Any,
    config: QuantConfig,
    target: str | Target,
    out_dir: str | Path,
    *,
    calib_windows: torch.Tensor | Sequence[torch.Tensor] | None = None,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
) -> ExportRecord:
    """Quantize `loaded.model` as `config` says and write it to `out_dir` in `target`'s layout.

    Args:
        loaded: a `quarch.models.LoadedModel` (model and tokenizer); the model is left unchanged.
        config: the QuantConfig (as `quarch quantize --config` applies it).
        target: "hf", "compressed-tensors" or "gguf".
        out_dir: the checkpoint directory (created; files in it are overwritten); for gguf, the
            .gguf file to write, or a directory to write model.gguf into.
        calib_windows: token windows for methods that need calibration (GPTQ, ...).
        progress: `progress(task, total)` returns a callback advanced once per layer written.

    Returns:
        An `ExportRecord` (also written, with the config, to out_dir/quarch_export.json).

    Raises:
        ValueError: unknown target; a format, method or rotation the target cannot express
            (the message names the nearest one that it can); the compressed-tensors package is
            missing for that target; or the config does not fit the model.
    """
    t0 = time.perf_counter()
    tgt = Target.parse(target)
    if tgt is Target.COMPRESSED_TENSORS:
        from quarch.export._ct import require_library

        require_library()
    _check_dtype(loaded.model)
    out = check_output(out_dir, tgt)
    if tgt is Target.GGUF:
        return _export_gguf(loaded, config, out, calib_windows, progress, t0)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a directory")
    q = quantize_for_export(loaded.model, config, calib_windows=calib_windows)
    with staged_dir(out, last=SIDECAR) as stage:  # whole files only; the sidecar moves last
        record = _write_checkpoint(tgt, loaded, q, out, stage, config, progress, t0)
    return record


def _write_checkpoint(
    tgt: Target,
    loaded: Any,
    q: Quantized,
    out: Path,
    stage: Path,
    config: QuantConfig,
    progress: Callable[[str, int], Callable[[], None]] | None,
    t0: float,
) -> ExportRecord:
    """Write the checkpoint and its sidecar into `stage` (published as `out`)."""
    not_expressed, warnings = _write(tgt, loaded, q, stage, progress)
    record = ExportRecord(
        target=tgt,
        out_dir=str(out),
        source=str(getattr(loaded, "source", "")),
        config=config.to_dict(),
        schemes=_scheme_counts(q),
        kv_cache=kv_formats_by_role(q.kv),
        not_expressed=tuple(not_expressed),
        warnings=tuple(warnings),
        versions=_versions(),
    )
    write_sidecar(stage, record.to_dict())
    files = written_files(stage)
    record = dataclasses.replace(
        record,
        files=files,
        bytes_written=sum((stage / f).stat().st_size for f in files),
        time_s=time.perf_counter() - t0,
    )
    write_sidecar(stage, record.to_dict())
    return record


def _export_gguf(
    loaded: Any,
    config: QuantConfig,
    out: Path,
    calib_windows: torch.Tensor | Sequence[torch.Tensor] | None,
    progress: Callable[[str, int], Callable[[], None]] | None,
    t0: float,
) -> ExportRecord:
    """The gguf target: one file (`out` if it ends in .gguf, else out/model.gguf) and the sidecar
    `<file>.quarch_export.json` next to it."""
    from quarch.export._gguf import check_plan, gguf_file, runtime_not_expressed, write_gguf

    path = gguf_file(out)
    if path.exists() and path.is_dir():
        raise ValueError(f"--out {str(path)!r} is a directory, not a .gguf file")
    check_plan(loaded.model, config)
    q = quantize_for_export(loaded.model, config, calib_windows=calib_windows)
    untie = untie_if_needed(loaded.model, q.state_dict)
    advance = progress("writing tensors", len(q.state_dict)) if progress else None
    written = write_gguf(loaded, q, path, untie=untie, advance=advance)
    sidecar = path.with_name(path.name + "." + SIDECAR)
    record = ExportRecord(
        target=Target.GGUF,
        out_dir=str(path),
        source=str(getattr(loaded, "source", "")),
        config=config.to_dict(),
        schemes=_scheme_counts(q),
        kv_cache=kv_formats_by_role(q.kv),
        not_expressed=(*runtime_not_expressed(q), *written.not_expressed),
        files=(path.name, sidecar.name),
        bytes_written=path.stat().st_size,
        time_s=time.perf_counter() - t0,
        versions={**_versions(), **_gguf_version()},
        tensor_types=dict(written.types),
    )
    write_json(sidecar, record.to_dict())
    return record


def _gguf_version() -> dict[str, str]:
    from importlib.metadata import version

    return {"gguf": version("gguf")}


def _write(
    target: Target,
    loaded: Any,
    q: Quantized,
    out: Path,
    progress: Callable[[str, int], Callable[[], None]] | None,
) -> tuple[list[str], list[str]]:
    """Write the checkpoint of `q` in `target`'s layout; (not expressed, warnings)."""
    untie = untie_if_needed(loaded.model, q.state_dict)
    if target is Target.HF:
        save_checkpoint(loaded.model, loaded.tokenizer, q.state_dict, out, untie=untie)
        return _hf_not_expressed(q), []
    from quarch.export._ct import ct_layout, update_config

    advance = progress("compressing layers", len(q.layers)) if progress else None
    layout = ct_layout(q, _linear_names(loaded.model), advance)
    save_checkpoint(loaded.model, loaded.tokenizer, layout.state_dict, out, untie=untie)
    update_config(str(out), layout.quantization_config)
    return [], list(layout.warnings)


def _check_dtype(model: nn.Module) -> None:
    """quarch's scales are float32 and its dequantized weights are exact only in float32."""
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32}:
        raise ValueError(
            f"export needs the model in float32 (got {sorted(str(d) for d in dtypes)}): in a "
            "lower precision the dequantized weights are rounded again and no longer equal "
            "quarch's codes times its scales; load it with dtype=torch.float32"
        )


__all__ = ["SIDECAR", "ExportRecord", "Target", "export_model"]
