"""The Pareto table: one row per front design, for the terminal (rich) and for HTML.

Columns are the metrics of `quarch.search.METRICS` (header and text from the registry), with the
proxy's perplexity beside the measured one, the measured perplexity's 95 % interval over
windows, and the noise mark: the other front designs (and float) whose paired difference from
this one is within noise (`quarch.search`'s noise marks; `≈` before the names). Per-scenario
metrics at the study's first scenario.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

from quarch.search import METRICS, Metric, MetricInfo, PointResult, StudyResult, stored_value

if TYPE_CHECKING:
    from rich.table import Table

PROXY_PPL = "proxy_ppl"
PPL_CI = "ppl_ci"
NOISE = "within_noise_of"
NOISE_NOTE = (
    "≈ within noise of: the 95 % paired interval of the perplexity difference over the same "
    "eval windows holds zero"
)


def columns() -> list[tuple[str, str]]:
    """(column key, header) of every metric column, the proxy perplexity after `ppl`."""
    out: list[tuple[str, str]] = []
    for metric, info in METRICS.items():
        out.append((info.key, info.header))
        if metric is Metric.PPL:
            out.append((PROXY_PPL, "proxy ppl"))
            out.append((PPL_CI, "ppl 95% CI"))
    out.append((NOISE, "within noise of"))
    return out


def _ci_text(p: PointResult, ppl: MetricInfo) -> str:
    m = p.measured or {}
    low, high = m.get("ppl_low"), m.get("ppl_high")
    if low is None:
        return ""
    if high is None or not math.isfinite(high):
        return "unbounded (1 window)"
    return f"{ppl.format(low)}–{ppl.format(high)}"


def _noise_text(p: PointResult) -> str:
    same = (p.measured or {}).get("within_noise_of")
    return "≈ " + ", ".join(same) if same else ""


def table_rows(result: StudyResult) -> list[dict[str, str]]:
    """The front as strings: point, config summary, file and each metric column."""
    scenario = result.scenarios[0]
    ppl: MetricInfo = METRICS[Metric.PPL]
    rows = []
    for p in result.front_points:
        row = {"point": p.name + (" ◆" if p.baseline else ""), "config": p.summary}
        for info in METRICS.values():
            row[info.key] = info.format(stored_value(p.metrics, info, scenario))
        row[PROXY_PPL] = ppl.format(p.proxy.get("ppl"))
        row[PPL_CI] = _ci_text(p, ppl)
        row[NOISE] = _noise_text(p)
        row["file"] = "" if p.config is None else p.config.rsplit("/", 1)[-1]
        rows.append(row)
    return rows


def front_table(result: StudyResult) -> Table:
    """A rich table of the front (metrics at the study's first scenario)."""
    from rich.table import Table

    scenario = result.scenarios[0]
    t = Table(
        title=f"Pareto front — {result.model_name}, scenario {scenario!r} "
        f"(ppl measured; float ppl {result.float_ppl:.3f})",
        caption=f"◆ uniform baseline; {NOISE_NOTE}",
        title_justify="left",
        caption_justify="left",
        expand=True,
    )
    t.add_column("point", style="bold", no_wrap=True)
    for _, header in columns():
        t.add_column(header, justify="right", no_wrap=True)
    t.add_column("config", ratio=1, min_width=24)
    for row in table_rows(result):
        t.add_row(row["point"], *[row[k] for k, _ in columns()], row["config"])
    return t


def html_table(result: StudyResult) -> str:
    """The front as an HTML table (escaped)."""
    cols = columns()
    head = "".join(
        f"<th>{html.escape(h)}</th>"
        for h in ("point", *[h for _, h in cols], "config", "QuantConfig file")
    )
    body = []
    for row in table_rows(result):
        cells = [f"<td class='name'>{html.escape(row['point'])}</td>"]
        cells += [f"<td class='num'>{html.escape(row[k])}</td>" for k, _ in cols]
        cells.append(f"<td class='cfg'>{html.escape(row['config'])}</td>")
        cells.append(f"<td class='cfg'><code>configs/{html.escape(row['file'])}</code></td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<table class='front'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )
