"""Run a `quarch` verb and SIGKILL it at a chosen write: `python killer.py WATCH K DELAY_MS
COUNT_FILE ARGS...`.

An audit hook (PEP 578, `sys.addaudithook`) counts the file-system writes under the directory
WATCH: every `open` for writing and every rename (`os.replace` raises the `os.rename` event).
At the K-th one the process kills itself with SIGKILL, at once (DELAY_MS 0: before that open or
rename happens) or DELAY_MS milliseconds later (while the file is being written). K 0 never
kills; the number of writes counted is stored in COUNT_FILE at exit (how many moments there are
to kill at).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from pathlib import Path

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def main() -> None:
    watch = os.path.realpath(sys.argv[1])
    kill_at, delay_s = int(sys.argv[2]), float(sys.argv[3]) / 1000
    count_file = sys.argv[4]
    args = sys.argv[5:]
    count = 0

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def under(path: object) -> bool:
        if isinstance(path, int) or path is None:
            return False  # an fd: its open was counted
        path = os.fsdecode(os.fspath(path))  # type: ignore[arg-type]
        return os.path.realpath(path).startswith(watch + os.sep)

    def hook(event: str, a: tuple[object, ...]) -> None:
        nonlocal count
        if event == "open":
            path, mode, flags = a
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and bool(flags & WRITE_FLAGS)
            )
            hit = writing and under(path)
        elif event == "os.rename":
            hit = under(a[1])
        else:
            return
        if not hit:
            return
        count += 1
        if count == kill_at:
            if delay_s <= 0:
                die()
            threading.Timer(delay_s, die).start()

    def save_count() -> None:
        with open(count_file, "w", encoding="utf-8") as f:  # outside WATCH
            f.write(str(count))

    atexit.register(save_count)
    sys.addaudithook(hook)
    # the checkout this file belongs to, not whichever quarch the environment installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from quarch.cli import main as quarch_main

    sys.argv = ["quarch", *args]
    quarch_main()


if __name__ == "__main__":
    main()
