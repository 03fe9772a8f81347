"""The study's report: one self-contained HTML file (plotly.js inlined once, no network), drawn
from a `StudyResult` alone (the figures of `FIGURES`, the front table, the settings)."""

from __future__ import annotations

import datetime
import html
from pathlib import Path
from typing import Any

import yaml

from quarch._atomic import write_text
from quarch.report._figures import FIGURES
from quarch.report._table import NOISE_NOTE, html_table
from quarch.search import METRICS, Metric, StudyResult

CSS = """
body { font-family: Inter, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #1f2328;
       background: #f3f5f9; }
header { background: #0d1b2a; color: #fff; padding: 22px 36px 18px; }
header h1 { margin: 0 0 6px; font-size: 24px; font-weight: 650; }
header p { margin: 2px 0; color: #c9d4e3; font-size: 14px; }
main { padding: 18px 36px 40px; max-width: 1500px; }
section { background: #fff; border-radius: 10px; padding: 16px 20px; margin: 16px 0;
          box-shadow: 0 1px 3px rgba(15, 23, 42, .08); }
h2 { font-size: 18px; margin: 4px 0 10px; }
p.note { color: #57606a; font-size: 13px; margin: 4px 0 10px; }
.cards { display: flex; gap: 14px; flex-wrap: wrap; }
.card { background: #fff; border-radius: 10px; padding: 12px 16px; min-width: 170px;
        box-shadow: 0 1px 3px rgba(15, 23, 42, .08); }
.card .v { font-size: 22px; font-weight: 650; }
.card .k { font-size: 12px; color: #57606a; text-transform: uppercase; letter-spacing: .04em; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th { text-align: left; background: #eef2f7; padding: 6px 8px; position: sticky; top: 0; }
td { padding: 5px 8px; border-top: 1px solid #e6e9ef; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.name { font-weight: 600; white-space: nowrap; }
td.cfg { font-size: 12px; color: #374151; }
table.kv td:first-child { color: #57606a; width: 260px; }
pre { background: #f6f8fa; padding: 12px; border-radius: 8px; font-size: 12px; overflow: auto; }
.plot { margin: 6px 0 0; }
"""


def percent(value: float | None) -> str:
    """A relative error as a percentage (`—` for none)."""
    return "—" if value is None else f"{100 * value:.2f} %"


def _cards(result: StudyResult) -> str:
    err = result.proxy_error
    ppl, bits = METRICS[Metric.PPL], METRICS[Metric.BITS]
    front = result.front_points
    best = min(front, key=lambda p: p.metrics["bits"] or 99, default=None)
    cards = [
        (f"float {ppl.title}", ppl.format(result.float_ppl)),
        ("front designs", str(len(front))),
        ("trials", str(result.trials)),
        ("proxy error (mean)", percent(err["mean_abs_rel"])),
        ("proxy error (max)", percent(err["max_abs_rel"])),
    ]
    if best is not None:
        cards.append((f"fewest {bits.title} on front", bits.format(best.metrics["bits"])))
    total = sum(result.timings.values())
    if total:
        cards.append(("wall time", f"{total:.0f} s"))
    return "".join(
        f"<div class='card'><div class='k'>{html.escape(k)}</div><div class='v'>{html.escape(v)}"
        "</div></div>"
        for k, v in cards
    )


def _kv_table(rows: list[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    return f"<table class='kv'>{cells}</table>"


def _settings(result: StudyResult) -> str:
    info = result.eval_info
    alpha = ", ".join(f"{k} {v:.3f}" for k, v in info["alpha"].items())
    acc = [
        (
            "final perplexity",
            f"{info['protocol']}: {info['eval_windows']} windows × "
            f"{info['eval_seqlen']} tokens ({info['eval_tokens']} predicted) of "
            f"{info['eval_text']}",
        ),
        ("eval text sha256", info["eval_text_sha256"]),
        (
            "sensitivity table",
            f"{info['sensitivity_entries']} entries, each one slot quantized "
            f"alone, {info['sensitivity_windows']} windows × {info['sensitivity_seqlen']} tokens "
            f"of {info['sensitivity_text']} (never the eval text)",
        ),
        (
            "proxy",
            f"nll = nll_float(eval) + Σ_role α_role Σ_slots cost; cost = {info['signal']} of "
            f"the slot alone; α fitted on the uniform baselines: {alpha}",
        ),
        (
            "proxy error on measured front points",
            f"mean {percent(result.proxy_error['mean_abs_rel'])}, max "
            f"{percent(result.proxy_error['max_abs_rel'])} over "
            f"{int(result.proxy_error['points'] or 0)} points",
        ),
        (
            "performance model",
            "quarch.perf.predict per layer-format combination, mixed per "
            "layer (exact for times and energy)",
        ),
        (
            "quantized-weight cache",
            f"{info['weight_cache_hits']} hits, {info['weight_cache_misses']} misses",
        ),
    ]
    timings = [(k, f"{v:.1f} s") for k, v in result.timings.items()]
    study = yaml.safe_dump(result.study, sort_keys=False)
    return (
        "<h2>Accuracy protocol and proxy</h2>"
        + _kv_table(acc)
        + "<h2>Stage wall times</h2>"
        + _kv_table(timings)
        + "<h2>The study (resolved, every default written out)</h2>"
        + f"<pre>{html.escape(study)}</pre>"
    )


def _plots(result: StudyResult) -> list[str]:
    """One section per figure of `FIGURES` that has something to draw."""
    parts: list[str] = []
    for figure in FIGURES:
        fig = figure.draw(result)
        if fig is None:
            continue
        plot = fig.to_html(
            full_html=False,
            include_plotlyjs=not parts,
            div_id=f"plot-{figure.id}",
            config={"displaylogo": False, "responsive": True},
        )
        parts.append(
            f"<section><p class='note'>{html.escape(figure.note)}</p>"
            f"<div class='plot'>{plot}</div></section>"
        )
    return parts


def _excluded(result: StudyResult, limit: int = 50) -> str:
    """The designs the study's engine cannot serve, each with the reason (empty: none)."""
    rows = [p for p in result.points if p.excluded]
    if not rows:
        return ""
    engine = html.escape(str(result.study.get("engine", "")))
    items = "".join(
        f"<tr><td>{html.escape(p.name)}</td><td>{html.escape(p.summary)}</td>"
        f"<td>{html.escape(str(p.excluded))}</td></tr>"
        for p in rows[:limit]
    )
    more = f"<p class='note'>… and {len(rows) - limit} more.</p>" if len(rows) > limit else ""
    return (
        f"<section><h2>Excluded by the engine ({len(rows)})</h2>"
        f"<p class='note'>Designs {engine} cannot serve on their device (no kernel for a "
        "weight x activation pair in its table, <code>quarch/perf/engines/</code>); they are "
        "infeasible and never on the front.</p>"
        f"<table><tr><th>point</th><th>config</th><th>why</th></tr>{items}</table>{more}"
        "</section>"
    )


def render_html(result: StudyResult) -> str:
    """The whole report as one HTML string."""
    study = result.study
    hw_data = study["hardware"]
    hw = (
        ", ".join(hw_data["devices"])
        if "template" not in hw_data
        else "parametric accelerator template"
    )
    scen = "; ".join(
        f"{s['name']}: batch {s['batch']}, prompt {s['prompt_len']}, output {s['output_len']}, "
        f"tp {s['tp']}"
        for s in study["scenarios"]
    )
    objectives = ", ".join(result.objectives)
    name = str(study["name"])
    sampler = str(study["search"]["sampler"])
    parts = _plots(result)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>quarch explore — {html.escape(name)}</title>
<style>{CSS}</style></head>
<body>
<header><h1>quarch explore — {html.escape(result.model_name)} on {html.escape(hw)}</h1>
<p>study “{html.escape(name)}” · objectives: {html.escape(objectives)} ·
sampler {html.escape(sampler)}, {result.trials} trials · {stamp}</p>
<p>scenarios: {html.escape(scen)}</p></header>
<main>
<div class="cards">{_cards(result)}</div>
<section><h2>Pareto front</h2>
<p class="note">Every design on the front, perplexity measured on the eval text; each has a
QuantConfig YAML in <code>configs/</code> that <code>quarch quantize --config</code> applies.
Costs at scenario “{html.escape(result.scenarios[0])}”. Perplexity intervals: 95 %,
t-interval over the eval windows; {html.escape(NOISE_NOTE)}.</p>
{html_table(result)}</section>
{"".join(parts)}
{_excluded(result)}
<section>{_settings(result)}</section>
</main></body></html>
"""


def write_report(result: StudyResult, path: str | Path | None = None) -> Path:
    """Write the report to `path` (default: `report.html` in the result's output directory);
    returns the path."""
    if path is None:
        if result.out_dir is None:
            raise ValueError("write_report: no path given and the result has no out_dir")
        path = result.out_dir / "report.html"
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, render_html(result))
    return out


def redraw_report(out_dir: str | Path) -> Path:
    """Rewrite `report.html` of a finished study from its stored `result.json` (no model, no
    torch); returns the report's path.

    Raises:
        ValueError: `out_dir` holds no study result.
    """
    return write_report(StudyResult.load(out_dir))
