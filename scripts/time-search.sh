#!/usr/bin/env bash
# Times the privacy search on ARX's `adult` benchmark and on perturbed scale-ups of it, as ARX 3.9.2 was
# timed on this machine (k = 5, 4 % suppression, non-uniform entropy, 9 quasi-identifiers, ARX's
# hierarchy files): prints rows, the search's own time, the whole run's wall and CPU time, peak memory,
# and the transformation chosen. ARX's figures, for comparison: 30k rows in ~2.6 s of search (5 s wall),
# 1M rows in 25 s wall and 1.7 GB, 5M rows in 48 s wall and 2.3 GB.
#
# Usage: scripts/time-search.sh [ADULT_DIR] [WORK]   (defaults: ../shared/data/adult, /tmp/ehds-prep-search)
set -euo pipefail
cd "$(dirname "$0")/.."
adult=$(cd "${1:-../shared/data/adult}" && pwd)
work=${2:-/tmp/ehds-prep-search}
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
cargo build --release --quiet
bin="$(pwd)/${CARGO_TARGET_DIR:-target}/release/ehds-prep"
mkdir -p "$work"
for rows in 1000000 5000000; do
    [ -f "$work/adult-$rows.csv" ] ||
        "$bin" scale-up --input "$adult/adult.csv" --out "$work/adult-$rows.csv" --rows "$rows" --seed "$rows" > /dev/null
done
permit() { # $1 data file, $2 permit path
    {
        printf '[permit]\nid = "adult"\npurpose = "timing"\nholder = "UCI"\nrecipient = "bench"\n\n'
        printf '[output]\ndir = "%s"\n\n[[datasets]]\nname = "adult"\n\n' "$work/out"
        printf '[datasets.source]\nformat = "csv"\nfiles = ["%s"]\ndelimiter = ";"\n\n' "$1"
        for c in sex age race marital-status education native-country workclass occupation salary-class; do
            printf '[[datasets.columns]]\nname = "%s"\ntype = "string"\naction = "generalise"\nhierarchy = "%s"\n\n' \
                "$c" "$adult/adult_hierarchy_$c.csv"
        done
        printf '[datasets.privacy]\nk = 5\nsuppression_limit = 0.04\nmetric = "entropy"\n'
    } > "$2"
}
printf '%-10s %9s %9s %8s %8s %9s  %s\n' rows profile_s search_s wall_s cpu_s peak_MB levels
for data in "$adult/adult.csv" "$work/adult-1000000.csv" "$work/adult-5000000.csv"; do
    permit "$data" "$work/permit.toml"
    /usr/bin/time -f "%e %U %S %M" -o "$work/time.txt" "$bin" run --quiet --permit "$work/permit.toml"
    read -r wall user sys kb < "$work/time.txt"
    python3 - "$work/out/report.json" "$wall" "$user" "$sys" "$kb" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["datasets"][0]
a = r["anonymisation"]
wall, user, sys_, kb = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
levels = [q["level"] for q in a["quasi_identifiers"]]
print(f'{r["rows_read"]:<10} {a["profile_ms"] / 1000:9.3f} {a["search_ms"] / 1000:9.3f} {wall:8.2f} {user + sys_:8.2f} {kb / 1024:9.0f}  '
      f'{levels} suppressed {a["rows_suppressed"]}, {a["transformations_evaluated"]} evaluated')
PY
done
