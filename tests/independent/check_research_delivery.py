"""Independent check of the anonymised research delivery (configs/research.toml).

Given the levels the manifest records, recomputes from the raw extract with Python's csv, hmac and
pyarrow: each row's generalised quasi-identifiers (ages in bands with top-coding, départements with
Corsica and overseas, months/quarters/years), the equivalence classes counted in distinct persons, the
classes that break k-anonymity or distinct l-diversity, hence exactly which rows are delivered; then
requires the delivery to match row for row, and every delivered class to hold at least k persons.

Usage: check_research_delivery.py REPO_ROOT DELIVERY_DIR
"""

import datetime as dt
import json
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from check_sample_delivery import Pseudonymiser, check, iso, normalise, read_csv, status  # noqa: E402

TOP = "*"


def age(birth, at):
    return at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day))


def age_label(value, level, widths=(5, 10, 20), top=90):
    if level == len(widths) + 1:
        return TOP
    if value >= top:
        return f"≥{top}"
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
    summary["patients"] = deliver_and_compare(out / "patients.parquet", rows,
                                              ["person_pseudonym", "age", "sex", "department"], k=5, l=None)

    # Stays 2019-2024: admission date, département; k = 5 persons, 2 distinct diagnoses.
    lv = levels["stays"]
    rows = []
    for r, pseudonym in kept(read_csv(data / "hospital/stays.csv")):
        adm = iso(r["admission_date"])
        if not (dt.date(2019, 1, 1) <= adm <= dt.date(2024, 12, 31)):
            continue
        qi = (date_label(adm, lv["admission"]), postcode_label(r["postcode"], lv["department"]))
        rows.append((pseudonym, qi, r["main_diagnosis"]))
    summary["stays"] = deliver_and_compare(out / "stays.parquet", rows,
                                           ["person_pseudonym", "admission", "department", "main_diagnosis"],
                                           k=5, l=2)
    print(json.dumps(summary))


def deliver_and_compare(path, rows, columns, k, l):
    persons, values = defaultdict(set), defaultdict(set)
    for pseudonym, qi, sensitive in rows:
        persons[qi].add(pseudonym)
        values[qi].add(sensitive)
    bad = {qi for qi in persons if len(persons[qi]) < k or (l is not None and len(values[qi]) < l)}
    expected = [(pseudonym,) + qi + ((sensitive,) if l is not None else ())
                for pseudonym, qi, sensitive in rows if qi not in bad]
    table = pq.read_table(path)
    if table.column_names != columns:
        sys.exit(f"{path}: columns {table.column_names}, expected {columns}")
    got = list(zip(*[table.column(c).to_pylist() for c in columns]))
    check(path.name, got, expected)
    sizes = [len(persons[qi]) for qi in persons if qi not in bad]
    if min(sizes) < k:
        sys.exit(f"{path.name}: a delivered class has {min(sizes)} persons")
    return {"rows": len(rows), "delivered": len(got), "suppressed": len(rows) - len(got),
            "classes": len(sizes), "smallest_class": min(sizes)}


if __name__ == "__main__":
    main()
