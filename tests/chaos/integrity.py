"""What a directory of quarch outputs must look like after any kill: every file under its final
name is whole (it parses as its kind), and only hidden temporaries may be partial."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import yaml

HIDDEN_OK = (".tmp-",)  # quarch._atomic's temporaries (swept by the next write)


def check_file(path: Path) -> str | None:
    """None when `path` is a whole file of its kind, else what is wrong."""
    suffix = path.suffix
    try:
        if path.stat().st_size == 0 and suffix not in (".lock",):
            return "empty"
        if suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif suffix == ".yaml":
            yaml.safe_load(path.read_text(encoding="utf-8"))
        elif suffix == ".csv":
            rows = list(csv.reader(path.open(encoding="utf-8", newline="")))
            if not rows or len({len(r) for r in rows}) != 1:
                return "ragged or empty CSV"
        elif suffix == ".html":
            if not path.read_text(encoding="utf-8").rstrip().endswith("</html>"):
                return "HTML without its end"
        elif suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                for key in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                    f.get_tensor(key)
        elif suffix == ".gguf":
            import gguf

            gguf.GGUFReader(str(path))
        elif suffix == ".db":
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                    return "SQLite integrity check failed"
    except Exception as err:
        return f"{type(err).__name__}: {str(err)[:200]}"
    return None


def problems(folder: Path) -> list[str]:
    """Every file under `folder` that is not whole, as 'path: problem'."""
    out = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            if not any(mark in str(rel) for mark in HIDDEN_OK):
                out.append(f"{rel}: an unexpected hidden file")
            continue
        if path.name.endswith(("-wal", "-shm", "-journal")):
            continue  # SQLite's own recovery files
        found = check_file(path)
        if found is not None:
            out.append(f"{rel}: {found}")
    return out
