"""Atomic outputs: every file quarch writes appears whole under its final name, or not at all.

A writer works on a hidden temporary file in the target's own directory
(`.<stem>.<pid>-<random><suffix>`, so a kill, a full disk or an error never leaves a truncated
file under the final name), flushes and `fsync`s it, then `os.replace`s it over the target
(atomic on POSIX within one file system) and `fsync`s the directory so that the rename itself
survives a crash. This is the standard recipe; see e.g. the LWN article "Ensuring data reaches
disk" (https://lwn.net/Articles/457667/) and `rename(2)`.

- `write_text`, `write_bytes`, `write_json`, `write_yaml`: whole documents.
- `atomic_open`: a file object for writers that stream (`csv.writer`, ...).
- `atomic_path`: a temporary path for libraries that write to a path themselves (plotly, kaleido,
  the `gguf` writer); it keeps the target's suffix, which some of them read.
- `staged_dir`: a directory of files (a checkpoint): written into a hidden sibling, then
  published at once (a new directory) or file by file with a marker file moved last.
- `writable_dir`: an output directory created and proven writable before any work starts.

Temporary files of a killed process are removed by the next write of the same target.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_TMP_MARK = ".tmp-"


def _temp_name(path: Path) -> Path:
    """A hidden sibling of `path` that names this process and keeps `path`'s suffix."""
    token = f"{_TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    return path.with_name(f".{path.stem}{token}{path.suffix}")


def _sweep(path: Path) -> None:
    """Remove temporaries of `path` left by processes that no longer run (a kill mid-write)."""
    with contextlib.suppress(OSError):
        head = f".{path.stem}{_TMP_MARK}"
        for old in path.parent.iterdir():
            if not old.name.startswith(head):
                continue
            pid = old.name[len(head) :].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                if old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    old.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    """Persist a rename in `folder` (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write `path`'s content to; published over `path` when the block
    ends without an exception, removed otherwise. The parent directory must exist."""
    target = Path(path)
    _sweep(target)
    tmp = _temp_name(target)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(tmp)
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_open(
    path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO[Any]]:
    """`open(path, mode)` on a temporary file that replaces `path` when the block succeeds."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    binary = mode == "wb"
    with atomic_path(path) as tmp:
        # O_EXCL: never write through a file or link someone else put at the temporary name;
        # 0o666 & umask: the permissions a plain open() would give
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        f: IO[Any]
        if binary:
            f = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding=encoding, newline=newline)
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns `path`."""
    with atomic_open(path, "wb", encoding=None) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically; returns `path`."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def write_json(path: str | Path, data: Any, *, indent: int | None = 2, **dumps: Any) -> Path:
    """Write `data` as JSON (with a final newline) to `path` atomically; returns `path`."""
    return write_text(path, json.dumps(data, indent=indent, **dumps) + "\n")


def write_yaml(path: str | Path, data: Any, *, head: str = "") -> Path:
    """Write `data` as YAML (`yaml.safe_dump`, keys in order), after the comment lines `head`,
    to `path` atomically; returns `path`."""
    import yaml

    return write_text(path, head + yaml.safe_dump(data, sort_keys=False))


@contextlib.contextmanager
def staged_dir(out: str | Path, *, last: str | None = None) -> Iterator[Path]:
    """A hidden sibling directory to write a directory of files into, published as `out` when
    the block succeeds (removed otherwise).

    A new `out` appears at once (one rename). Into an existing directory the files are moved one
    by one (each rename atomic), after removing the marker file `last` (when given) and before
    moving it back in last: a reader that trusts the files only next to their marker never sees
    a mixture of two writes. Files of `out` that the block did not write are left alone.
    """
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    _sweep(target)
    stage = _temp_name(target)
    stage.mkdir()
    try:
        yield stage
        _publish(stage, target, last)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _publish(stage: Path, target: Path, last: str | None) -> None:
    files = sorted(p for p in stage.rglob("*") if p.is_file())
    for p in files:
        _fsync_file(p)
    if not target.exists():
        os.replace(stage, target)
        _fsync_dir(target.parent)
        return
    if not target.is_dir():
        raise ValueError(f"{str(target)!r} exists and is not a directory")
    if last is not None:
        (target / last).unlink(missing_ok=True)
    marker = stage / last if last is not None else None
    for p in [p for p in files if p != marker] + ([marker] if marker in files else []):
        dest = target / p.relative_to(stage)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(p, dest)
        _fsync_dir(dest.parent)


def writable_dir(folder: str | Path, *, what: str = "--out") -> Path:
    """Create `folder` (and its parents) if missing and prove it writable by creating and
    removing a file in it; returns it. Called before work starts, so that an unwritable output
    directory stops a command at once instead of after minutes of work.

    Raises:
        ValueError: naming `what` and the folder, when it cannot be created or written.
    """
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = _temp_name(path / "write-probe")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        probe.unlink()
    except FileExistsError:
        raise ValueError(f"{what} {str(path)!r}: exists and is not a directory") from None
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ValueError(f"{what} {str(path)!r}: not a writable directory ({reason})") from None
    if not path.is_dir():
        raise ValueError(f"{what} {str(path)!r}: exists and is not a directory")
    return path


def writable_file(path: str | Path, *, what: str = "--out") -> Path:
    """`writable_dir` for the directory of an output file `path` (also refused when `path` is
    itself a directory); returns `path`."""
    file = Path(path)
    if file.is_dir():
        raise ValueError(f"{what} {str(file)!r}: is a directory, expected a file name")
    writable_dir(file.parent, what=what)
    return file


__all__ = [
    "atomic_open",
    "atomic_path",
    "staged_dir",
    "writable_dir",
    "writable_file",
    "write_bytes",
    "write_json",
    "write_text",
    "write_yaml",
]
