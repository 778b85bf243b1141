#!/usr/bin/env bash
# Side-by-side comparison of ehds-prep with what a data engineer would write instead (Python polars,
# benches/compare/pipeline.py): the same job on the same generated hospital extract, ROUNDS rounds,
# the tools alternating within each round. Prints, per tool, the median wall time, CPU time and peak
# memory, and the ratios to ehds-prep; then checks that the outputs agree (benches/compare/agree.py).
#
# The job: read the 12-column extract (CSV), HMAC-SHA-256 the NIR, birth date to year, postcode to
# 2 digits, drop the classes (birth year, department) of fewer than 5 persons, write zstd Parquet.
#
# The baselines: `python-best`, the strongest Python pipeline known (../shared/benchmarks/best_polars.py:
# lazy scan with an explicit schema, polars-hash HMAC, group-by + semi-join, streaming sink; the baseline
# to beat, run when that file is present), then benches/compare/pipeline.py's `plugin` (the same job
# written plainly), `typical` (HMAC in a Python UDF) and `floor` (read all 12 columns, write them: no work).
#
# Usage: scripts/compare.sh [ROWS] [ROUNDS] [WORK]   (defaults: 10000000, 3, /tmp/ehds-prep-compare)
# Python polars and polars-hash go into a throwaway virtual environment under WORK; GNU time measures.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-10000000}
rounds=${2:-3}
work=${3:-/tmp/ehds-prep-compare}
repo=$(pwd)
cargo build --release --quiet
bin="$repo/${CARGO_TARGET_DIR:-target}/release/ehds-prep"
best="$repo/../shared/benchmarks/best_polars.py"
[ -f "$best" ] || { echo "no $best: the python-best baseline is skipped" >&2; best=""; }
mkdir -p "$work"
extract="$work/extract-$rows.csv"
if [ ! -f "$extract" ]; then
    "$bin" generate-extract --out "$extract.part" --rows "$rows" --seed 7
    mv "$extract.part" "$extract"
fi
if [ ! -x "$work/venv/bin/python" ]; then
    python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install --quiet --disable-pip-version-check polars polars-hash
fi
py="$work/venv/bin/python"
key="$repo/sample-data/DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex"
context="FR-2029-0999/linkage"
# The domain key the engine derives (HKDF-SHA-256, README "Pseudonyms, precisely"), for the Python HMAC.
"$py" - "$key" "$context" "$work/domain-key.hex" <<'PY'
import hashlib, hmac, os, sys
ikm = bytes.fromhex(open(sys.argv[1]).read().strip())
prk = hmac.new(b"\0" * 32, ikm, hashlib.sha256).digest()
okm = hmac.new(prk, b"ehds-prep pseudonymisation domain v1\0" + sys.argv[2].encode() + b"\x01", hashlib.sha256).digest()
fd = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, okm.hex().encode())
PY
cat > "$work/permit.toml" <<TOML
[permit]
id = "FR-2029-0999"
purpose = "Performance comparison"
holder = "CHU Exemple"
recipient = "Health Data Hub"

[output]
dir = "$work/out/ehds-prep"

[keys.linkage]
file = "$key"
allow_readable_by_others = true

[domains.linkage]
key = "linkage"
context = "$context"

[pseudonyms]
version = "v1"
encoding = "hex"
bits = 128

[[datasets]]
name = "stays"
person = "nir"

[datasets.source]
format = "csv"
files = ["$extract"]

[[datasets.columns]]
name = "stay_id"
type = "string"
action = "keep"

[[datasets.columns]]
name = "patient_id"
type = "string"
action = "drop"

[[datasets.columns]]
name = "nir"
type = "string"
identifier = "any"
action = "pseudonymise"
domain = "linkage"
rename = "person_pseudonym"

[[datasets.columns]]
name = "sex"
type = "integer"
action = "keep"

[[datasets.columns]]
name = "birth_date"
type = "date"
action = "generalise"
levels = ["year"]
level = 1
rename = "birth_year"

[[datasets.columns]]
name = "postcode"
type = "string"
action = "generalise"
levels = ["prefix 2"]
level = 1
rename = "department"

[[datasets.columns]]
name = "admission_date"
type = "date"
action = "keep"

[[datasets.columns]]
name = "discharge_date"
type = "date"
action = "keep"

[[datasets.columns]]
name = "main_diagnosis"
type = "string"
action = "keep"

[[datasets.columns]]
name = "secondary_diagnosis"
type = "string"
action = "keep"

[[datasets.columns]]
name = "unit"
type = "string"
action = "keep"

[[datasets.columns]]
name = "cost"
type = "float"
action = "keep"

[datasets.privacy]
k = 5
suppression_limit = 1.0
suppressed = "remove"
TOML
mkdir -p "$work/out"
results="$work/results.txt"
: > "$results"
source scripts/measure.sh
echo "extract: $rows rows, $(du -m "$extract" | cut -f1) MB; $rounds rounds"
for round in $(seq "$rounds"); do
    echo "round $round"
    measure ehds-prep "$bin" -q run --permit "$work/permit.toml"
    if [ -n "$best" ]; then
        measure python-best "$py" "$best" "$extract" "$work/out/best.parquet" "$work/domain-key.hex"
    fi
    measure python-plugin "$py" benches/compare/pipeline.py plugin "$extract" "$work/out/plugin.parquet" "$work/domain-key.hex"
    measure python-typical "$py" benches/compare/pipeline.py typical "$extract" "$work/out/typical.parquet" "$work/domain-key.hex"
    measure polars-io-floor "$py" benches/compare/pipeline.py floor "$extract" "$work/out/floor.parquet" "$work/domain-key.hex"
done
echo "medians over $rounds rounds (ratio = tool / ehds-prep; above 1, ehds-prep is faster or smaller):"
"$py" - "$results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, wall, cpu, peak = line.split()
    runs.setdefault(label, []).append((float(wall), float(cpu), int(peak)))
med = {k: [statistics.median(x[i] for x in v) for i in range(3)] for k, v in runs.items()}
e = med["ehds-prep"]
print(f"  {'tool':<18}{'wall s':>9}{'cpu s':>9}{'peak MB':>9}{'wall ×':>9}{'peak ×':>9}")
for k, (w, c, p) in med.items():
    print(f"  {k:<18}{w:>9.2f}{c:>9.2f}{p:>9d}{w / e[0]:>9.2f}{p / e[2]:>9.2f}")
PY
"$py" benches/compare/agree.py "$work/out/ehds-prep/stays.parquet" "$work/out/typical.parquet" "$work/out/plugin.parquet" \
    ${best:+"$work/out/best.parquet"}
