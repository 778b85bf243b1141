"""Loads ehds-prep HTML reports in headless Chromium and checks that they render.

Usage: check_html_in_browser.py REPORT.html [mask=N] [JSON ...] [-- REPORT.html ...]...

mask=N: the page shows counts from 1 to N - 1 as "< N" (a linked delivery's small_counts).

For each page: no console error or warning, no page error, no request other than the file itself; every
`svg.chart` is laid out with a non-zero size and its screenshot shows drawn pixels; and where JSON
reports are given (the delivery's report.json, and linkage.json for a linked delivery, or assess's
JSON output), each chart has exactly one drawn bar per non-zero figure of those reports, in order, with
lengths proportional to the figures. The expected bars are derived here from the JSON, not from the
engine's code.
"""

import io
import json
import pathlib
import sys

from PIL import Image
from playwright.sync_api import sync_playwright

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

BAR_COLOURS = {(0x9A, 0xA5, 0xB1), (0x2F, 0x6D, 0xB5), (0xC4, 0x62, 0x2D)}


MASK = [None]


def value(figure):
    """A report figure: a number, or a masked "< N" (drawn at N); with a masking threshold, exact
    counts from 1 to N - 1 of report.json are drawn as masked too."""
    if isinstance(figure, str):
        assert figure.startswith("< "), figure
        return float(figure[2:]), True
    if isinstance(figure, int) and MASK[0] and 0 < figure < MASK[0]:
        return float(MASK[0]), True
    return float(figure), False


def risk_values(risk, with_k):
    values = [
        risk["prosecutor_highest"],
        risk["prosecutor_average"],
        risk["share_at_risk"],
        risk["share_sample_uniques"],
    ]
    if with_k:
        values.append(risk["share_in_classes_below_k"])
    return values


def interleave(*series):
    """Category-major order of grouped bars: for each category, each series."""
    return [v for group in zip(*series) for v in group]


def anonymisation_charts(name, a):
    """Expected figures, in drawing order, for the charts of one anonymisation report."""
    charts = {}
    risks = [a["risk_before"]] + ([a["risk_after"]] if a.get("risk_after") else [])
    charts[f"{name}-classes"] = (
        interleave(*[[b["records"] for b in r["class_sizes"]] for r in risks]),
        None,
    )
    charts[f"{name}-suppression"] = ([b["records"] for b in a["suppressed_by_class_size"]], None)
    with_k = all(r.get("share_in_classes_below_k") is not None for r in risks)
    charts[f"{name}-risk"] = (interleave(*[risk_values(r, with_k) for r in risks]), 1.0)
    return charts


def expected_charts(documents):
    charts = {}
    for doc in documents:
        if isinstance(doc, dict) and "datasets" in doc:  # report.json
            for d in doc["datasets"]:
                a = d.get("anonymisation")
                suppressed = a["rows_suppressed"] if a and a["suppressed_rows_are"] == "removed" else 0
                flow = [d["rows_read"], d["rows_outside_cohort"], d["rows_opted_out"]]
                if d.get("rows_of_removed_persons", 0) > 0:
                    flow.append(d["rows_of_removed_persons"])
                flow += [d["rows_rejected"], suppressed, d["rows_delivered"]]
                charts[f"{d['name']}-rows"] = (flow, None)
                if a:
                    charts.update(anonymisation_charts(d["name"], a))
        elif isinstance(doc, dict) and "combinations" in doc:  # linkage.json
            charts["linkage-overlap"] = (
                sorted((c["persons"] for c in doc["combinations"]), key=lambda f: -value(f)[0]),
                None,
            )
            charts["linkage-consistency"] = ([a["persons_disagreeing"] for a in doc["consistency"]], None)
        elif isinstance(doc, list):  # assess --permit
            for entry in doc:
                if entry["assessment"]:
                    charts.update(anonymisation_charts(entry["dataset"], entry["assessment"]))
        elif isinstance(doc, dict) and "class_sizes" in doc:  # assess --input
            charts["classes"] = ([b["records"] for b in doc["class_sizes"]], None)
            with_k = doc.get("share_in_classes_below_k") is not None
            charts["risk"] = (risk_values(doc, with_k), 1.0)
    return charts


def drawn_pixels(png):
    data = Image.open(io.BytesIO(png)).convert("RGB").tobytes()
    return sum(1 for i in range(0, len(data), 3) if tuple(data[i : i + 3]) in BAR_COLOURS)


def check_page(browser, path, documents, failures):
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    problems, requests = [], []
    page.on("console", lambda m: m.type in ("error", "warning") and problems.append(f"console {m.type}: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    url = pathlib.Path(path).resolve().as_uri()
    page.goto(url)
    page.wait_for_load_state("load")
    failures += [f"{path}: {p}" for p in problems]
    failures += [f"{path}: fetched {r}" for r in requests if r != url]
    charts = page.eval_on_selector_all(
        "svg.chart",
        """svgs => svgs.map(svg => {
            const box = svg.getBoundingClientRect();
            return {
                id: svg.id, width: box.width, height: box.height,
                bars: [...svg.querySelectorAll('rect.bar')].map(r => {
                    const b = r.getBoundingClientRect();
                    return {width: b.width, height: b.height, vertical: r.closest('#linkage-overlap') !== null};
                }),
            };
        })""",
    )
    if not charts:
        failures.append(f"{path}: no chart")
    expected = expected_charts(documents)
    seen = {c["id"] for c in charts}
    for missing in sorted(set(expected) - seen):
        failures.append(f"{path}: chart {missing} is missing")
    for chart in charts:
        where = f"{path} chart {chart['id']}"
        if chart["width"] <= 0 or chart["height"] <= 0:
            failures.append(f"{where}: not laid out")
            continue
        bars = chart["bars"]
        if any(b["width"] <= 0 or b["height"] <= 0 for b in bars):
            failures.append(f"{where}: an empty bar")
        png = page.locator(f"svg#{chart['id']}").screenshot()
        if bars and drawn_pixels(png) == 0:
            failures.append(f"{where}: the screenshot shows no bar")
        if chart["id"] not in expected:
            continue
        figures, scale = expected[chart["id"]]
        shown = [value(f) for f in figures if value(f)[0] > 0]
        if len(bars) != len(shown):
            failures.append(f"{where}: {len(bars)} bars drawn, {len(shown)} non-zero figures in the JSON")
            continue
        if not bars:
            continue
        lengths = [b["height"] if b["vertical"] else b["width"] for b in bars]
        top = scale if scale is not None else max(v for v, _ in shown)
        # The longest figure (or the fixed scale) spans the plot: every bar is the same fraction of it.
        unit = max(lengths) / (max(v for v, _ in shown) / top)
        for (v, masked), length in zip(shown, lengths):
            want = max(v / top * unit, 1.0)
            if abs(length - want) > 1.5:
                failures.append(f"{where}: a bar of {v}{' (masked)' if masked else ''} is {length:.1f} px, expected {want:.1f}")
    page.close()
    return len(charts), sum(len(c["bars"]) for c in charts)


def main(argv):
    groups, current = [], []
    for arg in argv:
        if arg == "--":
            groups.append(current)
            current = []
        else:
            current.append(arg)
    groups.append(current)
    failures = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        for group in groups:
            path, jsons = group[0], [a for a in group[1:] if not a.startswith("mask=")]
            MASK[0] = next((int(a[5:]) for a in group[1:] if a.startswith("mask=")), None)
            documents = [json.load(open(j)) for j in jsons]
            charts, bars = check_page(browser, path, documents, failures)
            print(f"{path}: {charts} charts, {bars} bars")
        browser.close()
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
