"""Independent check of an anonymised delivery of ARX's `adult` in which every column is a
quasi-identifier generalised by ARX's hierarchy files and k-anonymity (rows counted) is the only
model: recomputes, from the raw CSV with Python's csv module, every row as delivered at the levels
the manifest records — the rows of classes of fewer than k rows removed, or with every column `*`
when the manifest says suppressed rows are blanked — and requires the delivered file to hold exactly
those rows, in the delivery's order (delivery_order.py).

Usage: check_adult_delivery.py ADULT_DIR DELIVERY_DIR K
Prints a JSON summary (rows delivered, rows suppressed, classes).
"""

import csv
import json
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from delivery_order import ordered_rows  # noqa: E402


def main():
    adult, out, k = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    manifest = json.loads((out / "manifest.json").read_text())
    privacy = manifest["datasets"][0]["privacy"]
    levels = [(l["column"], l["level"]) for l in privacy["levels"]]
    labels = {}
    for column, level in levels:
        with open(adult / f"adult_hierarchy_{column}.csv", newline="") as f:
            labels[column] = {row[0]: row[level] for row in csv.reader(f, delimiter=";")}
    with open(adult / "adult.csv", newline="") as f:
        source = list(csv.DictReader(f, delimiter=";"))
    rows = [tuple(labels[c][r[c]] for c, _ in levels) for r in source]
    sizes = Counter(rows)
    blank = privacy["suppressed_rows_are"].startswith("delivered")
    expected, suppressed = [], 0
    for r in rows:
        if sizes[r] >= k:
            expected.append(r)
        else:
            suppressed += 1
            if blank:
                expected.append(tuple("*" for _ in r))
    expected = ordered_rows(expected, 0)
    table = pq.read_table(out / "adult.parquet")
    assert table.column_names == [c for c, _ in levels], table.column_names
    delivered = list(zip(*[table.column(c).to_pylist() for c, _ in levels]))
    assert len(delivered) == len(expected), (len(delivered), len(expected))
    for i, (got, want) in enumerate(zip(delivered, expected)):
        assert got == want, f"row {i}: delivered {got}, expected {want}"
    assert privacy["rows_suppressed"] == suppressed, (privacy["rows_suppressed"], suppressed)
    print(json.dumps({"rows": len(delivered), "suppressed": suppressed,
                      "classes": len({r for r in rows if sizes[r] >= k})}))


main()
