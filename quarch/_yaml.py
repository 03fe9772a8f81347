"""One bounded, safe YAML reader for every file a user hands quarch.

`yaml.safe_load` never runs code, but it trusts the size of what it reads: a 1 kB "billion
laughs" file (anchors nesting aliases of aliases) builds a value with 10^9 leaves once something
walks or prints it, a deep `[[[[...` raises RecursionError, and its error messages quote the
offending line of the file. Here every document is

- at most `MAX_YAML_BYTES` long (checked on the file size before reading),
- UTF-8 text,
- composed into nodes first, and refused when its tree, counting every alias as a full copy of
  what it names, has more than `MAX_YAML_NODES` nodes, or when an alias refers to itself,
- refused with a one-line `ValueError` naming the file, the line and column and PyYAML's reason
  (cut to `EXCERPT_CHARS`), never the content.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from quarch._checks import EXCERPT_CHARS, excerpt

MAX_YAML_BYTES = (
    2 * 2**20
)  # 2 MiB: far above any catalog, study or config file (the largest is kBs)
# Nodes of the fully expanded tree: a 2 MiB flow list of one-digit numbers has ~1M; files
# quarch ships have a few thousand. A billion-laughs file needs 10^9.
MAX_YAML_NODES = 1_000_000
# libyaml's parser where PyYAML was built with it (about 5x faster: a 2 MiB file reads in
# seconds, not minutes); the same safe constructor either way.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def show(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """A short rendering of a parsed value for an error message: its repr, cut to `limit`.

    Containers are rendered by `reprlib` (a few items, two levels), so a value built from many
    aliases is never expanded in full just to be cut."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother = 2, limit, limit
    short = r.repr(value)
    return short if len(short) <= limit + 10 else f"{short[:limit]}…"


def load_yaml_file(path: str | Path, *, where: str | None = None) -> Any:
    """Parse one YAML document from a file, within the bounds above.

    Args:
        path: the file.
        where: its name in error messages (default: the file name).

    Raises:
        ValueError: the file is missing, too large, not UTF-8, not valid YAML or too large once
            its aliases are expanded; the message names `where`, never the file's content.
    """
    name = where or Path(path).name
    return load_yaml_text(read_text_file(path, where=name), where=name)


def read_text_file(path: str | Path, *, where: str | None = None) -> str:
    """A user's text file (YAML, JSON), at most MAX_YAML_BYTES of UTF-8; the size is checked
    before anything is read.

    Raises:
        ValueError: missing or unreadable, too large, or not UTF-8 (naming `where`, default the
            file name).
    """
    p = Path(path)
    name = where or p.name
    try:
        size = p.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ValueError(f"{name}: {size} bytes; a file may be at most {MAX_YAML_BYTES}")
        with p.open("rb") as f:
            raw = f.read(MAX_YAML_BYTES + 1)
    except OSError as err:
        raise ValueError(f"{name}: cannot read ({err.strerror or type(err).__name__})") from None
    if len(raw) > MAX_YAML_BYTES:  # grew since stat, or a pipe
        raise ValueError(f"{name}: a file may be at most {MAX_YAML_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{name}: not UTF-8 text (bad byte at offset {err.start})") from None


def load_yaml_text(text: str, *, where: str = "<text>") -> Any:
    """Parse one YAML document from a string, within the bounds above (see `load_yaml_file`)."""
    if len(text) > MAX_YAML_BYTES:
        raise ValueError(f"{where}: {len(text)} characters; YAML may be at most {MAX_YAML_BYTES}")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node, where)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        raise ValueError(f"{where}: not valid YAML{_position(err)}: {_reason(err)}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{where}: not valid YAML: {excerpt(str(err))}") from None
    except RecursionError:
        raise ValueError(f"{where}: YAML nested too deeply to read") from None
    finally:
        loader.dispose()


def _position(err: yaml.MarkedYAMLError) -> str:
    mark = err.problem_mark or err.context_mark
    return "" if mark is None else f" (line {mark.line + 1}, column {mark.column + 1})"


def _reason(err: yaml.MarkedYAMLError) -> str:
    parts = [p for p in (err.context, err.problem) if p]
    reason = "; ".join(parts) or type(err).__name__
    return reason if len(reason) <= 2 * EXCERPT_CHARS else f"{reason[: 2 * EXCERPT_CHARS]}…"


def _check_size(root: yaml.Node, where: str) -> None:
    """Refuse a node graph whose alias-expanded tree exceeds MAX_YAML_NODES, or that is cyclic.

    An alias is the very node object it names, so the expanded size of every collection is
    computed once (memoised by identity) in an iterative post-order walk that never visits
    scalars one by one: linear in the number of collections in the file."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        kids = _children(node)
        if children_done:
            on_path.discard(key)
            total = 1 + len(kids) + sum(size[id(k)] - 1 for k in kids if id(k) in size)
            if total > MAX_YAML_NODES:
                line = node.start_mark.line + 1
                raise ValueError(
                    f"{where}: YAML expands to more than {MAX_YAML_NODES} values (aliases "
                    f"counted in full; line {line})"
                )
            size[key] = total
        elif key not in size:
            if key in on_path:
                line = node.start_mark.line + 1
                raise ValueError(f"{where}: YAML alias refers to itself (line {line})")
            on_path.add(key)
            stack.append((node, True))
            stack.extend((k, False) for k in kids if id(k) not in size and _children(k))


def _children(node: yaml.Node) -> list[yaml.Node]:
    """The child nodes of a collection (keys and values of a mapping); none for a scalar."""
    if isinstance(node, yaml.SequenceNode):
        return node.value  # type: ignore[no-any-return]
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []
