"""Model-cache entries carry checksums verified on load: a damaged entry is rebuilt with a
warning instead of being used (issue 15: a damaged cached weight file gave perplexity 347
instead of 37.6, silently)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from quarch.models import _checksum, load_model
from quarch.models import _load as load_module
from quarch.models._checksum import fingerprint


def _cached(path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("QUARCH_CACHE", str(cache))
    load_model(path)
    (folder,) = (cache / "gguf").iterdir()
    return folder


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _no_conversion(*_args: object) -> None:
    raise AssertionError("converted the GGUF again instead of reading the cache")


@pytest.mark.parametrize("sampled", [False, True], ids=["full-sha256", "sampled"])
def test_a_flipped_byte_in_the_weights_is_caught_and_rebuilt(
    tiny_gguf: tuple[Path, dict],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sampled: bool,
) -> None:
    if sampled:  # the shipped model's path: its weights are far above FULL_HASH_BYTES
        monkeypatch.setattr(_checksum, "FULL_HASH_BYTES", 1024)
        monkeypatch.setattr(_checksum, "HEAD_BYTES", 256)
        monkeypatch.setattr(_checksum, "SAMPLE_BYTES", 16)
    path, stored = tiny_gguf
    folder = _cached(path, tmp_path / "cache", monkeypatch)
    weights = folder / "model.safetensors"
    marker = json.loads((folder / "quarch-gguf-cache.json").read_text())
    assert ("sums" in marker["files"]["model.safetensors"]) is sampled
    _flip_byte(weights, weights.stat().st_size * 2 // 3 + 5)  # inside some tensor's data
    with pytest.warns(UserWarning, match=r"damaged \(model\.safetensors does not match"):
        again = load_model(path)
    for name, weight in stored.items():
        assert torch.equal(again.model.state_dict()[name], weight), name
    monkeypatch.setattr(load_module, "_convert_gguf", _no_conversion)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt entry verifies cleanly
        load_model(path)


def test_a_missing_or_extra_file_is_damage(
    tiny_gguf: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = tiny_gguf
    folder = _cached(path, tmp_path / "cache", monkeypatch)
    (folder / "tokenizer.json").unlink()
    with pytest.warns(UserWarning, match=r"tokenizer\.json does not match"):
        load_model(path)
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"stray")
    with pytest.warns(UserWarning, match=r"model-00001-of-00002\.safetensors does not match"):
        load_model(path)


def test_an_intact_entry_loads_without_conversion_or_warning(
    tiny_gguf: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = tiny_gguf
    _cached(path, tmp_path / "cache", monkeypatch)
    monkeypatch.setattr(load_module, "_convert_gguf", _no_conversion)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(path)


def _big_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, bytes]:
    monkeypatch.setattr(_checksum, "FULL_HASH_BYTES", 4096)
    monkeypatch.setattr(_checksum, "_CHUNK_WORDS", 4096)  # 32 kB chunks
    data = np.random.default_rng(0).integers(0, 256, 300_003, dtype=np.uint8).tobytes()
    path = tmp_path / "w.bin"
    path.write_bytes(data)
    return path, data


def test_sampled_fingerprint_sees_every_single_byte_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, data = _big_file(tmp_path, monkeypatch)
    before = fingerprint(path)
    assert set(before) == {"size", "sampled_sha256", "sums"}
    for offset in [*np.random.default_rng(1).integers(0, len(data), 40).tolist(), len(data) - 1]:
        for delta in (1, 0x80, 0xFF):
            changed = bytearray(data)
            changed[offset] = (changed[offset] + delta) % 256
            path.write_bytes(bytes(changed))
            assert fingerprint(path) != before, (offset, delta)
    path.write_bytes(data)
    assert fingerprint(path) == before


def test_sampled_fingerprint_sees_moved_and_truncated_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, data = _big_file(tmp_path, monkeypatch)
    before = fingerprint(path)
    chunk = 4096 * 8
    a, b = data[chunk : 2 * chunk], data[3 * chunk : 4 * chunk]
    swapped = data[:chunk] + b + data[2 * chunk : 3 * chunk] + a + data[4 * chunk :]
    path.write_bytes(swapped)
    assert fingerprint(path) != before
    path.write_bytes(data[:-8])
    assert fingerprint(path) != before
