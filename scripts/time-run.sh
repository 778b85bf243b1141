#!/usr/bin/env bash
# Times a whole run against the floor: polars alone reading the same CSV (all columns as text) and
# writing it as zstd Parquet. Generates the hospital extracts for PEOPLE people (5,700,000 gives about
# 10M stays), runs a stays-only copy of configs/hospital.toml, prints wall time, CPU time and peak
# memory of each. Python polars is installed into a throwaway virtual environment under WORK.
#
# Usage: scripts/time-run.sh [PEOPLE] [WORK]      (defaults: 5700000, /tmp/ehds-prep-timing)
set -euo pipefail
cd "$(dirname "$0")/.."
people=${1:-5700000}
work=${2:-/tmp/ehds-prep-timing}
repo=$(pwd)
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/ehds-prep"
mkdir -p "$work/configs"
if [ ! -f "$work/sample-data/hospital/stays.csv" ] || [ "$(cat "$work/people" 2>/dev/null)" != "$people" ]; then
    rm -rf "$work/sample-data"
    "$bin" generate --out "$work/sample-data" --people "$people" --seed 7
    echo "$people" > "$work/people"
fi
cp sample-data/DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex "$work/sample-data/"
python3 - "$repo/configs/hospital.toml" "$work/configs/stays.toml" <<'PY'
import sys
text = open(sys.argv[1]).read()
start = text.index('[[datasets]]\nname = "patients"')
end = text.index('[[datasets]]\nname = "stays"')
open(sys.argv[2], "w").write(text[:start] + text[end:])
PY
if [ ! -x "$work/venv/bin/python" ]; then
    python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install --quiet --disable-pip-version-check polars
fi
cat > "$work/floor.py" <<'PY'
import sys, polars as pl
pl.read_csv(sys.argv[1], infer_schema_length=0).write_parquet(sys.argv[2], compression="zstd")
PY
source scripts/measure.sh
rows=$(($(wc -l < "$work/sample-data/hospital/stays.csv") - 1))
echo "stays.csv: $rows rows, $(du -m "$work/sample-data/hospital/stays.csv" | cut -f1) MB"
for round in 1 2 3; do
    measure "ehds-prep run (round $round)" "$bin" run --permit "$work/configs/stays.toml"
    measure "polars read+write (round $round)" "$work/venv/bin/python" "$work/floor.py" "$work/sample-data/hospital/stays.csv" "$work/floor.parquet"
done
