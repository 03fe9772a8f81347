"""Texts to evaluate and calibrate on: the built-in corpus, a file, or a cached dataset.

The built-in corpus needs no download: its domains (see `_domains`) are the prose of the Python
Language Reference that CPython ships as `pydoc_data.topics` (the text behind
`help("assignment")`) and four redistributable texts shipped in `quarch/eval/data`. By default
quantization calibrates on a mix of three domains and is evaluated on two others
(`builtin_text("calibration")` and `builtin_text("eval")`).

The Python reference is assembled deterministically: topics in sorted order, each topic split
into blank-line-separated blocks, only prose blocks kept (no code, no grammar productions, no
headings), whitespace normalised, duplicate paragraphs dropped. Topics are then dealt into an
evaluation part and a calibration part (every third topic goes to calibration), and a
calibration paragraph that shares any run of `_SHINGLE_WORDS` words with the evaluation part is
dropped, so the two parts never overlap. The text depends on the Python version, which is in its
name; its sha256 says exactly which text a result used.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

_SHINGLE_WORDS = 12
"""Word-run length within which the evaluation and calibration parts share nothing."""

_MIN_PROSE_WORDS = 8
_MIN_LETTER_FRACTION = 0.8
_CALIBRATION_EVERY = 3


class TextPart(StrEnum):
    """Which part of a corpus a text is: evaluated on, or used to calibrate quantization."""

    EVAL = "eval"
    CALIBRATION = "calibration"


@dataclass(frozen=True, kw_only=True)
class EvalText:
    """A named text; `sha256` identifies it exactly in results.

    Fields:
        name: where the text came from, e.g. `python-3.11.7-reference:eval` or a file path.
        text: the text itself.
    """

    name: str
    text: str

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError(f"text {self.name!r} is empty")

    @property
    def sha256(self) -> str:
        """Hex sha256 of the text encoded as UTF-8."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def _is_prose(block: str) -> bool:
    """Whether a blank-line-separated block of pydoc text is an English paragraph."""
    if ">>>" in block or "::=" in block:  # interactive examples, grammar productions
        return False
    words = block.split()
    if len(words) < _MIN_PROSE_WORDS:  # headings, underlines, short labels
        return False
    chars = "".join(words)
    letters = sum(c.isalpha() for c in chars)
    return letters / len(chars) >= _MIN_LETTER_FRACTION


def shingles(text: str) -> set[str]:
    """Every run of `_SHINGLE_WORDS` consecutive words of `text`."""
    words = text.split()
    n = _SHINGLE_WORDS
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def reference_paragraphs() -> tuple[list[str], list[str]]:
    """The evaluation and calibration paragraphs of the built-in corpus, in order."""
    try:
        from pydoc_data.topics import topics
    except ImportError as error:  # some distributions strip it from the standard library
        raise ValueError(
            "the built-in evaluation text needs the standard-library module pydoc_data.topics, "
            "which this Python lacks; pass a text file or a dataset instead"
        ) from error
    seen: set[str] = set()
    parts: dict[TextPart, list[str]] = {TextPart.EVAL: [], TextPart.CALIBRATION: []}
    for index, topic in enumerate(sorted(topics)):
        part = TextPart.CALIBRATION if index % _CALIBRATION_EVERY == 2 else TextPart.EVAL
        for block in re.split(r"\n[ \t]*\n", topics[topic]):
            paragraph = " ".join(block.split())
            if _is_prose(block) and paragraph not in seen:
                seen.add(paragraph)
                parts[part].append(paragraph)
    eval_shingles = shingles("\n".join(parts[TextPart.EVAL]))
    calibration = [p for p in parts[TextPart.CALIBRATION] if not (shingles(p) & eval_shingles)]
    return parts[TextPart.EVAL], calibration


def reference_version() -> str:
    """The Python version whose reference prose `reference_paragraphs` returns."""
    return ".".join(str(v) for v in sys.version_info[:3])


def text_part(part: TextPart | str) -> TextPart:
    """A `TextPart` by name.

    Raises:
        ValueError: not a part name.
    """
    try:
        return TextPart(part)
    except ValueError:
        raise ValueError(
            f"unknown text part {str(part)[:40]!r}; valid: {', '.join(p.value for p in TextPart)}"
        ) from None


def builtin_text(part: TextPart | str = TextPart.EVAL, domain: str | None = None) -> EvalText:
    """A text of the built-in corpus.

    Args:
        part: `eval` or `calibration`.
        domain: None for the default cross-domain protocol: `eval` is the Python reference's
            evaluation part (named `python-<version>-reference:eval`), `calibration` the mix of
            the calibration domains (`devil+jargon+wordnet:calibration`), which shares no
            domain with any evaluation domain. A domain name gives that domain's own part
            (the in-domain protocol; its two parts share no paragraph and no run of 12 words).

    Raises:
        ValueError: `part` or `domain` is unknown, or this Python has no `pydoc_data`.
    """
    from quarch.eval import _domains

    which = text_part(part)
    if domain is not None:
        return _domains.domain_text(domain, which)
    match which:
        case TextPart.EVAL:
            return _domains.domain_text(_domains.Domain.PYTHON_REFERENCE, which)
        case TextPart.CALIBRATION:
            return _domains.calibration_mix()


def text_from_file(path: str | Path) -> EvalText:
    """A UTF-8 text file as an `EvalText` named by its path.

    Raises:
        ValueError: the file does not exist, is not UTF-8, or is empty.
    """
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"text file {str(file)!r} does not exist or is not a file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"text file {str(file)!r} is not valid UTF-8: {error}") from None
    return EvalText(name=str(file), text=text)


@dataclass(frozen=True, kw_only=True)
class _DatasetRef:
    path: str
    config: str | None
    column: str
    splits: dict[TextPart, str]


# GPTQ's protocol joins the WikiText test split with blank lines; the train split calibrates.
# Source: "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers",
# https://arxiv.org/abs/2210.17323, and its `datautils.get_wikitext2`.
_WIKITEXT_SPLITS = {TextPart.EVAL: "test", TextPart.CALIBRATION: "train"}
KNOWN_DATASETS: dict[str, _DatasetRef] = {
    "wikitext-2-raw-v1": _DatasetRef(
        path="wikitext", config="wikitext-2-raw-v1", column="text", splits=_WIKITEXT_SPLITS
    ),
    "wikitext-103-raw-v1": _DatasetRef(
        path="wikitext", config="wikitext-103-raw-v1", column="text", splits=_WIKITEXT_SPLITS
    ),
}
"""Dataset names `dataset_text` understands, with the splits it evaluates and calibrates on."""


@contextlib.contextmanager
def _offline(datasets_config: object, hub_constants: object) -> Iterator[None]:
    """Force the `datasets` library and the hub client offline, restoring their flags after."""
    saved = [
        (module, flag, getattr(module, flag))
        for module, flag in (
            (datasets_config, "HF_DATASETS_OFFLINE"),
            (datasets_config, "HF_HUB_OFFLINE"),
            (hub_constants, "HF_HUB_OFFLINE"),
        )
        if hasattr(module, flag)
    ]
    try:
        for module, flag, _ in saved:
            setattr(module, flag, True)
        yield
    finally:
        for module, flag, value in saved:
            setattr(module, flag, value)


def dataset_text(name: str, part: TextPart | str = TextPart.EVAL) -> EvalText:
    """A dataset's text from the local `datasets` cache, never downloading.

    Args:
        name: one of `KNOWN_DATASETS` (e.g. `wikitext-2-raw-v1`).
        part: `eval` (the test split) or `calibration` (the train split).

    Raises:
        ValueError: unknown name, or the data is not in the local cache.
        ImportError: the optional `datasets` library is not installed.
    """
    if name not in KNOWN_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(sorted(KNOWN_DATASETS))}")
    ref = KNOWN_DATASETS[name]
    split = ref.splits[TextPart(part)]
    try:
        import datasets
        import huggingface_hub.constants
    except ImportError:
        raise ImportError(
            f"dataset {name!r} needs the optional `datasets` library (pip install datasets) "
            "with the data already in its local cache; quarch never downloads"
        ) from None
    try:
        with _offline(datasets.config, huggingface_hub.constants):
            rows = datasets.load_dataset(ref.path, ref.config, split=split)
    except Exception as error:  # the library raises many types for "not in the cache"
        raise ValueError(
            f"dataset {name!r} (split {split!r}) is not in the local `datasets` cache and quarch "
            f"never downloads: {type(error).__name__}: {error}"
        ) from None
    text = "\n\n".join(rows[ref.column])
    return EvalText(name=f"{name}:{split}", text=text)


def select_text(
    *,
    text_file: str | Path | None = None,
    dataset: str | None = None,
    part: TextPart | str = TextPart.EVAL,
) -> EvalText:
    """The text a command asked for: a file, a cached dataset, or the built-in corpus.

    Raises:
        ValueError: both a file and a dataset were given, or the chosen source fails.
    """
    if text_file is not None and dataset is not None:
        raise ValueError("give a text file or a dataset, not both")
    if text_file is not None:
        return text_from_file(text_file)
    if dataset is not None:
        return dataset_text(dataset, part)
    return builtin_text(part)
