"""Independent check of the anonymised research delivery (configs/research.toml).

Given the levels the manifest records, recomputes from the raw extract with Python's csv, hmac and
pyarrow each eligible row as delivered: its pseudonym and generalised quasi-identifiers (ages in
bands with top-coding, départements with Corsica and overseas, months/quarters/years). Then requires
of each table: every delivered row is an eligible row (as many times at most), the rows follow the
delivery's order, every class counted from the file holds at least k distinct persons (and l distinct
diagnoses); and of the two tables together, one fate per person: a person whose rows a table left out
has no row in the other, and each report counts those rows. Which persons the search suppressed
depends on levels its intermediate rounds chose, which the manifest does not record: the rows are
not recomputed one for one.

Usage: check_research_delivery.py REPO_ROOT DELIVERY_DIR
"""

import datetime as dt
import json
import math
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq

from delivery_order import ordered_rows

sys.path.insert(0, str(Path(__file__).parent))
from check_sample_delivery import Pseudonymiser, check, iso, normalise, read_csv, status  # noqa: E402

TOP = "*"


def age(birth, at):
    return at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day))


def age_label(value, level, widths=(5, 10, 20), top=90):
    if level == len(widths) + 1:
        return TOP
    if value >= top:
        return f">={top}"
    if level == 0:
        return str(value)
    w = widths[level - 1]
    lo = value // w * w
    return f"{lo}-{min(lo + w, top) - 1}"


def departement(postcode):
    if postcode[:2] == "20":
        return "2A" if postcode < "20200" else "2B"
    if postcode[:2] in ("97", "98"):
        return postcode[:3]
    return postcode[:2]


def postcode_label(value, level):
    if level == 2:
        return TOP
    if value is None:
        return None
    return value if level == 0 else departement(value)


def date_label(d, level):
    return [d.isoformat(), f"{d.year:04}-{d.month:02}", f"{d.year:04}-Q{(d.month - 1) // 3 + 1}",
            f"{d.year:04}", TOP][level]


def main():
    repo, out = Path(sys.argv[1]), Path(sys.argv[2])
    data = repo / "sample-data"
    key = bytes.fromhex((data / "DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex").read_text().strip())
    p = Pseudonymiser(key, "FR-2029-0107/research")
    opted = {normalise(l) for l in (data / "opt_out.txt").read_text().splitlines()
             if l.strip() and not l.lstrip().startswith("#")}
    manifest = json.loads((out / "manifest.json").read_text())
    levels = {d["name"]: {l["column"]: l["level"] for l in d["privacy"]["levels"]}
              for d in manifest["datasets"]}
    summary = {}

    def kept(rows):
        for r in rows:
            st, n = status(r["nir"])
            if st != "missing" and n in opted:
                continue
            if st == "valid":
                yield r, p.single(n)

    # Patients: age at 2025-01-01, sex, département; k = 5 persons.
    lv = levels["patients"]
    rows = []
    for r, pseudonym in kept(read_csv(data / "hospital/patients.csv")):
        qi = (age_label(age(iso(r["birth_date"]), dt.date(2025, 1, 1)), lv["age"]),
              TOP if lv["sex"] == 1 else r["sex"],
              postcode_label(r["postcode"], lv["department"]))
        rows.append((pseudonym, qi, None))
    patients = rows

    # Stays 2019-2024: admission date, département; k = 5 persons, 2 distinct diagnoses.
    lv = levels["stays"]
    rows = []
    for r, pseudonym in kept(read_csv(data / "hospital/stays.csv")):
        adm = iso(r["admission_date"])
        if not (dt.date(2019, 1, 1) <= adm <= dt.date(2024, 12, 31)):
            continue
        qi = (date_label(adm, lv["admission"]), postcode_label(r["postcode"], lv["department"]))
        rows.append((pseudonym, qi, r["main_diagnosis"]))
    stays = rows

    summary["patients"], kept_p = verify_table(out / "patients.parquet", patients,
                                               ["person_pseudonym", "age", "sex", "department"], k=5, l=None)
    summary["stays"], kept_s = verify_table(out / "stays.parquet", stays,
                                            ["person_pseudonym", "admission", "department", "main_diagnosis"],
                                            k=5, l=2)
    # One fate: a person with eligible rows in a table but none delivered there has none in the other.
    gone_p = {r[0] for r in patients} - kept_p
    gone_s = {r[0] for r in stays} - kept_s
    if gone_p & kept_s or gone_s & kept_p:
        sys.exit(f"{len(gone_p & kept_s)} persons left out of patients are in stays, "
                 f"{len(gone_s & kept_p)} left out of stays are in patients")
    report = json.loads((out / "report.json").read_text())
    for table in ["patients", "stays"]:
        d = next(d for d in report["datasets"] if d["name"] == table)
        removed = d.get("rows_of_removed_persons", 0)
        suppressed_here = d["anonymisation"]["rows_suppressed"]
        # Eligible rows left out: by this table's model, or as rows of persons left out elsewhere.
        if removed + suppressed_here != summary[table]["left_out"]:
            sys.exit(f"{table}: report suppresses {suppressed_here} rows and removes {removed} of persons "
                     f"suppressed elsewhere; {summary[table]['left_out']} eligible rows are not delivered")
        summary[table]["rows_of_persons_suppressed_elsewhere"] = removed
        a = d["anonymisation"]
        if a["risk_after"]["smallest_class"] != summary[table]["smallest_class"]:
            sys.exit(f"{table}: report's smallest class {a['risk_after']['smallest_class']}, "
                     f"file's {summary[table]['smallest_class']}")
        if "l_distinct" in summary[table]:
            reached = a.get("sensitive_reached") or sys.exit(f"{table}: no sensitive_reached in the report")
            if reached["l_distinct"] != summary[table]["l_distinct"] or \
                    abs(reached["l_entropy"] - summary[table]["l_entropy"]) > 1e-9:
                sys.exit(f"{table}: report reaches {reached}, the file {summary[table]}")
    print(json.dumps(summary))


def verify_table(path, rows, columns, k, l):
    """Checks a delivered table against its eligible rows; returns its summary and persons."""
    table = pq.read_table(path)
    if table.column_names != columns:
        sys.exit(f"{path}: columns {table.column_names}, expected {columns}")
    got = list(zip(*[table.column(c).to_pylist() for c in columns]))
    eligible = Counter((pseudonym,) + qi + ((sensitive,) if l is not None else ())
                       for pseudonym, qi, sensitive in rows)
    extra = Counter(got) - eligible
    if extra:
        sys.exit(f"{path.name}: {sum(extra.values())} delivered rows are not eligible rows, e.g. {next(iter(extra))}")
    if got != ordered_rows(got, 0):
        sys.exit(f"{path.name}: rows are not in the delivery's order")
    persons, values = defaultdict(set), defaultdict(Counter)
    for row in got:
        qi = row[1:len(columns) - (1 if l is not None else 0)]
        persons[qi].add(row[0])
        values[qi][row[-1]] += 1
    smallest = min(len(p) for p in persons.values())
    if smallest < k:
        sys.exit(f"{path.name}: a delivered class has {smallest} persons")
    if l is not None and min(len(v) for v in values.values()) < l:
        sys.exit(f"{path.name}: a delivered class has fewer than {l} distinct sensitive values")
    summary = {"rows": len(rows), "delivered": len(got), "left_out": len(rows) - len(got),
               "classes": len(persons), "smallest_class": smallest}
    if l is not None:
        # What the least diverse class reaches: distinct values, and e to the entropy of their shares.
        summary["l_distinct"] = min(len(v) for v in values.values())
        summary["l_entropy"] = min(math.exp(-sum(c / sum(v.values()) * math.log(c / sum(v.values()))
                                                 for c in v.values()))
                                   for v in values.values())
    return summary, {row[0] for row in got}


if __name__ == "__main__":
    main()
