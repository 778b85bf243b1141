#!/usr/bin/env bash
# Times privacy per person over a profile drawn from three tables: the OMOP extract of PEOPLE
# persons (`generate-omop`; 4,000,000 gives about 10M visits and 10M conditions), through a copy of
# configs/omop.toml whose person profile also says whether each person has a diabetes code (drawn
# from condition_occurrence, its codes then not delivered). Each event table is read once for the
# profile and once for its delivery; memory is bounded by persons, not rows. Prints wall time, CPU
# time and peak memory, and the rows of each table.
#
# Usage: scripts/time-profile.sh [PEOPLE] [WORK]      (defaults: 4000000, /tmp/ehds-prep-profile)
set -euo pipefail
cd "$(dirname "$0")/.."
people=${1:-4000000}
work=${2:-/tmp/ehds-prep-profile}
cargo build --release --quiet
bin="$(pwd)/${CARGO_TARGET_DIR:-target}/release/ehds-prep"
mkdir -p "$work/configs" "$work/sample-data"
if [ ! -f "$work/sample-data/omop/person.csv" ] || [ "$(cat "$work/people" 2>/dev/null)" != "$people" ]; then
    rm -rf "$work/sample-data/omop"
    "$bin" generate-omop --out "$work/sample-data/omop" --people "$people" --seed 7
    echo "$people" > "$work/people"
fi
cp sample-data/DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex "$work/sample-data/"
python3 - configs/omop.toml "$work/configs/omop.toml" <<'PY'
import sys
text = open(sys.argv[1]).read()
diabetes = '''
[[datasets.columns]]
name = "diabetes"
type = "boolean"
profile = { dataset = "condition_occurrence", column = "condition_source_value", aggregate = "has", prefixes = ["E10", "E11"] }
action = "generalise"
levels = ["*"]

[datasets.privacy]'''
text = text.replace("\n[datasets.privacy]", diabetes, 1)
text = text.replace('coding = "ICD-10"\naction = "keep"', 'coding = "ICD-10"\naction = "drop"')
open(sys.argv[2], "w").write(text)
PY
source scripts/measure.sh
for table in person visit_occurrence condition_occurrence observation_period; do
    echo "$table.csv: $(($(wc -l < "$work/sample-data/omop/$table.csv") - 1)) rows"
done
rm -rf "$work/out"
measure "profile over 3 tables" "$bin" -q run --permit "$work/configs/omop.toml"
grep -o '"anonymised[^}]*' "$work/out/omop/report.json" | head -1 || true
