"""Evaluation texts: the built-in corpus, text files, datasets, and choosing between them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from quarch.eval import (
    KNOWN_DATASETS,
    EvalText,
    TextPart,
    builtin_text,
    dataset_text,
    select_text,
    text_from_file,
)


def _word_runs(text: str, n: int = 12) -> set[str]:
    words = text.split()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


@pytest.fixture(scope="module")
def parts() -> tuple[EvalText, EvalText]:
    return builtin_text("eval"), builtin_text(TextPart.CALIBRATION, "python-reference")


def test_builtin_text_is_deterministic(parts: tuple[EvalText, EvalText]) -> None:
    evaluation, calibration = parts
    again = builtin_text()
    assert again == evaluation and again.sha256 == evaluation.sha256
    assert builtin_text("eval", "python-reference") == evaluation
    assert builtin_text("calibration", "python-reference").sha256 == calibration.sha256
    version = ".".join(str(v) for v in sys.version_info[:3])
    assert evaluation.name == f"python-{version}-reference:eval"
    assert calibration.name == f"python-{version}-reference:calibration"


def test_builtin_parts_do_not_overlap(parts: tuple[EvalText, EvalText]) -> None:
    evaluation, calibration = parts
    eval_paragraphs = set(evaluation.text.split("\n\n"))
    calibration_paragraphs = set(calibration.text.split("\n\n"))
    assert not eval_paragraphs & calibration_paragraphs
    assert not _word_runs(evaluation.text) & _word_runs(calibration.text)


def test_builtin_text_is_substantial_english_prose(parts: tuple[EvalText, EvalText]) -> None:
    evaluation, calibration = parts
    # Sizes on CPython 3.11.7: 162,436 and 105,786 characters; other versions differ a little.
    assert len(evaluation.text) > 100_000 and len(calibration.text) > 50_000
    for text in (evaluation.text, calibration.text):
        assert ">>>" not in text and "::=" not in text  # no interactive sessions or grammar
        paragraphs = text.split("\n\n")
        assert len(paragraphs) == len(set(paragraphs))  # no duplicates
        assert all(len(p.split()) >= 8 for p in paragraphs)
        chars = text.replace(" ", "").replace("\n", "")
        assert sum(c.isalpha() for c in chars) / len(chars) > 0.8
    assert " the " in evaluation.text and " is " in evaluation.text


def test_unknown_part() -> None:
    with pytest.raises(ValueError, match="unknown text part 'test'; valid: eval, calibration"):
        builtin_text("test")


def test_text_from_file(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("Once upon a time.\n", encoding="utf-8")
    text = text_from_file(path)
    assert text.name == str(path) and text.text == "Once upon a time.\n"
    with pytest.raises(ValueError, match="does not exist"):
        text_from_file(tmp_path / "missing.txt")
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="not valid UTF-8"):
        text_from_file(path)
    path.write_text("\n\n")
    with pytest.raises(ValueError, match="is empty"):
        text_from_file(path)


def test_dataset_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'wikitext2'; valid: wikitext-103"):
        dataset_text("wikitext2")
    assert "wikitext-2-raw-v1" in KNOWN_DATASETS


def test_dataset_without_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ImportError, match="needs the optional `datasets` library"):
        dataset_text("wikitext-2-raw-v1")


def test_dataset_not_in_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path)
    with pytest.raises(ValueError, match="not in the local `datasets` cache"):
        dataset_text("wikitext-2-raw-v1")


def test_select_text(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("Some words to evaluate on.")
    assert select_text().name.endswith(":eval")
    assert select_text(part="calibration").name.endswith(":calibration")
    assert select_text(text_file=path).text == "Some words to evaluate on."
    with pytest.raises(ValueError, match="not both"):
        select_text(text_file=path, dataset="wikitext-2-raw-v1")
