"""Text domains of the built-in corpus, and the cross-domain protocol built on them.

Five domains, each English prose of a different kind, era and register, all redistributable
(sources and licences in `quarch/eval/data/README.md`):

| domain | what | licence |
| --- | --- | --- |
| `python-reference` | the Python Language Reference (`pydoc_data.topics`) | PSF |
| `kjv` | narrative books of the King James Bible (1611) | public domain |
| `devil` | Ambrose Bierce, *The Devil's Dictionary* (1911) | public domain |
| `jargon` | The Jargon File 4.4.7 (2003) | public domain |
| `wordnet` | WordNet 3.0 glosses and example sentences | WordNet 3.0 licence |

The default protocol is cross-domain, as published PTQ work does it (GPTQ calibrates on C4 and
evaluates on WikiText2, arXiv:2210.17323 §5): quantization is calibrated on `devil`, `jargon`
and `wordnet` (`CALIBRATION_DOMAINS`, mixed in equal shares) and evaluated on `python-reference`
and `kjv` (`EVAL_DOMAINS`), which share no domain with the calibration mix. Every domain has
its own disjoint evaluation and calibration parts (every third paragraph calibrates): the mix
takes the calibration parts of its domains, so their evaluation parts are a held-out
development set to choose method defaults on, never the evaluation domains (train / dev / test).
One domain's two parts also give the in-domain protocol: calibrate and evaluate on one domain.

No evaluation text shares a run of 12 words with any calibration text: a calibration paragraph
that does is dropped.
"""

from __future__ import annotations

import functools
import lzma
import re
from enum import StrEnum
from importlib import resources

from quarch.eval._corpus import (
    EvalText,
    TextPart,
    reference_paragraphs,
    reference_version,
    shingles,
    text_part,
)

_CALIBRATION_EVERY = 3


class Domain(StrEnum):
    """A domain of the built-in corpus."""

    PYTHON_REFERENCE = "python-reference"
    KJV = "kjv"
    DEVIL = "devil"
    JARGON = "jargon"
    WORDNET = "wordnet"


EVAL_DOMAINS: tuple[Domain, ...] = (Domain.PYTHON_REFERENCE, Domain.KJV)
"""Domains the default protocol evaluates on."""

CALIBRATION_DOMAINS: tuple[Domain, ...] = (Domain.DEVIL, Domain.JARGON, Domain.WORDNET)
"""Domains the default protocol calibrates on (never evaluated by default)."""

MIX_NAME = "+".join(d.value for d in CALIBRATION_DOMAINS)


def parse_domain(domain: Domain | str) -> Domain:
    """A `Domain` by name.

    Raises:
        ValueError: not a domain name.
    """
    try:
        return Domain(domain)
    except ValueError:
        raise ValueError(
            f"unknown text domain {str(domain)[:40]!r}; valid: {', '.join(d.value for d in Domain)}"
        ) from None


@functools.cache
def _shipped_paragraphs(domain: Domain) -> tuple[str, ...]:
    """All paragraphs of a shipped domain file (`data/<domain>.txt.xz`)."""
    blob = resources.files("quarch.eval").joinpath("data", f"{domain.value}.txt.xz").read_bytes()
    text = lzma.decompress(blob).decode("utf-8")
    return tuple(p for p in re.split(r"\n\s*\n", text) if p.strip())


@functools.cache
def _split(domain: Domain) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(evaluation, calibration) paragraphs of one domain, disjoint in 12-word runs."""
    if domain is Domain.PYTHON_REFERENCE:
        evaluation, calibration = reference_paragraphs()
        return tuple(evaluation), tuple(calibration)
    paragraphs = _shipped_paragraphs(domain)
    evaluation = [p for i, p in enumerate(paragraphs) if i % _CALIBRATION_EVERY != 2]
    candidates = [p for i, p in enumerate(paragraphs) if i % _CALIBRATION_EVERY == 2]
    eval_shingles = shingles("\n".join(evaluation))
    return tuple(evaluation), tuple(p for p in candidates if not shingles(p) & eval_shingles)


def _domain_name(domain: Domain, part: TextPart) -> str:
    if domain is Domain.PYTHON_REFERENCE:
        return f"python-{reference_version()}-reference:{part.value}"
    return f"{domain.value}:{part.value}"


def domain_text(domain: Domain | str, part: TextPart | str = TextPart.EVAL) -> EvalText:
    """One domain's evaluation or calibration part (the in-domain protocol).

    Raises:
        ValueError: unknown domain or part.
    """
    which, kind = parse_domain(domain), text_part(part)
    evaluation, calibration = _split(which)
    paragraphs = evaluation if kind is TextPart.EVAL else calibration
    return EvalText(name=_domain_name(which, kind), text="\n\n".join(paragraphs))


@functools.cache
def _mix_paragraphs() -> tuple[str, ...]:
    """The calibration mix: the calibration parts of the calibration domains in equal character
    shares, paragraphs sharing a 12-word run with any evaluation domain's evaluation part
    dropped. Their evaluation parts stay held out: that is where defaults are chosen."""
    eval_shingles: set[str] = set()
    for domain in EVAL_DOMAINS:
        eval_shingles |= shingles("\n".join(_split(domain)[0]))
    kept = {
        d: [p for p in _split(d)[1] if not shingles(p) & eval_shingles] for d in CALIBRATION_DOMAINS
    }
    share = min(sum(len(p) for p in ps) for ps in kept.values())
    out: list[str] = []
    for domain in CALIBRATION_DOMAINS:
        size = 0
        for paragraph in kept[domain]:
            if size >= share:
                break
            out.append(paragraph)
            size += len(paragraph)
    return tuple(out)


def calibration_mix() -> EvalText:
    """The default calibration text: `CALIBRATION_DOMAINS` mixed in equal character shares."""
    return EvalText(name=f"{MIX_NAME}:calibration", text="\n\n".join(_mix_paragraphs()))


def eval_texts() -> dict[str, EvalText]:
    """The evaluation part of each `EVAL_DOMAINS` domain, by domain name."""
    return {d.value: domain_text(d, TextPart.EVAL) for d in EVAL_DOMAINS}
