"""Checksums of model-cache entries: what a cached GGUF conversion must still match to be used.

Hashing the whole 517 MB weight file of the shipped model with SHA-256 takes 0.6-1.0 s on the
two-core development machine (measured with `hashlib.file_digest`; CRC32 is no faster), more
than the 0.3 s the warm load itself takes. So a file is fingerprinted by

- its size,
- SHA-256 of the whole file when it is small (≤ `FULL_HASH_BYTES`: configs, tokenizers), else
  SHA-256 of its first `HEAD_BYTES` (the safetensors header: every tensor's name, dtype, shape
  and offsets) and of `SAMPLES` evenly spaced `SAMPLE_BYTES` windows,
- and, for large files, two 64-bit word sums over the whole file (numpy, ~0.1 s for 517 MB):
  the plain sum of its little-endian 8-byte words and the sum weighted by 8 MiB-chunk number
  (Fletcher-style). Changing any single byte changes the plain sum (the change is
  d·256^k mod 2^64 with 0 < |d| < 256, k < 8: never 0); moving data between chunks changes the
  weighted one.

Verifying the shipped model's entry this way takes 0.06-0.09 s for the weights alone and
0.1-0.25 s for the whole entry on that machine under a load average of 8 (full SHA-256 of the
weights: 0.6-1.0 s under the same load).

This is an integrity check against damage (flipped bits, zeroed or truncated pages, a partial
copy), not a defence against someone who crafts a collision: the cache is the user's own
directory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

FULL_HASH_BYTES = 16 * 2**20
HEAD_BYTES = 2**20
SAMPLES = 64
SAMPLE_BYTES = 2**16
_CHUNK_WORDS = 2**20  # 8 MiB of 8-byte words per weighted-sum chunk
_MASK = 2**64 - 1


def fingerprint(path: Path) -> dict[str, Any]:
    """The fingerprint of one file (a JSON-ready dict; see the module docstring)."""
    size = path.stat().st_size
    if size <= FULL_HASH_BYTES:
        with path.open("rb") as f:
            return {"size": size, "sha256": hashlib.file_digest(f, "sha256").hexdigest()}
    return {"size": size, "sampled_sha256": _sampled_sha256(path, size), "sums": _word_sums(path)}


def fingerprints(folder: Path, skip: str) -> dict[str, dict[str, Any]]:
    """Fingerprints of every file directly in `folder` except `skip`, by file name."""
    return {
        p.name: fingerprint(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != skip
    }


def mismatch(folder: Path, expected: dict[str, dict[str, Any]], skip: str) -> str | None:
    """None when `folder` holds exactly the files of `expected`, each matching its fingerprint;
    else the name of the first file that differs (or is missing or extra)."""
    present = {p.name for p in folder.iterdir() if p.is_file() and p.name != skip}
    odd = sorted(present ^ set(expected))
    if odd:
        return odd[0]
    for name in sorted(expected):
        if fingerprint(folder / name) != expected[name]:
            return name
    return None


def _sampled_sha256(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    step = max(1, (size - HEAD_BYTES) // SAMPLES)
    with path.open("rb") as f:
        digest.update(f.read(HEAD_BYTES))
        for i in range(SAMPLES):
            f.seek(HEAD_BYTES + i * step)
            digest.update(f.read(SAMPLE_BYTES))
        f.seek(max(0, size - SAMPLE_BYTES))
        digest.update(f.read(SAMPLE_BYTES))  # the end: catches truncation of the last tensor
    return digest.hexdigest()


def _word_sums(path: Path) -> list[int]:
    """[plain, chunk-weighted] sums mod 2^64 of the file's 8-byte little-endian words (the
    tail, if the size is not a multiple of 8, zero-padded into one last word)."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    whole = len(data) // 8 * 8
    words = data[:whole].view("<u8")
    plain = weighted = 0
    n_chunks = -(-len(words) // _CHUNK_WORDS)
    for c in range(n_chunks):
        part = int(words[c * _CHUNK_WORDS : (c + 1) * _CHUNK_WORDS].sum(dtype=np.uint64))
        plain = (plain + part) & _MASK
        weighted = (weighted + (c + 1) * part) & _MASK
    tail = int.from_bytes(bytes(data[whole:]).ljust(8, b"\0"), "little")
    plain = (plain + tail) & _MASK
    weighted = (weighted + (n_chunks + 1) * tail) & _MASK
    del words, data
    return [plain, weighted]
