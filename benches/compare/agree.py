"""Checks that the comparison's outputs agree with ehds-prep's delivery.

Usage: agree.py EHDS.parquet TYPICAL.parquet PLUGIN.parquet [BEST.parquet]
Same stays kept by all; the typical script's pseudonyms equal the engine's, stay by stay; the plugin's
and the best pipeline's (keyed like the plugin's) map one-to-one onto the engine's; same generalised values.
Prints a JSON summary; exits 1 on any difference.
"""

import json
import sys

import polars as pl


def load(path):
    df = pl.read_parquet(path).select(
        pl.col("stay_id").cast(pl.String),
        pl.col("person_pseudonym").cast(pl.String),
        pl.col("birth_year").cast(pl.String),
        pl.col("department").cast(pl.String),
    )
    return df.sort("stay_id")


def main(ehds_path, typical_path, plugin_path, best_path=None):
    ehds, typical = load(ehds_path), load(typical_path)
    keyed_apart = [("plugin", load(plugin_path))]
    if best_path:
        keyed_apart.append(("best", load(best_path)))
    failures = []
    for name, other in [("typical", typical)] + keyed_apart:
        if ehds["stay_id"].to_list() != other["stay_id"].to_list():
            failures.append(f"{name} keeps other stays ({other.height} rows, ehds-prep {ehds.height})")
            continue
        for column in ["birth_year", "department"]:
            if not ehds[column].equals(other[column]):
                failures.append(f"{name}: {column} differs")
    if not failures:
        if not ehds["person_pseudonym"].equals(typical["person_pseudonym"]):
            failures.append("typical: pseudonyms differ from ehds-prep's")
        for name, other in keyed_apart:
            pairs = pl.DataFrame({"a": ehds["person_pseudonym"], "b": other["person_pseudonym"]}).unique()
            if pairs.height != ehds["person_pseudonym"].n_unique() or pairs["b"].n_unique() != pairs.height:
                failures.append(f"{name}: pseudonyms are not one-to-one with ehds-prep's")
    for f in failures:
        print("DIFFERENT", f, file=sys.stderr)
    print(json.dumps({"rows_kept": ehds.height, "persons": ehds["person_pseudonym"].n_unique(), "agree": not failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
