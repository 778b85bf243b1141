"""Independent check of the SNDS sample deliveries (configs/snds-*.toml), written from the permit
and the documented algorithms, sharing no code with the engine.

From the raw SNDS-shaped extract (Latin-1, `;`), its ground truth (truth.csv), the opt-out lists
and the demo key, with Python's csv, hmac and pyarrow, it recomputes every delivered row of the
insurer (beneficiaries, claims, dispensings) and the hospital (stays, stay details): pseudonyms
(HKDF-SHA-256 domain keys, HMAC-SHA-256; a composite person's parts length-prefixed), date
shifts (HMAC of "ehds-prep date shift v1\\0" + the BEN_NIR_PSA, first 8 bytes modulo the range
without 0), and requires the delivered rows to be exactly these, as multisets. It then checks:
no sentinel date was shifted (1600-01-01 is missing, never moved), partial dates agree with the
shifted date they belong to, no placeholder (`xxxxxxxxxxxxxxxxx`) became a person, twins are two
persons, each class of the beneficiaries holds at least 5 beneficiaries, and the linked delivery
keeps the holders' shifted dates. Prints the counts as JSON; exits non-zero on the first
difference.

Usage: check_snds_delivery.py REPO_ROOT OUT_ROOT  (OUT_ROOT holds snds-insurer/, snds-hospital/,
and snds-linked/ when the access body has linked them)
"""

import collections
import csv
import datetime as dt
import hashlib
import hmac
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

import keys

PERMIT = "FR-2029-0113"
SENTINEL = "1600-01-01"
PLACEHOLDER = "xxxxxxxxxxxxxxxxx"
SHIFT_MIN, SHIFT_MAX = -90, 90
KEY9 = ["FLX_DIS_DTD", "FLX_TRT_DTD", "FLX_EMT_TYP", "FLX_EMT_NUM", "FLX_EMT_ORD",
        "ORG_CLE_NUM", "DCT_ORD_NUM", "PRS_ORD_NUM", "REM_TYP_AFF"]


def pseudonym(dkey, *parts):
    if len(parts) == 1:
        message = parts[0].encode()
    else:
        message = b"".join(len(p.encode()).to_bytes(4, "big") + p.encode() for p in parts)
    return hmac.new(dkey, message, hashlib.sha256).hexdigest()[:32]


def shift_days(skey, person):
    return keys.shift_days(skey, person, SHIFT_MIN, SHIFT_MAX)


def read_csv(path):
    with open(path, newline="", encoding="latin-1") as f:
        return list(csv.DictReader(f, delimiter=";"))


def opt_out_lines(path):
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = line.split("#")[0].strip()
        if entry:
            yield entry


def delivered(path):
    return pq.read_table(path).to_pydict()


def rows(table, columns):
    return sorted(zip(*(table[c] for c in columns)), key=repr)


def same(name, got, expected):
    if got != expected:
        g, e = collections.Counter(got), collections.Counter(expected)
        extra, missing = list((g - e).elements())[:3], list((e - g).elements())[:3]
        sys.exit(f"{name}: {len(got)} rows delivered, {len(expected)} expected; "
                 f"unexpected {extra}, missing {missing}")


def fail(message):
    sys.exit(message)


def main():
    repo, out = Path(sys.argv[1]), Path(sys.argv[2])
    data = repo / "sample-data" / "snds"
    key = bytes.fromhex((repo / "sample-data/DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex").read_text().strip())
    linkage, skey = (keys.domain_key(key, f"{PERMIT}/{d}") for d in ["linkage", "shift"])
    day = dt.timedelta(days=1)

    def moved(text, nir, fmt="%Y-%m-%d"):
        if text == SENTINEL or not text:
            return None
        return dt.datetime.strptime(text, fmt).date() + shift_days(skey, nir) * day

    counts = {}
    truth = read_csv_utf8(data / "truth.csv")
    twins = {r["BEN_NIR_PSA"] for r in truth if r["BEN_RNG_GEM"] == "2"}

    # ---- insurer
    refused = {tuple(e.split(";")) for e in opt_out_lines(data / "insurer/opt_out.txt")}
    refused = {(n.strip(), r.strip()) for n, r in refused}
    ben_raw = read_csv(data / "insurer/IR_BEN_R.csv")
    ben = delivered(out / "snds-insurer/beneficiaries.parquet")
    kept = [r for r in ben_raw if (r["BEN_NIR_PSA"], r["BEN_RNG_GEM"]) not in refused]
    by_pseudonym = {pseudonym(linkage, r["BEN_NIR_PSA"], r["BEN_RNG_GEM"]): r for r in kept}
    if len(by_pseudonym) != len(kept):
        fail("beneficiaries: two beneficiaries share a composite pseudonym")
    delivered_persons = set(ben["beneficiary"])
    if len(delivered_persons) != len(ben["beneficiary"]):
        fail("beneficiaries: a beneficiary is delivered twice")
    unknown = delivered_persons - set(by_pseudonym)
    if unknown:
        fail(f"beneficiaries: {len(unknown)} delivered persons are no kept beneficiary (opted out?)")
    expected = []
    for b in sorted(delivered_persons):
        r = by_pseudonym[b]
        expected.append((b, pseudonym(linkage, r["BEN_NIR_PSA"]), moved(r["BEN_DCD_DTE"], r["BEN_NIR_PSA"])))
    same("beneficiaries", rows(ben, ["beneficiary", "person_pseudonym", "death_date"]), sorted(expected, key=repr))
    classes = collections.Counter(zip(ben["BEN_SEX_COD"], ben["birth_year"], ben["BEN_RES_DPT"]))
    smallest = min(classes.values())
    if smallest < 5:
        fail(f"beneficiaries: a class holds {smallest} beneficiaries, below k = 5")
    suppressed = set(by_pseudonym) - delivered_persons
    twins_apart = sum(
        1 for n in twins
        if pseudonym(linkage, n, "1") in delivered_persons and pseudonym(linkage, n, "2") in delivered_persons)
    counts["beneficiaries"] = {
        "delivered": len(ben["beneficiary"]), "opted_out": len(ben_raw) - len(kept),
        "suppressed": len(suppressed), "smallest_class": smallest,
        "sentinels": sum(r["BEN_DCD_DTE"] == SENTINEL for r in kept), "twins_both_delivered": twins_apart,
    }

    claims_raw = read_csv(data / "insurer/ER_PRS_F.csv")
    person_of_key = {}
    expected, sentinels, opted = [], 0, 0
    for r in claims_raw:
        who = pseudonym(linkage, r["BEN_NIR_PSA"], r["BEN_RNG_GEM"])
        person_of_key[tuple(r[k] for k in KEY9)] = (r["BEN_NIR_PSA"], r["BEN_RNG_GEM"], who)
        if not ("2019-01-01" <= r["EXE_SOI_DTD"] <= "2024-12-31"):
            continue
        if (r["BEN_NIR_PSA"], r["BEN_RNG_GEM"]) in refused:
            opted += 1
            continue
        if who in suppressed:
            continue
        sentinels += r["EXE_SOI_DTF"] == SENTINEL
        nir = r["BEN_NIR_PSA"]
        expected.append((who, pseudonym(linkage, nir), moved(r["EXE_SOI_DTD"], nir), moved(r["EXE_SOI_DTF"], nir),
                         r["PRS_NAT_REF"], r["PSE_SPE_LIB"], float(r["PRS_PAI_MNT"].replace(",", "."))))
    claims = delivered(out / "snds-insurer/claims.parquet")
    columns = ["beneficiary", "person_pseudonym", "care_start", "care_end", "service", "specialty", "amount_eur"]
    same("claims", rows(claims, columns), sorted(expected, key=repr))
    counts["claims"] = {"delivered": len(expected), "opted_out": opted, "sentinels": sentinels}

    atc = dict(tuple(l.split(",")) for l in (data / "insurer/cip13_atc.csv").read_text().splitlines()[1:])
    expected, opted = [], 0
    for r in read_csv(data / "insurer/ER_PHA_F.csv"):
        found = person_of_key.get(tuple(r[k] for k in KEY9))
        code = atc[r["PHA_PRS_C13"]]
        if found is None or not code.startswith(("A10", "C09", "C10")):
            continue
        nir, rank, who = found
        if (nir, rank) in refused:
            opted += 1
            continue
        if who not in suppressed:
            expected.append((who, code, int(r["PHA_ACT_QSN"])))
    dispensings = delivered(out / "snds-insurer/dispensings.parquet")
    same("dispensings", rows(dispensings, ["beneficiary", "atc", "boxes"]), sorted(expected, key=repr))
    counts["dispensings"] = {"delivered": len(expected), "opted_out": opted}

    # ---- hospital
    refused_nirs = set(opt_out_lines(data / "hospital/opt_out.txt"))
    c_raw = read_csv(data / "hospital/T_MCOaaC.csv")
    person_of_stay, expected, placeholders, opted = {}, [], 0, 0
    for r in c_raw:
        chained = all(r[c] == "0" for c in ["NIR_RET", "NAI_RET", "SEX_RET"]) and r["NIR_ANO_17"] != PLACEHOLDER
        if not chained:
            placeholders += 1
            continue
        nir = r["NIR_ANO_17"]
        if nir in refused_nirs:
            opted += 1
            continue
        who = pseudonym(linkage, nir)
        person_of_stay[(r["ETA_NUM"], r["RSA_NUM"])] = who
        start, end = moved(r["EXE_SOI_DTD"], nir, "%d/%m/%Y"), moved(r["EXE_SOI_DTF"], nir, "%d/%m/%Y")
        expected.append((who, start, end, end.year, end.replace(day=1)))
    stays = delivered(out / "snds-hospital/stays.parquet")
    columns = ["person_pseudonym", "admission_date", "discharge_date", "discharge_year", "discharge_month"]
    same("stays", rows(stays, columns), sorted(expected, key=repr))
    for end, year, month in zip(stays["discharge_date"], stays["discharge_year"], stays["discharge_month"]):
        if (year, month) != (end.year, end.replace(day=1)):
            fail(f"stays: a partial date disagrees with its shifted date ({year}, {month}, {end})")
    if pseudonym(linkage, PLACEHOLDER) in set(stays["person_pseudonym"]):
        fail("stays: the placeholder was delivered as a person")
    counts["stays"] = {"delivered": len(expected), "placeholders": placeholders, "opted_out": opted}

    expected = []
    for r in read_csv(data / "hospital/T_MCOaaB.csv"):
        who = person_of_stay.get((r["ETA_NUM"], r["RSA_NUM"]))
        if who is not None:
            expected.append((who, r["DGN_PAL"][:3], r["GRG_GHM"], int(r["SEJ_NBJ"])))
    details = delivered(out / "snds-hospital/stay_details.parquet")
    columns = ["person_pseudonym", "main_diagnosis", "ghm", "length_of_stay"]
    same("stay_details", rows(details, columns), sorted(expected, key=repr))
    counts["stay_details"] = {"delivered": len(expected)}

    # ---- the access body's link keeps the holders' shifted dates
    linked = out / "snds-linked"
    if linked.exists():
        for table, holder, column in [("claims", "snds-insurer", "care_start"),
                                      ("stays", "snds-hospital", "admission_date")]:
            got = sorted(delivered(linked / f"{table}.parquet")[column], key=repr)
            if got != sorted(delivered(out / holder / f"{table}.parquet")[column], key=repr):
                fail(f"linked {table}: {column} differs from the holder's delivery")
        counts["linked"] = {"persons": len(delivered(linked / "persons.parquet")["person_pseudonym"])}
    print(json.dumps(counts))


def read_csv_utf8(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


if __name__ == "__main__":
    main()
