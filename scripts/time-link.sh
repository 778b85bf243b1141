#!/usr/bin/env bash
# Times `ehds-prep link` at scale: generates the three sample holders for PEOPLE people (3,600,000
# gives about 10M pharmacy claims, 6.3M stays + 2.5M patients at the hospital and 0.43M registry
# cases), delivers each holder with the shared linkage key (no cohort filter, so every row is
# linked), then links the three deliveries into a person table (k = 5 over sex and birth year) and the
# re-pseudonymised event tables. Prints wall time, CPU time and peak memory of each step.
#
# Usage: scripts/time-link.sh [PEOPLE] [WORK]      (defaults: 3600000, /tmp/ehds-prep-link-timing)
set -euo pipefail
cd "$(dirname "$0")/.."
people=${1:-3600000}
work=${2:-/tmp/ehds-prep-link-timing}
cargo build --release --quiet
bin="$(pwd)/${CARGO_TARGET_DIR:-target}/release/ehds-prep"
mkdir -p "$work"
if [ ! -f "$work/data/truth.csv" ] || [ "$(cat "$work/people" 2>/dev/null)" != "$people" ]; then
    rm -rf "$work/data"
    "$bin" generate --out "$work/data" --people "$people" --seed 7
    echo "$people" > "$work/people"
fi
cp sample-data/DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex sample-data/DEMO-ACCESS-BODY-KEY-DO-NOT-USE-FOR-REAL-DATA.hex "$work/"
holder() { # name dataset source-lines extra-columns
    cat > "$work/$1.toml" <<TOML
[permit]
id = "FR-2029-0042"
purpose = "timing"
holder = "$1"
recipient = "access body"
[output]
dir = "out/$1"
[keys.linkage]
file = "DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex"
allow_readable_by_others = true
[domains.linkage]
key = "linkage"
context = "FR-2029-0042/linkage"
$2
TOML
}
nir='[[datasets.columns]]
name = "nir"
type = "string"
identifier = "nir"
action = "pseudonymise"
domain = "linkage"
rename = "person_pseudonym"
on_invalid = "reject-row"
on_missing = "reject-row"'
sex_birth_year='[[datasets.columns]]
name = "sex"
type = "integer"
action = "keep"
[[datasets.columns]]
name = "birth_date"
type = "date"
action = "generalise"
rule = "year"
rename = "birth_year"'
holder hospital "[[datasets]]
name = \"patients\"
person = \"nir\"
[datasets.source]
format = \"csv\"
files = [\"data/hospital/patients.csv\"]
$nir
$sex_birth_year
[[datasets]]
name = \"stays\"
person = \"nir\"
[datasets.source]
format = \"csv\"
files = [\"data/hospital/stays.csv\"]
$nir
[[datasets.columns]]
name = \"admission_date\"
type = \"date\"
action = \"generalise\"
rule = \"month\"
rename = \"admission_month\"
[[datasets.columns]]
name = \"main_diagnosis\"
type = \"string\"
action = \"keep\""
holder insurer "[[datasets]]
name = \"pharmacy_claims\"
person = \"nir\"
[datasets.source]
format = \"csv\"
files = [\"data/insurer/pharmacy_claims.csv\"]
delimiter = \";\"
encoding = \"latin-1\"
$nir
[[datasets.columns]]
name = \"date_delivrance\"
type = \"date\"
format = \"%d/%m/%Y\"
action = \"generalise\"
rule = \"month\"
rename = \"dispensing_month\"
[[datasets.columns]]
name = \"code_atc\"
type = \"string\"
action = \"keep\"
rename = \"atc\""
holder registry "[[datasets]]
name = \"cancer_cases\"
person = \"nir\"
[datasets.source]
format = \"csv\"
files = [\"data/registry/cancer_cases.csv\"]
$nir
$sex_birth_year
[[datasets.columns]]
name = \"icd10\"
type = \"string\"
action = \"keep\""
# The linking permit: configs/linkage.toml without the département and without the cohort (its
# CLK linkage is timed by scripts/compare-clk.sh), pointing at these deliveries.
python3 - configs/linkage.toml "$work/linkage.toml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
text = re.sub(r'# The CLKs the cohort[^\n]*\nclk = "patients.clk"\n', "", text)
text = re.sub(r'# The cohort holds no NIR[^\n]*\n\[\[linkage.sources\]\]\n(?:[^\n]+\n)+\n', "", text)
text = re.sub(r'# 0.92: [^\n]*\n\[linkage.clk\]\n(?:[^\n]+\n)+\n', "", text)
text = re.sub(r'\[\[datasets.columns\]\]\nname = "in_cohort"\n(?:[^\n]+\n)+\n', "", text)
text = text[: text.index("# The cohort's participants")]
for gone in ("link_on", "[linkage.clk]", "clk = ", "in_cohort", "participants.parquet"):
    assert gone not in text, gone
text = text.replace("../out/", "out/").replace("../sample-data/", "")
text = re.sub(r'\[\[linkage.attributes\]\]\nname = "department"\n[^\n]*\n\n', "", text)
text = re.sub(r'\[\[datasets.columns\]\]\nname = "department"\n(?:[^\n]+\n)+\n', "", text)
text = text.replace('name = "diagnosis_year"\ntype = "integer"', 'name = "birth_year"\ntype = "integer"')
text = text.replace('name = "icd10_category"', 'name = "icd10"')
open(sys.argv[2], "w").write(text)
PY
measure_out="$work/last.out"
source scripts/measure.sh
cd "$work"
for h in hospital insurer registry; do
    measure "deliver $h" "$bin" run --permit "$h.toml"
done
for f in out/hospital/patients out/hospital/stays out/insurer/pharmacy_claims out/registry/cancer_cases; do
    printf '%-36s %s rows\n' "$f" "$(python3 -c "import json,sys; m=json.load(open('$(dirname $f)/manifest.json')); print(next(d['rows'] for d in m['datasets'] if d['name']=='$(basename $f)'))")"
done
for round in 1 2; do
    measure "link (round $round)" "$bin" link --permit linkage.toml
done
head -n 1 last.out
grep -E "linking:|time:" last.out
