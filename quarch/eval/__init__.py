"""quarch.eval: evaluation texts, perplexity (GPTQ protocol) with confidence intervals over
windows, calibration windows, KL, tasks."""

from quarch.eval._calibration import calibration_windows
from quarch.eval._corpus import (
    KNOWN_DATASETS,
    EvalText,
    TextPart,
    builtin_text,
    dataset_text,
    select_text,
    text_from_file,
)
from quarch.eval._divergence import kl_to_reference, reference_logits
from quarch.eval._domains import (
    CALIBRATION_DOMAINS,
    EVAL_DOMAINS,
    Domain,
    calibration_mix,
    domain_text,
    eval_texts,
)
from quarch.eval._interval import (
    CONFIDENCE,
    MeanInterval,
    mean_interval,
    paired_interval,
    ppl_interval,
    ratio_interval,
    windows_needed,
)
from quarch.eval._perplexity import (
    PROTOCOL,
    PerplexityResult,
    mean_nll,
    perplexity,
    token_windows,
    tokenize_text,
    window_logits,
    window_nlls,
)
from quarch.eval._pipeline import (
    DTYPES,
    domain_rows,
    domain_texts,
    eval_record,
    package_versions,
    parse_dtype,
    print_eval,
    run_eval,
)
from quarch.eval._scores import NextTokenReference, kl_divergence, token_nlls, window_nll_sum
from quarch.eval._tasks import LM_EVAL_EXTRA, evaluate_tasks

__all__ = [
    "CALIBRATION_DOMAINS",
    "CONFIDENCE",
    "DTYPES",
    "EVAL_DOMAINS",
    "KNOWN_DATASETS",
    "LM_EVAL_EXTRA",
    "PROTOCOL",
    "Domain",
    "EvalText",
    "MeanInterval",
    "NextTokenReference",
    "PerplexityResult",
    "TextPart",
    "builtin_text",
    "calibration_mix",
    "calibration_windows",
    "dataset_text",
    "domain_rows",
    "domain_text",
    "domain_texts",
    "eval_record",
    "eval_texts",
    "evaluate_tasks",
    "kl_divergence",
    "kl_to_reference",
    "mean_interval",
    "mean_nll",
    "package_versions",
    "paired_interval",
    "parse_dtype",
    "perplexity",
    "ppl_interval",
    "print_eval",
    "ratio_interval",
    "reference_logits",
    "run_eval",
    "select_text",
    "text_from_file",
    "token_nlls",
    "token_windows",
    "tokenize_text",
    "window_logits",
    "window_nll_sum",
    "window_nlls",
    "windows_needed",
]
