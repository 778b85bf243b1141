#!/usr/bin/env bash
# Runs every test. Installs what the tests need on a fresh machine: pyarrow (the independent Parquet
# reader of the end-to-end checks) and jsonschema (the independent check of `permit-schema`).
# The tests run in the release profile, the binary's, so polars is built once.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import pyarrow, jsonschema' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore pyarrow jsonschema
fi
cargo test --release "$@"
