"""Independent check of `ehds-prep describe` on the sample hospital extracts.

Parses each JSON-LD description as RDF (rdflib) and expands it (pyld) with its own context, then:
- requires the DCAT-AP 3 and HealthDCAT-AP properties that ehds-prep fills (mandatory ones among
  them) on the dataset and its distribution, as full IRIs;
- recomputes every figure from the raw CSV with Python's csv module: records, unique individuals
  (valid NIRs, normalised), temporal coverage and per-column date ranges (the 1st and 99th
  percentiles by nearest rank, never nearer the ends than the 10th record, widened to whole years),
  typical age range (5th and 95th percentile, same rule, of records' ages), and per column
  completeness and validity (the declared type's parser, or the NIR control key), and requires
  equality;
- checks that a description of fewer than 10 persons publishes no figure at all;
- validates each description with pySHACL against the HealthDCAT-AP Release 8 NON_PUBLIC
  obligations (tests/shapes/healthdcat-ap-r8-non-public.ttl: 0 violations), and requires that
  descriptions broken as the issue found them (no dct:type, no hasStructuredData, csvw:titles,
  an access body without contact point, a category outside the vocabulary) are refused.

Usage: check_describe.py REPO_ROOT STAYS.jsonld PATIENTS.jsonld [SMALL.jsonld]
Prints a JSON summary of what it checked.
"""

import csv
import datetime as dt
import json
import math
import sys
from pathlib import Path

import rdflib
from pyld import jsonld
from pyshacl import validate
from rdflib.namespace import DCAT, DCTERMS, RDF, XSD

sys.path.insert(0, str(Path(__file__).parent))
from check_sample_delivery import nir_valid, normalise  # noqa: E402

HEALTH = rdflib.Namespace("http://healthdataportal.eu/ns/health#")
DCATAP = rdflib.Namespace("http://data.europa.eu/r5r/")
DQV = rdflib.Namespace("http://www.w3.org/ns/dqv#")
CSVW = rdflib.Namespace("http://www.w3.org/ns/csvw#")
VCARD = rdflib.Namespace("http://www.w3.org/2006/vcard/ns#")
METRIC = "urn:ehds-prep:quality-metric:"

DATASET_REQUIRED = [
    DCTERMS.title, DCTERMS.description, DCTERMS.identifier, DCTERMS.publisher, DCAT.contactPoint,
    DCAT.keyword, DCAT.theme, DCTERMS.accessRights, DCATAP.applicableLegislation, DCAT.distribution,
    HEALTH.hdab, HEALTH.healthCategory, HEALTH.numberOfRecords, DQV.hasQualityMeasurement,
    DCTERMS.provenance, DCTERMS.type, HEALTH.hasStructuredData, HEALTH.hasVariables,
]
CV = rdflib.Namespace("http://data.europa.eu/m8g/")
SHAPES = Path(__file__).parent.parent / "shapes" / "healthdcat-ap-r8-non-public.ttl"
HDEU = "https://hdeu-dcat.data.health.europa.eu/resource/authority/"
DISTRIBUTION_REQUIRED = [DCAT.accessURL, DCATAP.applicableLegislation, DCTERMS.format]


SMALL = 10


def bounds(values, p):
    """The p-th and (100 - p)-th percentiles by nearest rank, at least SMALL records from each
    end; None for fewer than 2 * SMALL values."""
    values = sorted(values)
    if len(values) < 2 * SMALL:
        return None
    rank = max(math.ceil(len(values) * p / 100), SMALL)
    return values[rank - 1], values[len(values) - rank]


def age(born, at):
    return at.year - born.year - ((at.month, at.day) < (born.month, born.day))


def parse_date(s):
    try:
        return dt.date.fromisoformat(s.strip())
    except ValueError:
        return None


def profile(path, columns, kinds, person=None, temporal=(), birth=None, age_at=None):
    """Figures of a CSV extract: kinds maps a column to 'date', 'integer', 'nir' or 'string'."""
    rows = list(csv.DictReader(open(path, encoding="utf-8", newline="")))
    out = {"records": len(rows), "columns": {}}
    for c in columns:
        present = [r[c] for r in rows if r[c].strip() != ""]
        kind = kinds[c]
        if kind == "date":
            valid = [d for d in (parse_date(v) for v in present) if d]
        elif kind == "integer":
            valid = [v for v in present if v.strip().lstrip("+-").isdigit()]
        elif kind == "nir":
            valid = [v for v in present if nir_valid(normalise(v))]
        else:
            valid = present
        entry = {
            "completeness": len(present) / len(rows),
            "validity": len(valid) / len(present) if present else 1.0,
        }
        if kind == "date" and bounds(valid, 1):
            lo, hi = bounds(valid, 1)
            entry["date-range-start"] = f"{lo.year:04d}-01-01"
            entry["date-range-end"] = f"{hi.year:04d}-12-31"
        out["columns"][c] = entry
    if person:
        ids = [normalise(r[person]) for r in rows if nir_valid(normalise(r[person]))]
        out["persons"] = len(set(ids))
        out["columns"][person]["uniqueness"] = len(set(ids)) / len(ids)
    days = [d for r in rows for c in temporal for d in [parse_date(r[c])] if d]
    if bounds(days, 1):
        lo, hi = bounds(days, 1)
        out["temporal"] = (f"{lo.year:04d}-01-01", f"{hi.year:04d}-12-31")
    if birth:
        ages = [age(b, age_at) for r in rows for b in [parse_date(r[birth])] if b]
        if bounds(ages, 5):
            out["ages"] = bounds(ages, 5)
    return out


def check(path, expected, failures):
    doc = json.load(open(path))
    expanded = jsonld.expand(doc)
    assert expanded, f"{path}: JSON-LD expands to nothing"
    g = rdflib.Graph().parse(data=json.dumps(doc), format="json-ld")
    datasets = list(g.subjects(RDF.type, DCAT.Dataset))
    if len(datasets) != 1:
        failures.append(f"{path}: {len(datasets)} dcat:Dataset nodes")
        return
    ds = datasets[0]
    for p in DATASET_REQUIRED:
        if g.value(ds, p) is None:
            failures.append(f"{path}: dataset lacks {p}")
    for dist in g.objects(ds, DCAT.distribution):
        for p in DISTRIBUTION_REQUIRED:
            if g.value(dist, p) is None:
                failures.append(f"{path}: distribution lacks {p}")
    if g.value(ds, DCTERMS.accessRights) != rdflib.URIRef(
        "http://publications.europa.eu/resource/authority/access-right/NON_PUBLIC"
    ):
        failures.append(f"{path}: access rights are not NON_PUBLIC")
    if g.value(g.value(ds, DCAT.contactPoint), VCARD.hasEmail) is None:
        failures.append(f"{path}: contact point has no e-mail")

    def literal(p):
        v = g.value(ds, p)
        return None if v is None else v.toPython()

    def equal(what, got, want):
        if got != want:
            failures.append(f"{path}: {what} is {got!r}, recomputed {want!r}")

    equal("numberOfRecords", literal(HEALTH.numberOfRecords), expected["records"])
    if "persons" in expected:
        equal("numberOfUniqueIndividuals", literal(HEALTH.numberOfUniqueIndividuals), expected["persons"])
    if "temporal" in expected:
        period = g.value(ds, DCTERMS.temporal)
        got = (g.value(period, DCAT.startDate), g.value(period, DCAT.endDate))
        for bound in got:
            if bound is None or bound.datatype != XSD.date:
                failures.append(f"{path}: temporal bound {bound!r} is not an xsd:date")
        equal("temporal coverage", tuple(str(b) for b in got), expected["temporal"])
    if "ages" in expected:
        equal("typical ages", (literal(HEALTH.minTypicalAge), literal(HEALTH.maxTypicalAge)), expected["ages"])
    measured = {}
    for m in g.objects(ds, DQV.hasQualityMeasurement):
        metric = str(g.value(m, DQV.isMeasurementOf))
        column = str(g.value(m, DQV.computedOn)).rsplit("#column-", 1)[1]
        value = g.value(m, DQV.value)
        if (g.value(rdflib.URIRef(metric), RDF.type)) != DQV.Metric:
            failures.append(f"{path}: metric {metric} is not defined as a dqv:Metric")
        measured[(column, metric[len(METRIC):])] = value.toPython() if value.datatype != XSD.date else str(value)
    want = {(c, k): v for c, entry in expected["columns"].items() for k, v in entry.items()}
    for key in sorted(set(want) | set(measured)):
        got, w = measured.get(key), want.get(key)
        if isinstance(w, float) and isinstance(got, float):
            if abs(got - w) > 1e-12:
                failures.append(f"{path}: {key} is {got}, recomputed {w}")
        elif got != w:
            failures.append(f"{path}: {key} is {got!r}, recomputed {w!r}")
    columns = {str(g.value(c, CSVW.name)) for c in g.subjects(RDF.type, CSVW.Column)}
    equal("variables", columns, set(expected["columns"]))
    return len(measured)


def violations(g, shapes):
    """The pySHACL violations of graph `g`, as short texts."""
    conforms, report, _ = validate(g, shacl_graph=shapes, inference="none", advanced=True)
    sh = rdflib.Namespace("http://www.w3.org/ns/shacl#")
    found = [f"{report.value(r, sh.resultPath)}: {report.value(r, sh.resultMessage)}"
             for r in report.subjects(RDF.type, sh.ValidationResult)
             if report.value(r, sh.resultSeverity) == sh.Violation]
    return [] if conforms else found or ["does not conform"]


def check_shapes(path, shapes, failures):
    """0 violations; and each way the issue found descriptions broken is refused."""
    g = rdflib.Graph().parse(path, format="json-ld")
    for v in violations(g, shapes):
        failures.append(f"{path}: SHACL violation {v}")
    ds = next(g.subjects(RDF.type, DCAT.Dataset))

    def broken(change):
        b = rdflib.Graph()
        for t in g:
            b.add(t)
        change(b)
        return b

    def swap(b, old, new):
        for s_, o in list(b.subject_objects(old)):
            b.remove((s_, old, o))
            b.add((s_, new, o))

    controls = {
        "no dct:type": lambda b: b.remove((ds, DCTERMS.type, None)),
        "no hasStructuredData": lambda b: b.remove((ds, HEALTH.hasStructuredData, None)),
        "csvw:titles": lambda b: swap(b, CSVW.title, CSVW.titles),
        "access body without contact point":
            lambda b: b.remove((b.value(ds, HEALTH.hdab), CV.contactPoint, None)),
        "category outside the vocabulary": lambda b: (
            b.remove((ds, HEALTH.healthCategory, None)),
            b.add((ds, HEALTH.healthCategory, rdflib.URIRef("http://healthdataportal.eu/ns/health#EHR")))),
    }
    for name, change in controls.items():
        if not violations(broken(change), shapes):
            failures.append(f"{path}: the shapes accept a description with {name}")
    return len(controls)


def check_small(path, failures):
    """A description of fewer than SMALL persons: the catalogue entry, and no figure."""
    g = rdflib.Graph().parse(path, format="json-ld")
    ds = next(g.subjects(RDF.type, DCAT.Dataset))
    for p in [HEALTH.numberOfRecords, HEALTH.numberOfUniqueIndividuals, DCTERMS.temporal,
              HEALTH.minTypicalAge, HEALTH.maxTypicalAge, DQV.hasQualityMeasurement]:
        if g.value(ds, p) is not None:
            failures.append(f"{path}: a dataset of fewer than {SMALL} persons publishes {p}")
    if g.value(ds, DCTERMS.title) is None:
        failures.append(f"{path}: the catalogue entry itself is missing")


def main(repo, stays_path, patients_path, small_path=None):
    data = Path(repo) / "sample-data" / "hospital"
    stays = profile(
        data / "stays.csv",
        ["nir", "admission_date", "discharge_date", "main_diagnosis", "unit"],
        {"nir": "nir", "admission_date": "date", "discharge_date": "date", "main_diagnosis": "string", "unit": "string"},
        person="nir",
        temporal=("admission_date", "discharge_date"),
    )
    patients = profile(
        data / "patients.csv",
        ["nir", "sex", "birth_date", "postcode", "last_name", "first_name"],
        {"nir": "nir", "sex": "integer", "birth_date": "date", "postcode": "string", "last_name": "string",
         "first_name": "string"},
        person="nir",
        birth="birth_date",
        age_at=dt.date(2025, 1, 1),
    )
    failures = []
    n_stays = check(stays_path, stays, failures)
    n_patients = check(patients_path, patients, failures)
    if small_path:
        check_small(small_path, failures)
    g = rdflib.Graph().parse(stays_path, format="json-ld")
    codings = {str(o) for o in g.objects(None, HEALTH.hasCodingSystem)}
    if codings != {HDEU + "coding-system/ICD-10"}:
        failures.append(f"{stays_path}: coding systems {codings}, expected ICD-10 of Release 8")
    shapes = rdflib.Graph().parse(SHAPES, format="turtle")
    controls = sum(check_shapes(p, shapes, failures) for p in (stays_path, patients_path))
    if small_path:
        check_shapes(small_path, shapes, failures)
    for f in failures:
        print("FAIL", f, file=sys.stderr)
    print(json.dumps({
        "stays_measurements": n_stays,
        "patients_measurements": n_patients,
        "stays_records": stays["records"],
        "patients_persons": patients["persons"],
        "patients_ages": patients["ages"],
        "shacl_negative_controls": controls,
    }))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
