#!/usr/bin/env bash
# Fuzzes the parsers of untrusted input with cargo-fuzz (libFuzzer, nightly toolchain; both installed
# when missing): `permit` (permit text), `hierarchy` (ARX hierarchy files and level rules), `csv_run`
# (any bytes as an extract, through a whole run), `csv_differential` (the CSV reader against the
# `csv` crate: the same records, or an error). Each target runs SECONDS seconds (default 600) from
# seeds taken from the repository (configs, the bad-input corpus); the statistics printed at the end
# of each run give the executions and the coverage reached. A crash is saved under
# fuzz/artifacts/<target>/ and the script fails: make it a regression test (a case in
# tests/bad-input or a unit test) before fixing it.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(permit hierarchy csv_run csv_differential)
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz > /dev/null || cargo install cargo-fuzz --locked

seeds() {
    local target=$1 dir=fuzz/corpus/$1 f
    mkdir -p "$dir"
    case $target in
        permit) cp configs/*.toml tests/bad-input/base.toml "$dir/" ;;
        hierarchy)
            for f in tests/bad-input/hierarchy-*/sex.csv; do
                cp "$f" "$dir/$(basename "$(dirname "$f")").csv"
            done
            printf 'year|2 years|width 5|ranges 18 65|prefix 2|mask 3|icd10 chapter|atc 3|departement\n2020-01-01\n42\n75013\nI21.4\nC09AA05\n' > "$dir/rules.txt"
            ;;
        csv_run)
            for f in tests/bad-input/csv-*/data.csv tests/bad-input/type-*/data.csv; do
                if [ -f "$f" ] && [ "$(stat -c %s "$f")" -lt 65536 ]; then
                    tail -n +2 "$f" > "$dir/$(basename "$(dirname "$f")").csv"
                fi
            done
            printf '185057800608491,7,1.5,2020-01-31,2020-01-31 10:00:00,yes,I21\n' > "$dir/good.csv"
            ;;
        csv_differential)
            # The first byte picks the quote mode and bound; the rest is the records.
            for f in tests/bad-input/csv-*/data.csv; do
                if [ -f "$f" ] && [ "$(stat -c %s "$f")" -lt 65536 ]; then
                    { printf '\000'; tail -n +2 "$f"; } > "$dir/$(basename "$(dirname "$f")").csv"
                fi
            done
            printf '\001x,"y ""z""",U0"9\r\n,,\n' > "$dir/literal.csv"
            ;;
    esac
}

for target in "${targets[@]}"; do
    seeds "$target"
    echo "== fuzz target $target for ${seconds}s"
    set +e
    cargo +nightly fuzz run --release --sanitizer none "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 -print_final_stats=1 \
        > "fuzz/$target.log" 2>&1
    status=$?
    set -e
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' "fuzz/$target.log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 30 "fuzz/$target.log" >&2
        echo "fuzz target $target failed (a crash is saved under fuzz/artifacts/$target/): see fuzz/$target.log" >&2
        exit 1
    fi
done
