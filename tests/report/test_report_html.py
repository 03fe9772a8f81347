"""The HTML report: self-contained, every plot present, and drawn by a real browser."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from quarch.report import FIGURES, front_table, render_html, table_rows

CHROMIUM = Path("/usr/bin/chromium")
PLOTS = ("pareto", "roofline", "formats", "memory", "sensitivity")


def test_html_is_self_contained(tiny_result: Any) -> None:
    assert tuple(f.id for f in FIGURES) == PLOTS  # the report draws the registry, in order
    text = render_html(tiny_result)
    # plotly.js inlined (once: the first plot carries it), no script or style fetched
    assert len(text) > 3_000_000
    assert not re.search(r"<script[^>]+src=", text)
    assert not re.search(r"<link[^>]+href=", text)
    assert text.count("Plotly.newPlot") == len(PLOTS)
    for name in PLOTS:
        assert f'id="plot-{name}"' in text
    for p in tiny_result.front_points:
        assert p.config is not None and Path(p.config).name in text
    assert "Accuracy protocol and proxy" in text and "study (resolved" in text


def test_front_table_rows(tiny_result: Any) -> None:
    rows = table_rows(tiny_result)
    assert len(rows) == len(tiny_result.front_points)
    assert all(r["cost"].startswith("$") for r in rows)  # the study set a price
    assert all(r["ppl"] != "—" for r in rows)
    table = front_table(tiny_result)
    assert table.row_count == len(rows)


def test_report_redraws_from_the_stored_result_without_torch(tiny_result: Any) -> None:
    """`redraw_report` on the output directory alone: the same report (but for its time
    stamp), and neither torch nor the search's live modules are imported."""
    out = tiny_result.out_dir
    code = (
        "import sys; from quarch.report import redraw_report; "
        f"path = redraw_report({str(out)!r}); "
        "heavy = sorted(m for m in ('torch', 'optuna', 'transformers', 'quarch.search._proxy', "
        "'quarch.search._explore', 'quarch.perf') if m in sys.modules); "
        "print(path); print('heavy', heavy)"
    )
    before = render_html(tiny_result)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert "heavy []" in done.stdout, done.stdout
    after = (out / "report.html").read_text(encoding="utf-8")
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d")
    assert stamp.sub("", after) == stamp.sub("", before)


def test_format_map_colours_by_format_with_a_legend(tiny_result: Any) -> None:
    """Distinct formats get distinct colours (int8 and mxfp4 here; by bits, formats of equal
    width shared one), each named in the legend; front points are labelled in the static
    Pareto plot."""
    from quarch.report import format_map_figure, pareto_figure
    from quarch.report._figures import format_colours

    points = tiny_result.front_points
    colours = format_colours(tiny_result, points)
    used = {tiny_result.formats[c][0] for p in points for lay in p.layers for c in lay.as_tuple()}
    assert set(colours) == used and len(set(colours.values())) == len(colours)
    fig = format_map_figure(tiny_result)
    legend = [t.name for t in fig.data if t.type == "scatter"]
    assert len(legend) == len(colours)
    assert all(any(name.startswith(f"{f} (") for name in legend) for f in colours)
    pareto = pareto_figure(tiny_result)
    front = [t for t in pareto.data if t.name == "final front (measured)"]
    assert front and all("text" in t.mode for t in front)
    assert set(front[0].text) == {p.name for p in points}


def _chromium(args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    base = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'profile'}",
        "--hide-scrollbars",
    ]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=180, check=True)


_MEASURE = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const rects = {};
  document.querySelectorAll(".plotly-graph-div").forEach((d) => {
    const r = d.getBoundingClientRect();
    rects[d.id] = [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height];
  });
  document.body.setAttribute("data-rects", JSON.stringify(rects));
  document.body.setAttribute("data-height", String(document.documentElement.scrollHeight));
}, 1000));
</script></body>"""


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is not installed here (apt-get install chromium); CI installs it",
)
def test_every_plot_draws_in_chromium(tiny_result: Any, tmp_path: Path) -> None:
    """From the DOM: every plot div holds plotly's svg; from the screenshot: every plot's area
    has ink (not a blank rectangle). Plot positions come from a script added to a copy of the
    report that records each plot div's bounding box in the DOM."""
    import html as html_lib
    import json

    import numpy as np

    report = tiny_result.out_dir / "report.html"
    assert report.is_file()
    page = tmp_path / "report.html"
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", _MEASURE))
    url = page.as_uri()
    width = 1400
    dom = _chromium(
        ["--virtual-time-budget=30000", f"--window-size={width},1200", "--dump-dom", url], tmp_path
    ).stdout
    for name in PLOTS:
        m = re.search(rf'<div id="plot-{name}"[^>]*>(.*?)</div>\s*<script', dom, re.S)
        assert m is not None, f"plot {name} missing from the DOM"
        assert 'class="main-svg"' in m.group(1), f"plot {name} did not draw"
    rects = json.loads(html_lib.unescape(re.search(r'data-rects="([^"]*)"', dom).group(1)))
    height = int(re.search(r'data-height="(\d+)"', dom).group(1))
    assert set(rects) == {f"plot-{n}" for n in PLOTS}
    try:  # the DOM checks above need nothing more; reading the screenshot needs pillow
        from PIL import Image as image
    except ImportError:
        pytest.skip("the screenshot check needs pillow (pip install pillow); the DOM check passed")
    shot = tmp_path / "shot.png"
    _chromium(
        [
            f"--screenshot={shot}",
            f"--window-size={width},{height}",
            "--virtual-time-budget=30000",
            url,
        ],
        tmp_path,
    )
    pixels = np.asarray(image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (height, width)
    for name, (x, y, w, h) in rects.items():
        assert w > 300 and h > 200, (name, w, h)
        area = pixels[int(y) : int(y + h), int(x) : int(x + w)]
        ink = float((area < 200).mean())  # share of clearly non-white pixels
        assert area.std() > 10 and ink > 0.01, (name, area.std(), ink)
