"""Independent check of the access body's linked sample delivery (configs/linkage.toml).

From the four holders' deliveries (read with pyarrow) and the demo access-body key, with Python's
hmac and sets: the cohort's participants matched to the hospital's patients on their CLKs (Dice of
the delivered CLKs at the permit's threshold, most similar pairs first, each person linked once;
an unmatched participant keyed by SHA-256 of "ehds-prep clk-linked person", NUL, the source's name,
NUL and its holder pseudonym, cut to 128 bits); the persons of each source and of every combination of sources, the persons compared
and disagreeing on sex and birth year, the re-pseudonymisation of every row (HKDF-SHA-256 domain key
for "FR-2029-0042/researcher", HMAC-SHA-256 of the holder's pseudonym as written, 128-bit hex), the
person table's classes (k = 5 in persons over sex, birth year, département), and that no holder
pseudonym appears in the linked delivery. Compares with linkage-exact.json and the masked linkage.json.

Usage: check_linked_delivery.py REPO_ROOT OUT_ROOT   (OUT_ROOT holds hospital/ ... linked/)
"""

import base64
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

from delivery_order import in_key_order

sys.path.insert(0, str(Path(__file__).parent))
from check_sample_delivery import Pseudonymiser  # noqa: E402

SOURCES = {"hospital": ["patients", "stays"], "insurer": ["pharmacy_claims"], "registry": ["cancer_cases"],
           "cohort": ["participants"]}
PERSON = {"cohort": "participant_pseudonym"}
THRESHOLD = 10
CLK_THRESHOLD = 0.92


def first_clks(path, person):
    """Each person's first CLK, as an integer, in order of first appearance."""
    clks = {}
    for p, c in zip(column(path, person), column(path, "clk")):
        if p is not None and c is not None and p not in clks:
            clks[p] = int.from_bytes(base64.b64decode(c), "big")
    return list(clks.items())


def own_key(source, person):
    return hashlib.sha256(b"ehds-prep clk-linked person\0" + source.encode() + b"\0" + person.encode()).hexdigest()[:32]


def clk_links(out):
    """Per cohort participant pseudonym, its linkage key; the candidate pairs; the participants matched."""
    hospital = first_clks(out / "hospital/patients.parquet", "person_pseudonym")
    cohort = first_clks(out / "cohort/participants.parquet", "participant_pseudonym")
    pairs = []
    for i, (_, a) in enumerate(hospital):
        ca = a.bit_count()
        for j, (_, b) in enumerate(cohort):
            cb = b.bit_count()
            similarity = 2.0 * (a & b).bit_count() / (ca + cb) if ca + cb else 0.0
            if similarity >= CLK_THRESHOLD:
                pairs.append((-similarity, i, j))
    pairs.sort()
    used_hospital, matched = set(), {}
    for _, i, j in pairs:
        participant = cohort[j][0]
        if i in used_hospital or participant in matched:
            continue
        used_hospital.add(i)
        matched[participant] = hospital[i][0]
    keys = {p: matched.get(p) or own_key("cohort", p) for p, _ in cohort}
    return keys, len(pairs), len(matched)


def column(path, name):
    return pq.read_table(path, columns=[name]).column(name).to_pylist()


def fail(message):
    sys.exit(message)


def main():
    repo, out = Path(sys.argv[1]), Path(sys.argv[2])
    key = bytes.fromhex((repo / "sample-data/DEMO-ACCESS-BODY-KEY-DO-NOT-USE-FOR-REAL-DATA.hex").read_text().strip())
    researcher = Pseudonymiser(key, "FR-2029-0042/researcher")
    linked = out / "linked"
    exact = json.loads((out / "linkage-exact.json").read_text())
    masked = json.loads((linked / "linkage.json").read_text())

    cohort_keys, candidate_pairs, matched = clk_links(out)

    def linkage_keys(source, table):
        """A table's persons by their linkage pseudonym (the cohort's through its CLK links)."""
        values = column(out / source / f"{table}.parquet", PERSON.get(source, "person_pseudonym"))
        holder_values.update(v for v in values if v)
        if source == "cohort":
            values = [cohort_keys.get(v) or own_key("cohort", v) if v else None for v in values]
            holder_values.update(v for v in values if v)
        return values

    persons = {}
    holder_values = set()
    for source, tables in SOURCES.items():
        persons[source] = set()
        for t in tables:
            persons[source].update(v for v in linkage_keys(source, t) if v)
    everyone = set().union(*persons.values())

    def shown(n):
        return f"< {THRESHOLD}" if 0 < n < THRESHOLD else n

    checked = 0
    names = list(SOURCES)
    for c_exact, c_masked in zip(exact["combinations"], masked["combinations"]):
        inside = set(c_exact["sources"])
        n = sum(1 for p in everyone if {s for s in names if p in persons[s]} == inside)
        if c_exact["persons"] != n or c_masked["persons"] != shown(n):
            fail(f"combination {sorted(inside)}: report {c_exact['persons']} / {c_masked['persons']}, independent {n}")
        checked += 1
    for pair in exact["pairs"]:
        a, b = pair["sources"]
        n = len(persons[a] & persons[b])
        if pair["persons"] != n:
            fail(f"pair {a}+{b}: report {pair['persons']}, independent {n}")
    if exact["persons"] != len(everyone):
        fail(f"persons: report {exact['persons']}, independent {len(everyone)}")
    clk = exact["clk"]
    independent = (candidate_pairs, matched, len(cohort_keys) - matched)
    reported = (clk["candidate_pairs"], clk["linked_by_clk_to_pseudonym_sources"], clk["not_linked"])
    if reported != independent or clk["threshold"] != CLK_THRESHOLD:
        fail(f"CLK linkage: report {reported}, independent {independent}")

    # Consistency of sex and birth year between the hospital's patients and the registry's cases.
    def first_values(path, attribute):
        values = {}
        for p, v in zip(column(path, "person_pseudonym"), column(path, attribute)):
            if p is not None and v is not None:
                values.setdefault(p, v)
        return values

    consistency = {}
    for attribute in ["sex", "birth_year"]:
        hospital = first_values(out / "hospital/patients.parquet", attribute)
        registry = first_values(out / "registry/cancer_cases.parquet", attribute)
        compared = [p for p in hospital if p in registry]
        disagreeing = sum(1 for p in compared if hospital[p] != registry[p])
        report = next(a for a in exact["consistency"] if a["attribute"] == attribute)
        if (report["persons_compared"], report["persons_disagreeing"]) != (len(compared), disagreeing):
            fail(f"{attribute}: report {report['persons_compared']}/{report['persons_disagreeing']}, "
                 f"independent {len(compared)}/{disagreeing}")
        consistency[attribute] = {"compared": len(compared), "disagreeing": disagreeing}

    # The person table: new pseudonyms of linked persons, classes of at least 5 persons.
    report = json.loads((linked / "report.json").read_text())
    suppressed = report["datasets"][0]["anonymisation"]["rows_suppressed"]
    table = pq.read_table(linked / "persons.parquet").to_pydict()
    kept = set(table["person_pseudonym"])
    mapped = {researcher.single(p) for p in everyone}
    if not kept <= mapped or len(table["person_pseudonym"]) != len(everyone) - suppressed:
        fail("persons.parquet: pseudonyms are not the linked persons' re-pseudonymised ones, less the suppressed")
    classes = defaultdict(set)
    for p, s, y, d in zip(table["person_pseudonym"], table["sex"], table["birth_year"], table["department"]):
        classes[(s, y, d)].add(p)
    smallest = min(len(v) for v in classes.values())
    if smallest < 5:
        fail(f"persons.parquet: a class holds {smallest} persons")

    # Every row of the event tables, re-pseudonymised in order; the suppressed persons' rows removed.
    removed_rows = 0
    for source, table_name in [("hospital", "stays"), ("insurer", "pharmacy_claims"), ("registry", "cancer_cases"),
                               ("cohort", "participants")]:
        holder = [researcher.single(v) for v in linkage_keys(source, table_name) if v is not None]
        expected = [v for v in holder if v in kept]
        removed_rows += len(holder) - len(expected)
        got = column(linked / f"{table_name}.parquet", PERSON.get(source, "person_pseudonym"))
        if sorted(got) != sorted(expected):
            fail(f"{table_name}: re-pseudonymised column differs from HMAC of the holder's kept pseudonyms")
        if not in_key_order(got):
            fail(f"{table_name}: rows are not in the delivery's order")
        reported = next(d for d in report["datasets"] if d["name"] == table_name).get("rows_of_removed_persons", 0)
        if reported != len(holder) - len(expected):
            fail(f"{table_name}: report removes {reported} rows, independent {len(holder) - len(expected)}")
    if suppressed > 0 and removed_rows == 0:
        fail("suppressed persons kept rows in the event tables")

    # No holder pseudonym anywhere in the linked delivery.
    for path in linked.iterdir():
        if path.suffix == ".parquet":
            for name in pq.read_schema(path).names:
                values = {str(v) for v in column(path, name) if v is not None}
                if values & holder_values:
                    fail(f"{path.name}.{name} holds a holder's linkage pseudonym")
        else:
            text = path.read_text()
            if any(v in text for v in holder_values):
                fail(f"{path.name} holds a holder's linkage pseudonym")

    print(json.dumps({"combinations": checked, "persons": len(everyone), "consistency": consistency,
                      "classes": len(classes), "smallest_class": smallest, "clk_matched": matched}))


if __name__ == "__main__":
    main()
