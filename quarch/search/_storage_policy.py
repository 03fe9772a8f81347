"""Which database a study may open: a study file is data, so its `search.storage` may only name
an SQLite file inside the study's output directory.

A study file passed around (or downloaded) must not make `quarch explore` write Optuna's tables
into some other database the user can write, nor switch that database to WAL mode. A storage
named on the command line (`--storage`), or one the caller explicitly allows
(`explore(..., trusted_storage=True)`, `--allow-storage`), is the user's own choice and is used
wherever it points.
"""

from __future__ import annotations

from pathlib import Path

from quarch._checks import excerpt

MEMORY_URLS = (":memory:", "sqlite://", "sqlite:///:memory:")
"""Storages that keep the study in this process only (nothing outside is touched)."""


def sqlite_file(url: str) -> Path | None:
    """The file of an `sqlite:///PATH` URL (relative paths from the working directory, as
    SQLAlchemy opens them), or None for any other URL (a server, an SQLite URI filename)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.query.get("uri") or parsed.database.startswith("file:"):
        return None  # an SQLite URI may name any file or options; not a plain path
    return Path(parsed.database)


def check_url(url: str) -> None:
    """Refuse, before any work, a storage URL no installed database driver can open.

    Raises:
        ValueError: a URL SQLAlchemy cannot parse, or of a database it does not know.
        ImportError: a known database whose driver is not installed.
    """
    if url in MEMORY_URLS:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from quarch.search._runner import database_url

    try:
        dialect = make_url(database_url(url)).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as err:
        reason = str(err).splitlines()[0][:80]
        raise ValueError(f"search.storage: {excerpt(url)} is no database URL ({reason})") from None
    try:
        dialect.import_dbapi()
    except ImportError as err:
        raise ImportError(
            f"search.storage: no database driver for {excerpt(url)} ({err.name or err})"
        ) from None


def check_storage(url: str | None, out_dir: Path, *, trusted: bool) -> None:
    """Refuse a study's storage `url` that lies outside `out_dir`, unless `trusted`, and any
    URL no installed driver opens (`check_url`).

    Raises:
        ValueError: naming the URL (a short excerpt) and how to allow it.
        ImportError: see `check_url`.
    """
    if url is not None:
        check_url(url)
    if url is None or trusted or url in MEMORY_URLS:
        return
    file = sqlite_file(url)
    if file is not None and file.resolve().is_relative_to(out_dir.resolve()):
        return
    raise ValueError(
        f"search.storage: {excerpt(url)} is not an SQLite file inside the output directory "
        f"{str(out_dir)!r}; a study file may only name a database there. To use it, give it "
        "on the command line (--storage URL) or pass --allow-storage"
    )
