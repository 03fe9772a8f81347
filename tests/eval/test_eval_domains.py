"""The built-in corpus's domains and the cross-domain protocol built on them."""

from __future__ import annotations

import pytest

from quarch.eval import (
    CALIBRATION_DOMAINS,
    EVAL_DOMAINS,
    Domain,
    builtin_text,
    calibration_mix,
    domain_text,
    eval_texts,
)


def _word_runs(text: str, n: int = 12) -> set[str]:
    words = text.split()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_default_protocol_is_cross_domain() -> None:
    assert set(EVAL_DOMAINS).isdisjoint(CALIBRATION_DOMAINS)
    assert len(EVAL_DOMAINS) >= 2 and len(CALIBRATION_DOMAINS) >= 3
    assert set(EVAL_DOMAINS) | set(CALIBRATION_DOMAINS) == set(Domain)
    mix = builtin_text("calibration")
    assert mix == calibration_mix()
    assert mix.name == "devil+jargon+wordnet:calibration"
    assert builtin_text("eval") == domain_text(Domain.PYTHON_REFERENCE, "eval")
    assert list(eval_texts()) == ["python-reference", "kjv"]


def test_no_evaluation_text_overlaps_the_calibration_mix() -> None:
    mix_runs = _word_runs(calibration_mix().text)
    for name, text in eval_texts().items():
        assert not _word_runs(text.text) & mix_runs, name


@pytest.mark.parametrize("domain", list(Domain))
def test_each_domain_has_disjoint_substantial_parts(domain: Domain) -> None:
    evaluation, calibration = domain_text(domain, "eval"), domain_text(domain, "calibration")
    assert evaluation.name.endswith(":eval") and calibration.name.endswith(":calibration")
    # Both parts hold at least ~5,000 tokens of English (about 4 characters a token).
    assert len(evaluation.text) > 80_000 and len(calibration.text) > 25_000
    assert not set(evaluation.text.split("\n\n")) & set(calibration.text.split("\n\n"))
    assert not _word_runs(evaluation.text) & _word_runs(calibration.text)
    assert " the " in evaluation.text


def test_mix_takes_equal_shares_of_each_calibration_domain_part() -> None:
    mix = set(calibration_mix().text.split("\n\n"))
    shares = []
    for domain in CALIBRATION_DOMAINS:
        part = domain_text(domain, "calibration").text.split("\n\n")
        inside = [p for p in part if p in mix]
        assert inside, domain
        assert not set(domain_text(domain, "eval").text.split("\n\n")) & mix  # dev set held out
        shares.append(sum(len(p) for p in inside))
    assert max(shares) < 1.05 * min(shares)


def test_shipped_texts_are_what_the_readme_says() -> None:
    kjv = domain_text("kjv", "eval").text
    assert kjv.startswith("Now it came to pass in the days when the judges ruled")
    assert "Ruth1:" not in kjv  # verse labels dropped
    devil = domain_text("devil", "eval").text + domain_text("devil", "calibration").text
    assert "Devil's Dictionary" in devil
    jargon = domain_text("jargon", "eval").text
    assert "{" not in jargon and "}" not in jargon  # cross-reference braces removed


def test_unknown_domain() -> None:
    with pytest.raises(ValueError, match="unknown text domain 'wiki'; valid: python-reference"):
        domain_text("wiki")
    with pytest.raises(ValueError, match="unknown text part 'test'"):
        builtin_text("test", "kjv")
