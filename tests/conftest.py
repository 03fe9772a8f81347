"""Session-wide test settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Converted GGUF models go to a per-session directory, not the user's cache."""
    folder = tmp_path_factory.mktemp("quarch-cache")
    old = os.environ.get("QUARCH_CACHE")
    os.environ["QUARCH_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("QUARCH_CACHE", None)
    else:
        os.environ["QUARCH_CACHE"] = old
