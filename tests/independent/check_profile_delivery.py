"""Independent check of the OMOP delivery (configs/omop.toml): privacy per person across tables,
written from the permit and the documented algorithms, sharing no code with the engine.

From the raw OMOP tables and the demo key (Python's csv, hmac, pyarrow), it links every delivered
row to its raw person (HKDF-SHA-256 domain key, HMAC-SHA-256 pseudonym of the person_id) and
rebuilds each delivered person's profile from the delivered files: sex and birth year from the
person table, the first visit from the delivered visits (undoing the person's documented keyed
shift). It then requires: each delivered band holds the raw value, at the width of the level the
manifest records; every class of profiles holds at least k = 5 persons; the first visit rebuilt
from the delivered visits is the raw first visit and lies in the person's delivered band; no table
holds a person the person table does not (one person, one fate), and each holds every row of the
persons it keeps; and the persons' sets of delivered diagnoses are 5^2-anonymous, each code
released as one of its ICD-10 ancestors alike everywhere. Prints counts as JSON; exits non-zero on the first violation.

Usage: check_profile_delivery.py REPO_ROOT OUT_ROOT   (OUT_ROOT holds omop/)
"""

import collections
import csv
import datetime as dt
import hashlib
import hmac
import itertools
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

import keys

PERMIT = "FR-2029-0131"
K = 5
SHIFT_MIN, SHIFT_MAX = -90, 90


def shift_days(skey, person):
    return keys.shift_days(skey, person, SHIFT_MIN, SHIFT_MAX)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def fail(message):
    sys.exit(message)


def in_band(value, band, width):
    """Whether `band` ("1940-1944", "2017", "*") holds `value` and spans `width` values."""
    if band == "*":
        return width is None
    if "-" in band:
        low, high = (int(x) for x in band.split("-"))
    else:
        low = high = int(band)
    return low <= value <= high and (width is None or high - low + 1 == width)


def main():
    repo, out = Path(sys.argv[1]), Path(sys.argv[2]) / "omop"
    raw = repo / "sample-data" / "omop"
    key = bytes.fromhex((repo / "sample-data/DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex").read_text().strip())
    research, skey = (keys.domain_key(key, f"{PERMIT}/{d}") for d in ["research", "shift"])
    pseudonym = lambda pid: hmac.new(research, pid.encode(), hashlib.sha256).hexdigest()[:32]

    persons = {pseudonym(r["person_id"]): r for r in read_csv(raw / "person.csv")}
    visits = collections.defaultdict(list)
    for r in read_csv(raw / "visit_occurrence.csv"):
        visits[r["person_id"]].append(dt.date.fromisoformat(r["visit_start_date"]))

    manifest = json.loads((out / "manifest.json").read_text())
    record = next(d for d in manifest["datasets"] if d["name"] == "person")
    levels = {l["column"]: l["level"] for l in record["privacy"]["levels"]}
    covers = record["privacy"]["coverage"]["covers"]
    if "person.first_visit (first of visit_occurrence.visit_start_date)" not in covers:
        fail(f"the manifest does not say the guarantee covers the first visit: {covers}")
    birth_width = {0: 1, 1: 5, 2: 10, 3: 20, 4: None}[levels["year_of_birth"]]
    visit_width = {0: 1, 1: 1, 2: 5, 3: None}[levels["first_visit"]]

    table = pq.read_table(out / "person.parquet").to_pydict()
    delivered = set(table["person_pseudonym"])
    if len(delivered) != len(table["person_pseudonym"]):
        fail("person: a person is delivered twice")
    profiles = collections.Counter()
    for p, sex, born, first in zip(table["person_pseudonym"], table["gender_concept_id"],
                                   table["year_of_birth"], table["first_visit"]):
        r = persons.get(p)
        if r is None:
            fail("person: a delivered pseudonym is no raw person")
        if not in_band(int(r["year_of_birth"]), born, birth_width):
            fail(f"person: birth band {born!r} does not hold {r['year_of_birth']} at width {birth_width}")
        raw_first = min(visits[r["person_id"]], default=None)
        if (raw_first is None) != (first is None):
            fail(f"person: first visit {first!r} for a person whose first visit is {raw_first}")
        if raw_first is not None and not in_band(raw_first.year, first, visit_width):
            fail(f"person: first-visit band {first!r} does not hold {raw_first}")
        profiles[(sex, born, first)] += 1
    smallest = min(profiles.values())
    if smallest < K:
        fail(f"person: a profile is shared by {smallest} persons, below k = {K}")

    # The profile rebuilt from the delivered visits, and one fate across the tables.
    rows_of = {}
    for name, column in [("observation_period", None), ("visit_occurrence", "visit_start_date"),
                         ("condition_occurrence", None)]:
        t = pq.read_table(out / f"{name}.parquet").to_pydict()
        outside = set(t["person_pseudonym"]) - delivered
        if outside:
            fail(f"{name}: {len(outside)} persons the person table does not hold (one person, one fate)")
        rows_of[name] = collections.Counter(t["person_pseudonym"])
        if column:
            first_delivered = {}
            for p, day in zip(t["person_pseudonym"], t[column]):
                first_delivered[p] = min(first_delivered.get(p, day), day)
            for p, day in first_delivered.items():
                r = persons[p]
                rebuilt = day - dt.timedelta(days=shift_days(skey, r["person_id"]))
                if rebuilt != min(visits[r["person_id"]]):
                    fail(f"{name}: the first visit rebuilt from the delivery is not the person's")
    raw_rows = {name: collections.Counter(pseudonym(r["person_id"]) for r in read_csv(raw / f"{name}.csv"))
                for name in rows_of}
    for name, counts in rows_of.items():
        for p in delivered:
            if counts.get(p, 0) != raw_rows[name].get(p, 0):
                fail(f"{name}: a kept person's rows are not all delivered")
    smallest_set = check_code_sets(raw, out, pseudonym, delivered)
    print(json.dumps({
        "persons": len(delivered), "suppressed": len(persons) - len(delivered), "smallest_class": smallest,
        "profiles": len(profiles), "rows": {name: sum(c.values()) for name, c in rows_of.items()},
        "levels": levels, "smallest_code_set_support": smallest_set,
    }))


def icd10_releases(code):
    """What an ICD-10 code may be released as: itself, its category, its chapter label, `*`."""
    category = code.split(".")[0]
    return {code, category, "*"}


def in_chapter(label, category):
    """Whether chapter label "IV (E00-E90)" holds `category`."""
    if not label.endswith(")") or "(" not in label:
        return False
    first, last = label[label.index("(") + 1:-1].split("-")
    return first <= category <= last


def check_code_sets(raw, out, pseudonym, delivered):
    """k^m-anonymity (k = 5, m = 2) of each person's set of delivered diagnosis codes.

    Each raw code must be released as one of its ancestors (itself, its category, its chapter or
    `*`), the same one for every row of every person (a global cut): the delivered label of a
    code is the single label among its ancestors the delivery holds. Then every set of one or two
    labels a delivered person holds must be held by at least 5 delivered persons.
    """
    t = pq.read_table(out / "condition_occurrence.parquet").to_pydict()
    labels = set(t["condition_source_value"])
    released = {}
    for r in read_csv(raw / "condition_occurrence.csv"):
        p = pseudonym(r["person_id"])
        if p not in delivered:
            continue
        code = r["condition_source_value"]
        category = code.split(".")[0]
        options = {l for l in labels if l in icd10_releases(code) or in_chapter(l, category)}
        if len(options) != 1:
            fail(f"condition_occurrence: a code is released as {len(options)} labels, not one")
        released[code] = options.pop()
    sets = collections.defaultdict(set)
    for p, label in zip(t["person_pseudonym"], t["condition_source_value"]):
        sets[p].add(label)
    expected = collections.defaultdict(set)
    for r in read_csv(raw / "condition_occurrence.csv"):
        p = pseudonym(r["person_id"])
        if p in delivered:
            expected[p].add(released[r["condition_source_value"]])
    if dict(sets) != dict(expected):
        fail("condition_occurrence: a person's delivered codes are not their raw codes released")
    support = collections.Counter()
    for labels_of in sets.values():
        for size in (1, 2):
            for subset in itertools.combinations(sorted(labels_of), size):
                support[subset] += 1
    smallest = min(support.values())
    if smallest < K:
        fail(f"condition_occurrence: {smallest} persons hold a set of delivered codes, below k = {K}")
    return smallest


if __name__ == "__main__":
    main()
