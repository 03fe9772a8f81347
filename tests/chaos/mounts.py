"""Small file systems for the chaos tests: a full disk and a read-only directory.

A tmpfs of a few hundred kB is a real full disk (ENOSPC) and a read-only tmpfs a real read-only
directory (EROFS, even for root). Mounting needs root with CAP_SYS_ADMIN; where that fails the
fixtures fall back: a full disk becomes a file-size limit (`RLIMIT_FSIZE`: a write past it fails
with EFBIG) in a child process, a read-only directory a `chmod 0o555` one (which root ignores, so
that case skips for root without mounts).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _mount(target: Path, options: str) -> bool:
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


@contextmanager
def small_tmpfs(target: Path, size_kb: int) -> Iterator[bool]:
    """Mount a tmpfs of `size_kb` kB at `target` (created); yields whether it is mounted."""
    target.mkdir(parents=True, exist_ok=True)
    mounted = _mount(target, f"size={size_kb}k,mode=0777")
    try:
        yield mounted
    finally:
        if mounted:
            _umount(target)


@contextmanager
def read_only_dir(target: Path) -> Iterator[bool]:
    """A directory at `target` nobody (root included, where mounting works) can write;
    yields whether it really is read-only for this process."""
    target.mkdir(parents=True, exist_ok=True)
    if _mount(target, "size=64k,ro"):
        try:
            yield True
        finally:
            _umount(target)
        return
    target.chmod(0o555)
    try:
        probe = target / ".probe"
        try:
            probe.touch()
        except OSError:
            yield True
        else:
            probe.unlink()
            yield False
    finally:
        target.chmod(0o755)
