"""The report's figures (plotly), each drawn from a `StudyResult` alone, and their registry.

- `pareto_figure`: measured perplexity against each other metric of `METRICS` at the first
  scenario, every search trial (proxy perplexity) faint behind, the final front as labelled
  points, the uniform baselines as labelled diamonds.
- `roofline_figure`: the target's roofline (memory bandwidth slope, one ceiling per native
  matrix format) with each front design's prefill and mean decode step placed by arithmetic
  intensity (FLOPs over bytes moved) and attained FLOP/s (FLOPs over predicted time).
- `format_map_figure`: per layer, the format each front design stores attention weights, MLP
  weights, activations and the KV cache in: one colour per distinct format, with a legend.
- `memory_figure`: weights, scales, KV cache and activations of each front design and baseline.
- `sensitivity_figure`: the proxy table, the cost (KL or Δ NLL) per slot and choice.

`FIGURES` lists them in report order; the HTML report draws every entry whose function returns
a figure. A new figure is a function here and one entry in `FIGURES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from quarch.search import METRICS, Metric, MetricInfo, PointResult, StudyResult, stored_value
from quarch.search import pareto_indices as _pareto_indices

FONT = "Inter, Segoe UI, Helvetica, Arial, sans-serif"
FRONT = "#1f6feb"
BASELINE = "#d9480f"
TRIAL = "rgba(120,130,150,0.35)"
PALETTE = ["#1f6feb", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599", "#e03131", "#5c7cfa", "#868e96"]
FORMAT_COLOURS = (
    "#4c6ef5",  # indigo
    "#f59f00",  # amber
    "#2b8a3e",  # green
    "#e64980",  # pink
    "#15aabf",  # cyan
    "#862e9c",  # grape
    "#e8590c",  # orange
    "#5c940d",  # lime
    "#1864ab",  # blue
    "#c92a2a",  # red
    "#495057",  # grey
    "#d6336c",  # raspberry
)
"""Categorical colours of the format map (distinct hues; they cycle past twelve formats)."""


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 17}},
        font={"family": FONT, "size": 12, "color": "#1f2328"},
        height=height,
        margin={"l": 60, "r": 30, "t": 70, "b": 50},
        plot_bgcolor="#fbfcfe",
        paper_bgcolor="white",
        legend={"orientation": "h", "y": -0.12, "x": 0},
        hoverlabel={"font": {"family": FONT}},
    )
    fig.update_xaxes(gridcolor="#e6e9ef", zerolinecolor="#d0d7de")
    fig.update_yaxes(gridcolor="#e6e9ef", zerolinecolor="#d0d7de")
    return fig


def _value(point: PointResult, info: MetricInfo, scenario: str, *, final: bool = True) -> Any:
    return stored_value(point.metrics if final else point.proxy, info, scenario)


def _axes(result: StudyResult) -> list[MetricInfo]:
    """Every metric but perplexity that the study has a value for."""
    scenario = result.scenarios[0]
    base = result.points[0]
    return [
        info
        for metric, info in METRICS.items()
        if metric is not Metric.PPL and _value(base, info, scenario) is not None
    ]


# ---- the Pareto plots -------------------------------------------------------------------


def pareto_figure(result: StudyResult) -> go.Figure:
    scenario = result.scenarios[0]
    axes = _axes(result)
    cols = 3
    rows = math.ceil(len(axes) / cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[a.axis_title for a in axes],
        horizontal_spacing=0.07,
        vertical_spacing=0.16,
    )
    trials = [p for p in result.points if not p.baseline]
    front = result.front_points
    baselines = result.baselines
    for i, info in enumerate(axes):
        r, c = i // cols + 1, i % cols + 1
        show = i == 0
        layers: tuple[tuple[list[PointResult], dict[str, Any]], ...] = (
            (trials, {"final": False, "name": "search trials (proxy ppl)", "color": TRIAL}),
            (front, {"name": "final front (measured)", "color": FRONT, "size": 9, "labels": True}),
            (
                baselines,
                {
                    "name": "uniform baselines (measured)",
                    "color": BASELINE,
                    "size": 11,
                    "symbol": "diamond",
                    "labels": True,
                },
            ),
        )
        for k, (points, style) in enumerate(layers):
            fig.add_trace(_scatter(points, info, scenario, show=show, **style), row=r, col=c)
            if k == 0:
                frontier = _frontier(front + baselines, info, scenario, show)
                fig.add_trace(frontier, row=r, col=c)
        fig.update_xaxes(title_text=info.axis_title, row=r, col=c)
        fig.update_yaxes(title_text="perplexity" if c == 1 else None, row=r, col=c)
    fig.update_annotations(font={"size": 13})
    return _layout(fig, f"Accuracy against cost — scenario “{scenario}”", 380 * rows + 80)


def _frontier(points: list[PointResult], info: MetricInfo, scenario: str, show: bool) -> go.Scatter:
    """The staircase of the measured points no other beats on both of this plot's axes."""
    ppl = METRICS[Metric.PPL]
    pairs = []
    for p in points:
        x, y = _value(p, info, scenario), _value(p, ppl, scenario)
        if x is not None and y is not None:
            pairs.append((info.shown(x), y))
    minimised = [(info.sign * x, y) for x, y in pairs]
    best = sorted(pairs[i] for i in _pareto_indices(minimised))
    return go.Scatter(
        x=[x for x, _ in best],
        y=[y for _, y in best],
        mode="lines",
        line={"color": FRONT, "width": 1.2, "shape": "hv", "dash": "dot"},
        name="2-D frontier of the measured points",
        legendgroup="frontier",
        showlegend=show,
        hoverinfo="skip",
    )


def _scatter(
    points: list[PointResult],
    info: MetricInfo,
    scenario: str,
    *,
    final: bool = True,
    name: str,
    color: str,
    size: int = 5,
    show: bool,
    symbol: str = "circle",
    labels: bool = False,
) -> go.Scatter:
    ppl = METRICS[Metric.PPL]
    xs, ys, text = [], [], []
    for p in points:
        x = _value(p, info, scenario, final=final)
        y = _value(p, ppl, scenario, final=final)
        if x is None or y is None:
            continue
        xs.append(info.shown(x))
        ys.append(y)
        text.append(p.name)
    return go.Scatter(
        x=xs,
        y=ys,
        mode="markers+text" if labels else "markers",
        text=text,
        textposition="top center",
        textfont={"size": 9, "color": color},
        name=name,
        legendgroup=name,
        showlegend=show,
        marker={
            "color": color,
            "size": size,
            "symbol": symbol,
            "line": {"width": 1, "color": "white"},
        },
        hovertemplate="%{text}<br>x=%{x:.4g}<br>ppl=%{y:.4f}<extra></extra>",
    )


# ---- the roofline -----------------------------------------------------------------------


def roofline_figure(result: StudyResult) -> go.Figure | None:
    scenario = result.scenarios[0]
    points = result.front_points
    if not points:
        return None
    hw = result.hardware[points[0].hardware]
    mem = points[0].perf[scenario]["memory_level"]
    name, bw = next(((n, b) for n, b in hw.memory if n == mem), hw.memory[0])
    fig = go.Figure()
    xs = [10 ** (k / 10) for k in range(-10, 51)]  # arithmetic intensity 0.1 .. 1e5 FLOP/byte
    shown = ("bf16", "fp8", "int8", "fp4", "int4")
    peaks = sorted(
        ((f, v) for f, v in hw.matrix_flops_per_s.items() if f in shown), key=lambda kv: kv[1]
    )
    for i, (fmt, peak) in enumerate(peaks):
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[min(peak, bw * x) for x in xs],
                mode="lines",
                name=f"roof {fmt} ({peak / 1e12:.0f} TFLOP/s)",
                line={
                    "color": PALETTE[(i + 3) % len(PALETTE)],
                    "width": 1.5,
                    "dash": "solid" if fmt == "bf16" else "dot",
                },
                hoverinfo="name",
            )
        )
    for phase, symbol in (("prefill", "circle"), ("decode", "square")):
        fig.add_trace(_roofline_points(points, scenario, phase, symbol))
    fig.update_xaxes(type="log", title_text="arithmetic intensity (FLOP per byte moved)")
    fig.update_yaxes(type="log", title_text="attained FLOP/s (whole pass)")
    title = f"Roofline on {hw.display_name} ({name}, {bw / 1e12:.2f} TB/s) — scenario “{scenario}”"
    return _layout(fig, title, 520)


def _roofline_points(
    points: list[PointResult], scenario: str, phase: str, symbol: str
) -> go.Scatter:
    xs, ys, text = [], [], []
    for p in points:
        m = p.perf[scenario]
        flops, nbytes = m[f"{phase}_flops"], m[f"{phase}_bytes"]
        time_s = m["ttft_s"] if phase == "prefill" else m["tpot_s"]
        if flops <= 0 or nbytes <= 0 or time_s <= 0:
            continue
        xs.append(flops / nbytes)
        ys.append(flops / time_s)
        text.append(p.name)
    colour = FRONT if phase == "prefill" else BASELINE
    return go.Scatter(
        x=xs,
        y=ys,
        mode="markers",
        name=f"front designs: {phase}",
        text=text,
        marker={
            "size": 10,
            "symbol": symbol,
            "color": colour,
            "line": {"width": 1, "color": "white"},
        },
        hovertemplate="%{text} ("
        + phase
        + ")<br>%{x:.3g} FLOP/B<br>%{y:.3g} FLOP/s<extra></extra>",
    )


# ---- the per-layer format map -----------------------------------------------------------

_ROWS = ("attn weights", "MLP weights", "activations", "KV cache")


def format_colours(result: StudyResult, points: list[PointResult]) -> dict[str, str]:
    """One colour per distinct stored format the points use, widest format first."""
    used = {result.formats[c][0] for p in points for layer in p.layers for c in layer.as_tuple()}
    bits = {f: b for f, b in result.formats.values()}
    order = sorted(used, key=lambda f: (-bits[f], f))
    return {f: FORMAT_COLOURS[i % len(FORMAT_COLOURS)] for i, f in enumerate(order)}


def format_map_figure(result: StudyResult) -> go.Figure | None:
    points = result.front_points
    if not points:
        return None
    n = result.num_layers
    colours = format_colours(result, points)
    index = {f: i for i, f in enumerate(colours)}
    count = len(colours)
    # a stepwise scale: format i owns [i/count, (i+1)/count] of it
    scale: list[list[Any]] = []
    for i, colour in enumerate(colours.values()):
        scale += [[i / count, colour], [(i + 1) / count, colour]]
    fig = make_subplots(
        rows=len(_ROWS), cols=1, shared_xaxes=True, vertical_spacing=0.05, subplot_titles=_ROWS
    )
    names = [p.name for p in points]
    for r, title in enumerate(_ROWS, start=1):
        z, text = [], []
        for p in points:
            choices = [layer.as_tuple()[r - 1] for layer in p.layers]
            z.append([index[result.formats[c][0]] for c in choices])
            text.append([_choice_text(result, c) for c in choices])
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=list(range(n)),
                y=names,
                text=text,
                zmin=-0.5,
                zmax=count - 0.5,
                colorscale=scale,
                showscale=False,
                hovertemplate="layer %{x}<br>%{y}<br>" + title + ": %{text}<extra></extra>",
                xgap=1,
                ygap=1,
            ),
            row=r,
            col=1,
        )
    for fmt, colour in colours.items():  # heatmaps have no legend entries: one marker each
        bits = next(b for f, b in result.formats.values() if f == fmt)
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                name=f"{fmt} ({bits:.3g} b)",
                marker={"color": colour, "size": 12, "symbol": "square"},
            )
        )
    fig.update_xaxes(title_text="layer", row=len(_ROWS), col=1)
    fig.update_yaxes(autorange="reversed")  # front points top to bottom, as in the table
    height = max(560, len(_ROWS) * (60 + 22 * len(points)) + 80)
    fig = _layout(fig, "Per-layer formats of the front designs (colour: format)", height)
    fig.update_layout(legend={"y": -0.08, "title": {"text": "format"}})
    return fig


def _choice_text(result: StudyResult, choice: str) -> str:
    fmt, bits = result.formats[choice]
    return f"{choice} ({bits:.3g} bits)" if fmt == choice else f"{choice} → {fmt} ({bits:.3g} bits)"


# ---- memory and sensitivity -------------------------------------------------------------


def memory_figure(result: StudyResult) -> go.Figure:
    scenario = result.scenarios[0]
    front = result.front_points
    points = front + [p for p in result.baselines if p.key not in result.front]
    names = [p.name + (" ◆" if p.baseline else "") for p in points]
    parts: tuple[tuple[str, Callable[[dict[str, Any]], float]], ...] = (
        ("weights", lambda m: m["weight_bytes"] - m["weight_scale_bytes"]),
        ("scales / zero-points", lambda m: m["weight_scale_bytes"]),
        ("KV cache", lambda m: m["kv_cache_bytes"]),
        ("activations (peak)", lambda m: m["activation_bytes"]),
    )
    fig = go.Figure()
    for i, (label, get) in enumerate(parts):
        fig.add_trace(
            go.Bar(
                x=names,
                y=[get(p.perf[scenario]) / 1e6 for p in points],
                name=label,
                marker={"color": PALETTE[i]},
                hovertemplate="%{x}<br>" + label + ": %{y:.2f} MB<extra></extra>",
            )
        )
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title_text="MB on the most loaded device")
    return _layout(fig, f"Memory breakdown — scenario “{scenario}” (◆ uniform baseline)", 460)


def sensitivity_figure(result: StudyResult) -> go.Figure:
    table = result.sensitivity
    kl = table.signal == "kl"
    label = "KL" if kl else "Δ NLL"
    z: list[list[Any]] = []
    text: list[list[str]] = []
    for s in table.slots:
        values = [table.value(s, c) for c in table.choices]
        z.append(values)
        text.append(["" if v is None else f"{v:.3g}" for v in values])
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(table.choices),
            y=list(table.slots),
            text=text,
            texttemplate="%{text}",
            # KL is never negative: a sequential scale from 0; Δ NLL can be: diverging at 0
            colorscale="YlOrRd" if kl else "RdBu_r",
            zmin=0 if kl else None,
            zmid=None if kl else 0,
            colorbar={"title": {"text": label}},
            xgap=1,
            ygap=1,
            hovertemplate="%{y} = %{x}<br>" + label + " %{z:.4g} nats/token<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    height = max(420, 26 * len(table.slots) + 160)
    title = f"Sensitivity: {label} when one slot alone is quantized (the proxy table)"
    return _layout(fig, title, height)


# ---- the registry -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FigureSpec:
    """One figure of the report: its id (the plot's `div` is `plot-<id>`), the note above it
    and the function drawing it (None: nothing to draw for this result)."""

    id: str
    note: str
    draw: Callable[[StudyResult], go.Figure | None]


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec(
        id="pareto",
        note="Perplexity against each cost. Grey: every search trial at its proxy perplexity; "
        "blue: the final front, perplexity measured; orange diamonds: the uniform baselines, "
        "measured.",
        draw=pareto_figure,
    ),
    FigureSpec(
        id="roofline",
        note="Where the front designs sit on the target's roofline: prefill (circles) and a "
        "mean decode step (squares), whole passes.",
        draw=roofline_figure,
    ),
    FigureSpec(
        id="formats",
        note="The format every layer's tensors are stored in, in each front design (one colour "
        "per format; hover for the choice and its bits per element, scales included).",
        draw=format_map_figure,
    ),
    FigureSpec(id="memory", note="Memory on the most loaded device.", draw=memory_figure),
    FigureSpec(
        id="sensitivity",
        note="The proxy's cost (KL divergence from the float model, or change of mean NLL, as "
        "the study's proxy signal says) on the sensitivity windows when only that slot is "
        "quantized (nats per token); the proxy sums these, times α per role.",
        draw=sensitivity_figure,
    ),
)
"""The report's figures, in order."""
