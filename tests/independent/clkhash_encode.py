"""Encodes records with Data61's clkhash, the reference the CLK kernel must equal bit for bit.

Usage: clkhash_encode.py SCHEMA.json SECRET_FILE RECORDS.csv
RECORDS.csv has no header: one value per feature of the schema, in its order. Prints one CLK per
record, base64 as clkhash serialises it.
"""

import csv
import sys

from clkhash import clk, schema
from clkhash.serialization import serialize_bitarray


def main(schema_path, secret_path, records_path):
    with open(schema_path) as f:
        linkage = schema.from_json_file(f)
    secret = open(secret_path, "rb").read()
    rows = list(csv.reader(open(records_path, encoding="utf-8", newline="")))
    for c in clk.generate_clks(rows, linkage, secret, validate=True, max_workers=1):
        print(serialize_bitarray(c))


if __name__ == "__main__":
    main(*sys.argv[1:])
