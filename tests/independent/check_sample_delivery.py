"""Independent check of the sample deliveries, written without looking at the engine's code paths.

Recomputes, from the raw sample extracts and the demo key, with Python's csv, hmac and pyarrow:
which rows each permit keeps (cohort, opt-out, identifier policy), every pseudonym (HKDF-SHA-256
domain key, HMAC-SHA-256, 128-bit hex), every generalised value; then reads each delivery with
pyarrow and requires an exact match, the expected schema and the footer metadata.

Usage: check_sample_delivery.py REPO_ROOT OUT_ROOT   (OUT_ROOT holds hospital/, insurer/, registry/)
"""

import csv
import datetime as dt
import hashlib
import hmac
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

import keys
from delivery_order import ordered_columns

SEPARATORS = " -./\t"


def normalise(raw):
    if raw is None:
        return ""
    return "".join(c for c in raw.strip() if c not in SEPARATORS).upper()


def nir_valid(n):
    if len(n) != 15:
        return False
    body = n[:13]
    if body[5:7] == "2A":
        body = body[:5] + "19" + body[7:]
    elif body[5:7] == "2B":
        body = body[:5] + "18" + body[7:]
    if not (body.isdigit() and n[13:].isdigit()):
        return False
    return int(n[13:]) == 97 - int(body) % 97


class Pseudonymiser:
    def __init__(self, key, context):
        self.key = keys.domain_key(key, context)

    def single(self, normal):
        return hmac.new(self.key, normal.encode(), hashlib.sha256).hexdigest()[:32]

    def composite(self, parts):
        msg = b"".join(len(p.encode()).to_bytes(4, "big") + p.encode() for p in parts)
        return hmac.new(self.key, msg, hashlib.sha256).hexdigest()[:32]


def status(raw):
    n = normalise(raw)
    if not n:
        return "missing", n
    return ("valid" if nir_valid(n) else "invalid"), n


def read_csv(path, delimiter=",", encoding="utf-8"):
    with open(path, newline="", encoding=encoding) as f:
        rows = list(csv.DictReader(f, delimiter=delimiter))
    return [{k: (v if v != "" else None) for k, v in r.items()} for r in rows]


def iso(text, fmt="%Y-%m-%d"):
    return dt.datetime.strptime(text.strip(), fmt).date()


def check(name, got, expected):
    if got != expected:
        for i, (g, e) in enumerate(zip(got, expected)):
            if g != e:
                sys.exit(f"{name}: first difference at row {i}: delivered {g!r}, expected {e!r}")
        sys.exit(f"{name}: {len(got)} values delivered, {len(expected)} expected")


def read_delivery(path, columns):
    """The delivered columns, and the footer; the rows must follow the delivery's order."""
    table = pq.read_table(path)
    if table.column_names != columns:
        sys.exit(f"{path}: columns {table.column_names}, expected {columns}")
    raw = pq.ParquetFile(path).metadata.metadata or {}
    meta = {k.decode(): v.decode() for k, v in raw.items()}
    if meta.get("ehds.permit_id") != "FR-2029-0042":
        sys.exit(f"{path}: footer permit id is {meta.get('ehds.permit_id')!r}")
    return table.to_pydict(), meta


def main():
    repo, out = Path(sys.argv[1]), Path(sys.argv[2])
    data = repo / "sample-data"
    key = bytes.fromhex((data / "DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex").read_text().strip())
    p = Pseudonymiser(key, "FR-2029-0042/linkage")
    opted = {normalise(l) for l in (data / "opt_out.txt").read_text().splitlines()
             if l.strip() and not l.lstrip().startswith("#")}
    counts = {}

    # Hospital patients: reject invalid and missing NIRs; opt-out; no cohort.
    rows = read_csv(data / "hospital/patients.csv")
    exp = {k: [] for k in ["person_pseudonym", "sex", "birth_year", "department", "clk", "composite_pseudonym"]}
    opted_out = 0
    for r in rows:
        st, n = status(r["nir"])
        if st != "missing" and n in opted:
            opted_out += 1
            continue
        if st != "valid":
            continue
        exp["person_pseudonym"].append(p.single(n))
        exp["sex"].append(int(r["sex"]))
        exp["birth_year"].append(iso(r["birth_date"]).year)
        exp["department"].append(r["postcode"][:2] if r["postcode"] else None)
        exp["composite_pseudonym"].append(p.composite([n, r["birth_date"].replace("-", ""), str(int(r["sex"]))]))
    # The CLKs (bit-identical to clkhash, checked by the test that runs this script) order the rows
    # too: taken from the delivery, one per person, never missing.
    delivered = pq.read_table(out / "hospital/patients.parquet", columns=["person_pseudonym", "clk"]).to_pydict()
    clks = {}
    for person, clk in zip(delivered["person_pseudonym"], delivered["clk"]):
        if clk is None or clks.setdefault(person, clk) != clk:
            sys.exit("patients.clk: a delivered row without a CLK, or two CLKs for one person")
    exp["clk"] = [clks.get(person) for person in exp["person_pseudonym"]]
    exp = ordered_columns(exp, "person_pseudonym")
    got, meta = read_delivery(out / "hospital/patients.parquet", list(exp))
    for k in exp:
        check(f"patients.{k}", got[k], exp[k])
    counts["patients"] = {"read": len(rows), "opted_out": opted_out, "delivered": len(exp["person_pseudonym"])}

    # Hospital stays: cohort on admission date 2019-2024.
    rows = read_csv(data / "hospital/stays.csv")
    exp = {k: [] for k in ["person_pseudonym", "admission_month", "discharge_month", "main_diagnosis", "unit"]}
    outside = opted_out = 0
    for r in rows:
        adm = iso(r["admission_date"])
        if not (dt.date(2019, 1, 1) <= adm <= dt.date(2024, 12, 31)):
            outside += 1
            continue
        st, n = status(r["nir"])
        if st != "missing" and n in opted:
            opted_out += 1
            continue
        if st != "valid":
            continue
        exp["person_pseudonym"].append(p.single(n))
        exp["admission_month"].append(adm.replace(day=1))
        exp["discharge_month"].append(iso(r["discharge_date"]).replace(day=1))
        exp["main_diagnosis"].append(r["main_diagnosis"])
        exp["unit"].append(r["unit"])
    exp = ordered_columns(exp, "person_pseudonym")
    got, _ = read_delivery(out / "hospital/stays.parquet", list(exp))
    for k in exp:
        check(f"stays.{k}", got[k], exp[k])
    counts["stays"] = {"read": len(rows), "outside_cohort": outside, "opted_out": opted_out,
                       "delivered": len(exp["person_pseudonym"])}

    # Insurer claims: Latin-1, `;`, French dates; cohort on date and ATC prefixes.
    rows = read_csv(data / "insurer/pharmacy_claims.csv", ";", "latin-1")
    exp = {k: [] for k in ["person_pseudonym", "dispensing_month", "atc", "amount_eur"]}
    outside = opted_out = 0
    for r in rows:
        d = iso(r["date_delivrance"], "%d/%m/%Y")
        if not (dt.date(2019, 1, 1) <= d <= dt.date(2024, 12, 31)) or not r["code_atc"].startswith(("A10", "C09", "C10", "B01")):
            outside += 1
            continue
        st, n = status(r["nir"])
        if st != "missing" and n in opted:
            opted_out += 1
            continue
        if st != "valid":
            continue
        exp["person_pseudonym"].append(p.single(n))
        exp["dispensing_month"].append(d.replace(day=1))
        exp["atc"].append(r["code_atc"])
        exp["amount_eur"].append(float(r["montant"]))
    exp = ordered_columns(exp, "person_pseudonym")
    got, _ = read_delivery(out / "insurer/pharmacy_claims.parquet", list(exp))
    for k in exp:
        check(f"pharmacy_claims.{k}", got[k], exp[k])
    counts["pharmacy_claims"] = {"read": len(rows), "outside_cohort": outside, "opted_out": opted_out,
                                 "delivered": len(exp["person_pseudonym"])}

    # Registry: invalid NIRs delivered with a null pseudonym, missing ones rejected.
    rows = read_csv(data / "registry/cancer_cases.csv")
    exp = {k: [] for k in ["person_pseudonym", "sex", "birth_year", "diagnosis_year", "icd10_category",
                           "stage", "department"]}
    opted_out = 0
    for r in rows:
        st, n = status(r["nir"])
        if st != "missing" and n in opted:
            opted_out += 1
            continue
        if st == "missing":
            continue
        exp["person_pseudonym"].append(p.single(n) if st == "valid" else None)
        exp["sex"].append(int(r["sex"]))
        exp["birth_year"].append(iso(r["birth_date"]).year)
        exp["diagnosis_year"].append(iso(r["diagnosis_date"]).year)
        exp["icd10_category"].append(r["icd10"][:3])
        exp["stage"].append(int(r["stage"]) if r["stage"] else None)
        exp["department"].append(r["department"])
    exp = ordered_columns(exp, "person_pseudonym")
    got, _ = read_delivery(out / "registry/cancer_cases.parquet", list(exp))
    for k in exp:
        check(f"cancer_cases.{k}", got[k], exp[k])
    counts["cancer_cases"] = {"read": len(rows), "opted_out": opted_out, "delivered": len(exp["person_pseudonym"])}

    # The key fingerprint: first 16 bytes of HMAC-SHA-256(key, label), in the manifest and every footer.
    fingerprint = hmac.new(key, b"ehds-prep key fingerprint v1", hashlib.sha256).hexdigest()[:32]
    expected_domains = [{"name": "linkage", "context": "FR-2029-0042/linkage", "key_fingerprint": fingerprint}]
    for holder in ["hospital", "insurer", "registry"]:
        manifest = json.loads((out / holder / "manifest.json").read_text())
        if manifest["domains"] != expected_domains:
            sys.exit(f"{holder}: manifest domains {manifest['domains']}, expected {expected_domains}")
        for d in manifest["datasets"]:
            raw = pq.ParquetFile(out / holder / d["file"]).metadata.metadata
            if json.loads(raw[b"ehds.domains"]) != expected_domains:
                sys.exit(f"{holder}/{d['file']}: footer domains differ from the independent fingerprint")
            digest = hashlib.sha256((out / holder / d["file"]).read_bytes()).hexdigest()
            if digest != d["sha256"]:
                sys.exit(f"{holder}/{d['file']}: manifest SHA-256 differs from the file's")

    # The engine's own report must state the same counts.
    for holder in ["hospital", "insurer", "registry"]:
        report = json.loads((out / holder / "report.json").read_text())
        for d in report["datasets"]:
            c = counts[d["name"]]
            for key, field in [("read", "rows_read"), ("outside_cohort", "rows_outside_cohort"),
                               ("opted_out", "rows_opted_out"), ("delivered", "rows_delivered")]:
                if key in c and d[field] != c[key]:
                    sys.exit(f"report {holder}/{d['name']}.{field} = {d[field]}, independent count {c[key]}")
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
