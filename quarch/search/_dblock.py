"""A lock shared by every process (and machine) that stores trials into one study.

Several drivers on one study (`--workers N`, or `quarch explore` started on several machines
against one database) each check "does the study hold fewer than N finished trials?" before
they store a trial. Without a lock two drivers can both see N − 1 and both store, ending with
more than N. `StudyLock` makes the check and the store one critical section:

- PostgreSQL: a transaction-scoped advisory lock (`pg_advisory_xact_lock`), keyed by the
  study name; the server releases it when the transaction ends or its connection dies, so a
  SIGKILLed driver never leaves it held.
  https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS
- SQLite: an exclusive `flock` on a file next to the database (SQLite databases are local
  files; the kernel drops the lock when its holder dies). A lock held through SQLite itself
  (`BEGIN IMMEDIATE`) would block Optuna's own write on another connection.
- Any other database, and the in-memory storage: a lock within this process only.
"""

from __future__ import annotations

import fcntl
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def advisory_key(study_name: str) -> int:
    """A signed 64-bit key (PostgreSQL's advisory lock space) derived from the study name."""
    digest = hashlib.sha256(f"quarch-study:{study_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class StudyLock:
    """Held while a driver checks the stored trial count and stores a trial (module doc)."""

    def __init__(self, url: str, study_name: str, engine: Any | None) -> None:
        """url: the storage URL; engine: the storage's SQLAlchemy engine (None in memory)."""
        self.study_name = study_name
        self._local = threading.Lock()
        self._engine = engine
        self._path: Path | None = None
        self.kind = "process"
        if engine is not None and engine.dialect.name == "postgresql":
            self.kind = "postgresql"
        elif engine is not None and engine.dialect.name == "sqlite":
            database = engine.url.database
            if database and database != ":memory:":
                self._path = Path(f"{database}.lock")
                self.kind = "file"

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the body of a `with` block."""
        with self._local:
            if self.kind == "postgresql":
                with self._postgres():
                    yield
            elif self._path is not None:
                with self._file(self._path):
                    yield
            else:
                yield

    @contextmanager
    def _postgres(self) -> Iterator[None]:
        import sqlalchemy

        assert self._engine is not None
        # the lock lasts until this transaction ends
        with self._engine.connect() as conn, conn.begin():
            conn.execute(
                sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"),
                {"key": advisory_key(self.study_name)},
            )
            yield

    @staticmethod
    @contextmanager
    def _file(path: Path) -> Iterator[None]:
        with path.open("a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
