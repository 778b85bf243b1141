"""Validates permits against `ehds-prep permit-schema` with the jsonschema package.

Usage: check_permit_schema.py SCHEMA.json GOOD.toml... -- BAD.toml...
Every good permit must validate; every bad one must be rejected.
"""

import json
import sys
import tomllib

import jsonschema


def main():
    schema = json.load(open(sys.argv[1]))
    split = sys.argv.index("--")
    good, bad = sys.argv[2:split], sys.argv[split + 1:]
    validator = jsonschema.Draft202012Validator(schema)
    for path in good:
        errors = list(validator.iter_errors(tomllib.load(open(path, "rb"))))
        if errors:
            sys.exit(f"{path}: rejected by the schema: {errors[0].message}")
    for path in bad:
        if validator.is_valid(tomllib.load(open(path, "rb"))):
            sys.exit(f"{path}: accepted by the schema although the engine refuses it")
    print(f"{len(good)} permits valid, {len(bad)} rejected")


if __name__ == "__main__":
    main()
