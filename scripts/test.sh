#!/usr/bin/env bash
# Runs every test. Installs what the tests need on a fresh machine: pyarrow (the independent Parquet
# reader of the end-to-end checks), jsonschema (the independent check of `permit-schema`), rdflib,
# pyld and pyshacl (the JSON-LD and SHACL checks of `describe`), Playwright and Pillow with Debian's
# chromium (the browser test of the HTML reports; Playwright drives the system's chromium, it
# downloads no browser), and Python's venv (a test reads every delivery kind with pyarrow 14.0.2, and
# others encode and match CLKs with clkhash 0.18.3 and anonlink 0.15.3, each in a virtual
# environment of its own under the target folder), and PostgreSQL's server (a throwaway cluster,
# scripts/postgres.sh).
# The tests run in the release profile, the binary's, so polars is built once.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import pyarrow, jsonschema, rdflib, pyld, pyshacl, playwright, PIL' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        pyarrow jsonschema rdflib pyld pyshacl playwright pillow
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
install() {
    $sudo apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 ||
        { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends "$@" >/dev/null; }
}
[ -x /usr/bin/chromium ] || install chromium
python3 -c 'import ensurepip, venv' 2>/dev/null || install python3-venv
# A throwaway PostgreSQL server for the tests of PostgreSQL sources (stopped on exit).
source scripts/postgres.sh
cargo test --release "$@"
