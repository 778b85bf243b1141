"""The job of the performance comparison, as a data engineer would write it in Python polars.

Read the hospital extract (CSV), pseudonymise the NIR with HMAC-SHA-256, generalise the birth date to
its year and the postcode to its first 2 digits, drop the rows of classes (birth year, department)
holding fewer than 5 persons, and write Parquet with zstd.

Usage: pipeline.py MODE INPUT.csv OUTPUT.parquet KEY_HEX_FILE
  typical  HMAC in Python through map_elements(hmac.new(...)), eager API
  plugin   HMAC in Rust through the polars-hash plugin, lazy API
  floor    polars alone: read the CSV and write it as zstd Parquet (no transformation)

`typical` uses the key bytes as given and the engine's normalisation (spaces removed, upper case) and
truncation (128 bits, hex), so its pseudonyms must equal the engine's under the same domain key.
polars-hash takes its key as text: `plugin` keys its HMAC with the hex text of the key, so its
pseudonyms differ while the persons they count, and hence the rows kept, must not.
"""

import hashlib
import hmac
import sys

import polars as pl

DROPPED = ["patient_id", "nir", "birth_date", "postcode"]
CLASS = ["birth_year", "department"]


def generalised(frame):
    return frame.with_columns(
        pl.col("birth_date").cast(pl.String).str.slice(0, 4).alias("birth_year"),
        pl.col("postcode").cast(pl.String).str.slice(0, 2).alias("department"),
    )


def typical(source, target, key):
    df = pl.read_csv(source, schema_overrides={"postcode": pl.String, "nir": pl.String})
    df = df.with_columns(
        pl.col("nir")
        .str.replace_all(" ", "")
        .str.to_uppercase()
        .map_elements(
            lambda v: hmac.new(key, v.encode(), hashlib.sha256).hexdigest()[:32],
            return_dtype=pl.String,
        )
        .alias("person_pseudonym")
    )
    df = generalised(df).drop(DROPPED)
    df = df.filter(pl.col("person_pseudonym").n_unique().over(CLASS) >= 5)
    df.write_parquet(target, compression="zstd")


def plugin(source, target, key):
    import polars_hash as plh

    lf = pl.scan_csv(source, schema_overrides={"postcode": pl.String, "nir": pl.String})
    lf = lf.with_columns(
        plh.col("nir")
        .str.replace_all(" ", "")
        .str.to_uppercase()
        .chash.hmac_sha256(key=key.hex())
        .str.slice(0, 32)
        .alias("person_pseudonym")
    )
    lf = generalised(lf).drop(DROPPED)
    lf = lf.filter(pl.col("person_pseudonym").n_unique().over(CLASS) >= 5)
    lf.collect().write_parquet(target, compression="zstd")


def floor(source, target, _key):
    pl.read_csv(source).write_parquet(target, compression="zstd")


if __name__ == "__main__":
    mode, source, target, key_file = sys.argv[1:]
    key = bytes.fromhex(open(key_file).read().strip())
    {"typical": typical, "plugin": plugin, "floor": floor}[mode](source, target, key)
