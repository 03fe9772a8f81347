"""Property-based fuzzing of weight files (issue 15): a damaged .safetensors file is refused
with a one-line ValueError when it is opened or read, never another exception."""

from __future__ import annotations

import itertools
import os
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from quarch.models import count_weight_tensors, iter_weight_tensors, open_weight_file

GOOD = save(
    {
        "a.weight": torch.arange(24, dtype=torch.float32).reshape(4, 6),
        "b.weight": torch.ones(2, 3, dtype=torch.bfloat16),
        "c": torch.zeros(5, dtype=torch.int32),
    }
)
HEADER_END = 8 + int.from_bytes(GOOD[:8], "little")
FUZZ = settings(
    max_examples=int(os.environ.get("QUARCH_FUZZ_EXAMPLES", "200")),  # more for a long campaign
    deadline=timedelta(seconds=2),  # generous for a loaded machine; the bugs took minutes
    suppress_health_check=[HealthCheck.too_slow],
)
_names = itertools.count()


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-weights")


EDITS = st.lists(
    st.tuples(
        st.integers(0, len(GOOD)),  # where
        st.integers(0, 12),  # bytes cut
        st.one_of(  # bytes inserted: random, or JSON-ish text aimed at the header
            st.binary(max_size=6),
            st.sampled_from([b'"', b"{", b"}", b"[", b"]", b",", b"0", b"-1", b"1e30", b"null"]),
        ),
    ),
    min_size=1,
    max_size=3,
)


@FUZZ
@given(edits=EDITS, in_header=st.booleans())
def test_damaged_safetensors_files(
    fuzz_dir: Path, edits: list[tuple[int, int, bytes]], in_header: bool
) -> None:
    raw = GOOD
    for at, cut, insert in edits:
        at = at % HEADER_END if in_header else at
        raw = raw[:at] + insert + raw[at + cut :]
    path = fuzz_dir / f"w-{next(_names)}.safetensors"
    path.write_bytes(raw)
    try:
        wf = open_weight_file(path)
        count = count_weight_tensors(wf)
        tensors = list(iter_weight_tensors(wf))
    except ValueError as error:
        msg = str(error)
        assert "\n" not in msg and len(msg) < 600, msg[:700]
    else:
        assert count == len(tensors)
        assert all(t.dtype == torch.float32 for _, t in tensors)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # garbage scales
@FUZZ
@given(edits=EDITS, near_start=st.booleans())
def test_damaged_gguf_files(
    fuzz_dir: Path,
    tiny_gguf: tuple[Path, dict],
    edits: list[tuple[int, int, bytes]],
    near_start: bool,
) -> None:
    raw = tiny_gguf[0].read_bytes()
    for at, cut, insert in edits:
        at = at % 4096 if near_start else at * len(raw) // len(GOOD)  # header, or anywhere
        raw = raw[:at] + insert + raw[at + cut :]
    path = fuzz_dir / f"w-{next(_names)}.gguf"
    path.write_bytes(raw)
    try:
        wf = open_weight_file(path)
        count = count_weight_tensors(wf)
        tensors = list(iter_weight_tensors(wf))
    except ValueError as error:
        msg = str(error)
        assert "\n" not in msg and len(msg) < 600, msg[:700]
    else:
        assert count == len(tensors)
