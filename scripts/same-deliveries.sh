#!/usr/bin/env bash
# Shows that two builds of ehds-prep generate and deliver the same bytes: runs both binaries on the sample permits
# (the four holders, the anonymised research extract and the access body's linked delivery), on a
# generated 1M-row wide hospital extract under the anonymised comparison permit, and on generated
# extracts of 20,000 people under the record-level hospital permit, and on ARX's adult of quasi-identifiers
# alone (when ../shared holds it), then compares the SHA-256 of
# every data file, manifest and linkage report. Reports hold timings and are not compared; a
# manifest is compared without the paths and modification times of its inputs.
#
# With ROUNDS=N (and ROWS for the wide extract, default 1,000,000) it then times the wide
# anonymised run of both builds, alternating, N rounds, and prints the medians (wall s, CPU s, peak MB).
#
# Usage: [ROWS=R ROUNDS=N] scripts/same-deliveries.sh OLD_BINARY NEW_BINARY [WORK]
#        (exit 1 if any file differs)
# A binary of another commit: git worktree add /tmp/old REV && (cd /tmp/old && cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1
new=$2
work=${3:-/tmp/ehds-prep-same}
repo=$(pwd)
rm -rf "$work"
mkdir -p "$work/data"
"$new" generate --out "$work/data/generated" --people 20000 > /dev/null
# The generators of both builds write the same extracts (the tests' data depend on them).
"$old" generate --out "$work/data/generated-by-old" --people 20000 > /dev/null
diff -r -q "$work/data/generated" "$work/data/generated-by-old" \
    || { echo "the generated extracts differ" >&2; exit 1; }
"$new" generate-extract --out "$work/data/wide.csv" --rows "${ROWS:-1000000}" --seed 7 > /dev/null

# A permit of configs/ reading the sample data, in $work/<which>/configs: its outputs go to
# $work/<which>/out, and its text (whose SHA-256 every delivery records) is the same for both builds.
permit() {
    local config=$1 which=$2
    sed -e "s#\"../sample-data/#\"$repo/sample-data/#g" "configs/$config.toml" \
        > "$work/$which/configs/$config.toml"
}

wide_permit() {
    local which=$1
    cat > "$work/$which/configs/wide.toml" <<TOML
[permit]
id = "FR-2029-0999"
purpose = "same deliveries"
holder = "CHU Exemple"
recipient = "Health Data Hub"

[output]
dir = "../out/wide"

[keys.linkage]
file = "$repo/sample-data/DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex"
allow_readable_by_others = true

[domains.linkage]
key = "linkage"

[[datasets]]
name = "stays"
person = "nir"

[datasets.source]
format = "csv"
files = ["$work/data/wide.csv"]

[[datasets.columns]]
name = "nir"
type = "string"
identifier = "nir"
action = "pseudonymise"
domain = "linkage"
on_invalid = "reject-row"
on_missing = "reject-row"

[[datasets.columns]]
name = "birth_date"
type = "date"
action = "generalise"
levels = ["year"]
level = 1

[[datasets.columns]]
name = "postcode"
type = "string"
action = "generalise"
levels = ["departement"]
level = 1

[[datasets.columns]]
name = "admission_date"
type = "date"
action = "keep"

[datasets.privacy]
k = 5
suppression_limit = 1
TOML
}

# ARX's adult (when ../shared holds it), every column a quasi-identifier: delivered from its
# classes; $2 is the privacy section's last line (how suppressed rows are delivered).
adult="$repo/../shared/data/adult"
adult_permit() {
    local which=$1 name=$2 suppressed=$3
    {
        printf '[permit]\nid = "adult"\npurpose = "same deliveries"\nholder = "UCI"\nrecipient = "bench"\n\n'
        printf '[output]\ndir = "../out/%s"\n\n[[datasets]]\nname = "adult"\n\n' "$name"
        printf '[datasets.source]\nformat = "csv"\nfiles = ["%s"]\ndelimiter = ";"\n\n' "$adult/adult.csv"
        for c in sex age race marital-status education native-country workclass occupation salary-class; do
            printf '[[datasets.columns]]\nname = "%s"\ntype = "string"\naction = "generalise"\nhierarchy = "%s"\n\n' \
                "$c" "$adult/adult_hierarchy_$c.csv"
        done
        printf '[datasets.privacy]\nk = 5\nsuppression_limit = 0.04\nmetric = "entropy"\n%s\n' "$suppressed"
    } > "$work/$which/configs/$name.toml"
}

for which in old new; do
    bin=${!which}
    mkdir -p "$work/$which/configs"
    cp configs/clk-schema.json "$work/$which/configs/"
    for config in hospital insurer registry cohort research linkage; do
        permit "$config" "$which"
    done
    for config in hospital insurer registry cohort research; do
        "$bin" -q run --permit "$work/$which/configs/$config.toml"
    done
    "$bin" -q link --permit "$work/$which/configs/linkage.toml"
    # The generated extracts under the hospital permit.
    sed -e "s#\"../out/hospital\"#\"../out/generated\"#" \
        -e "s#\"$repo/sample-data/hospital/#\"$work/data/generated/hospital/#g" \
        -e "s#\"$repo/sample-data/opt_out.txt\"#\"$work/data/generated/opt_out.txt\"#" \
        "$work/$which/configs/hospital.toml" > "$work/$which/configs/generated.toml"
    "$bin" -q run --permit "$work/$which/configs/generated.toml"
    wide_permit "$which"
    "$bin" -q run --permit "$work/$which/configs/wide.toml"
    if [ -f "$adult/adult.csv" ]; then
        adult_permit "$which" adult ""
        adult_permit "$which" adult-blanked 'suppressed = "blank"'
        "$bin" -q run --permit "$work/$which/configs/adult.toml"
        "$bin" -q run --permit "$work/$which/configs/adult-blanked.toml"
    fi
done

# A file's fingerprint: its SHA-256; for a manifest, of its text without the places and times of
# its inputs (the linked delivery's inputs are each build's own holder deliveries: other files, the
# same bytes, whose SHA-256 stays compared); for a linkage report, without the SHA-256 of those
# holders' manifests (which hold those places and times; the manifests are compared themselves).
fingerprint() {
    case $1 in
        *manifest.json) python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
for i in m.get("inputs", []):
    i.pop("path", None)
    i.pop("modified", None)
print(json.dumps(m, sort_keys=True))' "$1" | sha256sum ;;
        *linkage.json) python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
for s in m.get("sources", []):
    s.pop("manifest_sha256", None)
print(json.dumps(m, sort_keys=True))' "$1" | sha256sum ;;
        *) sha256sum < "$1" ;;
    esac
}

differ=0
compared=0
while IFS= read -r file; do
    relative=${file#"$work/old/"}
    other="$work/new/$relative"
    compared=$((compared + 1))
    if [ ! -f "$other" ] || [ "$(fingerprint "$file")" != "$(fingerprint "$other")" ]; then
        echo "differs: $relative"
        differ=1
    fi
done < <(find "$work/old/out" \( -name '*.parquet' -o -name manifest.json -o -name linkage.json \) | sort)
extra=$(find "$work/new/out" \( -name '*.parquet' -o -name manifest.json -o -name linkage.json \) | wc -l)
if [ "$extra" -ne "$compared" ]; then
    echo "the new build wrote $extra such files, the old $compared"
    differ=1
fi
[ "$differ" -eq 0 ] && echo "same bytes: $compared data files, manifests and linkage reports"
[ "$differ" -ne 0 ] && exit 1

rounds=${ROUNDS:-0}
if [ "$rounds" -gt 0 ]; then
    for _ in $(seq "$rounds"); do
        for which in old new; do
            rm -rf "$work/$which/out/wide"
            /usr/bin/time -f "%e %U %S %M" -a -o "$work/$which/times" \
                "${!which}" -q run --permit "$work/$which/configs/wide.toml"
        done
    done
    for which in old new; do
        python3 - "$which" "$work/$which/times" <<'PY'
import statistics, sys
runs = [list(map(float, l.split())) for l in open(sys.argv[2]) if l.strip()]
wall = statistics.median(r[0] for r in runs)
cpu = statistics.median(r[1] + r[2] for r in runs)
peak = statistics.median(r[3] for r in runs) / 1024
print(f"{sys.argv[1]}: wall {wall:.2f} s, CPU {cpu:.2f} s, peak {peak:.0f} MB (medians of {len(runs)})")
PY
    done
fi
