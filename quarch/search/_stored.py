"""The expensive results of a study, kept in the study's own database.

A study's trials are cheap (a proxy evaluation each); what costs is measured on the model:
the sensitivity table's cells, the float model's NLL on the sensitivity windows, and the real
perplexity of every baseline and front design. `ResultStore` keeps each of them as one row of
a side table, `quarch_results`, in the database that holds the Optuna study (SQLite or
PostgreSQL, through the SQLAlchemy engine of Optuna's RDB storage), so every machine pointed at
that storage reuses them and recomputes nothing.

A row is keyed by the SHA-256 of the canonical JSON of everything that determines its value
(`about`): the model's fingerprint, the text and windows it is measured on, the exact
`QuantConfig` applied (its layer patterns name the layers, its rules the formats and methods),
and the calibration windows when a calibrated method is applied. Designs of different spaces
or studies that quantize the same tensors the same way share a row. `about` is stored beside
the value, readable. Values are JSON only (nothing is ever unpickled).

The first writer of a key wins (`INSERT … ON CONFLICT DO NOTHING`): two drivers that measured
the same cell store one row, and a row is written in one statement, so a process killed at any
moment leaves a row whole or absent. For the in-memory storage (`_runner.MEMORY`) the store is
a dict in this process.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

KEY_VERSION = 1
"""Part of every key: bumped when what a stored value means changes, so old rows are ignored."""

TABLE = "quarch_results"

SENS_CELL = "sens_cell"
"""A sensitivity-table cell: `{"nll": …, "kl": …, "time_s": …}`."""
SENS_BASE = "sens_base"
"""The float model's mean NLL on the sensitivity windows: `{"nll": …}`."""
MEASURED = "measured"
"""A design's real perplexity on the eval windows: `Measured.to_dict()`."""

KINDS = (SENS_CELL, SENS_BASE, MEASURED)
_CHUNK = 500  # keys per SELECT … IN (…)


def result_key(about: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of the canonical JSON of `about` and `KEY_VERSION`."""
    text = json.dumps({"v": KEY_VERSION, **about}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _table(metadata: Any) -> Any:
    import sqlalchemy as sa

    return sa.Table(
        TABLE,
        metadata,
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value_json", sa.Text, nullable=False),
        sa.Column("about_json", sa.Text, nullable=False),
        sa.Column("created_s", sa.Float, nullable=False),
    )


class ResultStore:
    """Stored expensive results of a study (see the module doc)."""

    def __init__(self, engine: Any | None) -> None:
        """engine: the SQLAlchemy engine of the study's RDB storage; None keeps the results in
        this process only."""
        self._engine = engine
        self._memory: dict[tuple[str, str], dict[str, Any]] = {}
        self._table: Any = None
        if engine is not None:
            import sqlalchemy as sa

            self._table = _table(sa.MetaData())
            self._create()

    @staticmethod
    def for_storage(storage: Any) -> ResultStore:
        """The store in the database of an Optuna storage (RDB, possibly behind Optuna's cache);
        in this process for any other storage."""
        backend = getattr(storage, "_backend", storage)
        return ResultStore(getattr(backend, "engine", None))

    @property
    def persistent(self) -> bool:
        return self._engine is not None

    def _create(self) -> None:
        import sqlalchemy as sa

        for attempt in range(5):  # two drivers creating the table at once: one fails, then sees it
            try:
                self._table.metadata.create_all(self._engine, checkfirst=True)
                return
            except sa.exc.DBAPIError:
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def get_many(self, kind: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored values of `kind` among `keys` (key → value)."""
        _check_kind(kind)
        wanted = list(dict.fromkeys(keys))
        if self._engine is None:
            return {k: self._memory[kind, k] for k in wanted if (kind, k) in self._memory}
        import sqlalchemy as sa

        t = self._table
        out: dict[str, dict[str, Any]] = {}
        with self._engine.connect() as conn:
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                query = sa.select(t.c.key, t.c.value_json).where(
                    t.c.kind == kind, t.c.key.in_(chunk)
                )
                for key, value in conn.execute(query):
                    out[str(key)] = json.loads(value)
        return out

    def put(self, kind: str, key: str, value: Mapping[str, Any], about: Mapping[str, Any]) -> bool:
        """Store `value` under `key` unless a value is stored there already (the first writer
        wins); returns whether this call stored it."""
        _check_kind(kind)
        if self._engine is None:
            if (kind, key) in self._memory:
                return False
            self._memory[kind, key] = json.loads(json.dumps(dict(value)))
            return True
        row = {
            "kind": kind,
            "key": key,
            "value_json": json.dumps(dict(value)),
            "about_json": json.dumps(dict(about), sort_keys=True),
            "created_s": time.time(),
        }
        import sqlalchemy as sa

        try:
            with self._engine.begin() as conn:
                result = conn.execute(self._insert_ignoring_conflict(row))
        except sa.exc.IntegrityError:  # another dialect: the key is stored already
            return False
        return bool(result.rowcount)

    def _insert_ignoring_conflict(self, row: dict[str, Any]) -> Any:
        assert self._engine is not None
        match self._engine.dialect.name:
            case "postgresql":
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                return pg_insert(self._table).values(**row).on_conflict_do_nothing()
            case "sqlite":
                from sqlalchemy.dialects.sqlite import insert as sqlite_insert

                return sqlite_insert(self._table).values(**row).on_conflict_do_nothing()
            case _:  # e.g. MySQL: a plain insert, its duplicate-key error caught by `put`
                return self._table.insert().values(**row)

    def count(self, kind: str) -> int:
        """The number of stored values of `kind`."""
        _check_kind(kind)
        if self._engine is None:
            return sum(1 for k, _ in self._memory if k == kind)
        import sqlalchemy as sa

        t = self._table
        with self._engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(t).where(t.c.kind == kind)
            return int(conn.execute(query).scalar_one())


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"not a stored result kind: {kind!r} ({', '.join(KINDS)})")
