"""Rebuild the shipped corpus files (`*.txt.xz` beside this script) from Debian packages.

Not imported by quarch; run by hand on a Debian machine (as root for `apt-get`):

    apt-get install bible-kjv dict-devil dict-jargon wordnet-base
    python quarch/eval/data/make_corpus.py

Each output is UTF-8 paragraphs separated by one blank line, every k-th paragraph of the source
so that it stays under `_MAX_CHARS` characters, compressed with xz. Sources, licences: README.md.
"""

from __future__ import annotations

import gzip
import lzma
import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

HERE = Path(__file__).parent
_MAX_CHARS = 200_000
_MIN_LETTER_FRACTION = 0.75
_WORDNET_PER_PARAGRAPH = 8
# Narrative books of the King James Version (1611, public domain).
_KJV_BOOKS = ("Ruth", "Esther", "Jonah", "Mark", "Acts")


def _dictd_text(name: str) -> str:
    raw = Path(f"/usr/share/dictd/{name}.dict.dz").read_bytes()
    return gzip.decompress(raw).decode("utf-8")


def _blocks(text: str) -> Iterator[str]:
    for block in re.split(r"\n[ \t]*\n", text):
        paragraph = " ".join(block.split())
        if paragraph:
            yield paragraph


def devil() -> Iterator[str]:
    """The Devil's Dictionary (Ambrose Bierce, 1911): preface and entries, verse included."""
    text = _dictd_text("devil")
    start = text.index("PREFACE")
    for paragraph in _blocks(text[start:]):
        if len(paragraph.split()) >= 4:  # drop headings and signatures
            yield paragraph


def jargon() -> Iterator[str]:
    """The Jargon File 4.4.7: each entry's indented paragraphs, the first led by its headword."""
    text = _dictd_text("jargon")
    body = text[text.index("\n(TM)\n") :]
    for entry in re.split(r"\n(?=\S)", body):
        lines = entry.split("\n")
        head = lines[0].strip()
        indented = "\n".join(line if line.startswith("    ") else "" for line in lines[1:])
        for i, paragraph in enumerate(_blocks(indented)):
            paragraph = re.sub(r"\{\s*([^{}]*?)\s*\}", r"\1", paragraph)  # cross-reference braces
            if len(paragraph.split()) >= 6:
                yield f"{head}: {paragraph}" if i == 0 else paragraph


def wordnet() -> Iterator[str]:
    """WordNet 3.0 glosses (definitions and example sentences), grouped a few to a paragraph."""
    lines: list[str] = []
    for pos in ("noun", "verb", "adj", "adv"):
        data = Path(f"/usr/share/wordnet/data.{pos}").read_text(encoding="utf-8")
        synsets = [line for line in data.splitlines() if line and not line.startswith("  ")]
        for line in synsets:
            fields, _, gloss = line.partition(" | ")
            word = fields.split()[4].replace("_", " ")
            lines.append(f"{word}: {gloss.strip()}.")
    for i in range(0, len(lines), _WORDNET_PER_PARAGRAPH):
        yield " ".join(lines[i : i + _WORDNET_PER_PARAGRAPH])


def kjv() -> Iterator[str]:
    """Narrative books of the King James Bible, one paragraph per chapter, verse numbers dropped."""
    for book in _KJV_BOOKS:
        out = subprocess.run(
            ["bible", "-f", f"{book} 1:1-150:200"], capture_output=True, text=True, check=True
        ).stdout
        chapters: dict[str, list[str]] = {}
        for line in out.splitlines():
            match = re.match(r"^\S+?(\d+):\d+ (.*)$", line)
            if match:
                chapters.setdefault(match.group(1), []).append(match.group(2).strip())
        for verses in chapters.values():
            yield " ".join(verses)


def _is_prose(paragraph: str) -> bool:
    """Mostly letters: no ASCII-art tables, no leftover markup."""
    chars = paragraph.replace(" ", "")
    letters = sum(c.isalpha() for c in chars)
    return letters >= _MIN_LETTER_FRACTION * len(chars) and "{" not in chars and "}" not in chars


def _spread(paragraphs: Iterable[str]) -> str:
    """Every k-th prose paragraph, k the smallest stride that brings the text under
    `_MAX_CHARS`, so the text samples the whole source (all letters of a dictionary), not its
    first pages."""
    every = [p for p in paragraphs if _is_prose(p)]
    total = sum(len(p) + 2 for p in every)
    stride = -(-total // _MAX_CHARS)
    return "\n\n".join(every[::stride]) + "\n"


def main() -> None:
    for name, source in (("devil", devil), ("jargon", jargon), ("wordnet", wordnet), ("kjv", kjv)):
        text = _spread(source())
        path = HERE / f"{name}.txt.xz"
        path.write_bytes(lzma.compress(text.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME))
        print(f"{path.name}: {len(text):,} characters, {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
