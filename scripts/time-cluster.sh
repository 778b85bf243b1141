#!/usr/bin/env bash
# Times one permit on one machine and on a Ballista cluster (#25): the hospital's stays of PEOPLE
# generated persons (1.75 rows per person) through a stays-only copy of configs/hospital.toml, run
# by `ehds-prep run` alone, with `--cluster local`, and on loopback clusters of one executor (one
# core), one executor (every core) and two executors (one core each). Prints wall seconds, rows
# per second and peak memory of the client, and checks that every cluster delivery holds the
# single-node delivery's rows in the same order. With `anonymised`, the stays of
# configs/research.toml instead (k = 5 persons, 2-diverse diagnoses, the search on the client).
#   scripts/time-cluster.sh [PEOPLE] [ROUNDS] [plain|anonymised]
set -euo pipefail
people=${1:-1000000}
rounds=${2:-1}
mode=${3:-plain}
case "$mode" in
    plain) config=configs/hospital.toml ;;
    anonymised) config=configs/research.toml ;;
    *) echo "mode: plain or anonymised" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
cargo build --release --features cluster -q
bin=$PWD/target/release/ehds-prep
work=$(mktemp -d /tmp/ehds-cluster.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
"$bin" generate --out "$work/data" --people "$people" >/dev/null
install -m 600 sample-data/DEMO-KEY-DO-NOT-USE-FOR-REAL-DATA.hex "$work/linkage.hex"
rows=$(($(wc -l < "$work/data/hospital/stays.csv") - 1))

# A stays-only permit delivering to $work/out-NAME.
permit() {
    python3 - "$work" "$1" "$config" <<'EOF'
import sys, pathlib, re
work, name, config = sys.argv[1], sys.argv[2], sys.argv[3]
text = pathlib.Path(config).read_text()
head, rest = text.split("[[datasets]]", 1)
stays = [d for d in ("[[datasets]]" + rest).split("[[datasets]]\n") if d.startswith('name = "stays"')][0]
text = (head + "[[datasets]]\n" + stays)
# The executors hold the key as `linkage`.
text = text.replace("[keys.holder]", "[keys.linkage]").replace('key = "holder"', 'key = "linkage"')
text = re.sub(r'dir = "\.\./out/[a-z]+"', f'dir = "{work}/out-{name}"', text)
text = text.replace('"../sample-data/DEMO-', f'"{pathlib.Path.cwd()}/sample-data/DEMO-')
text = text.replace('"../sample-data/', f'"{work}/data/')
text = text.replace('schema = "', f'schema = "{pathlib.Path.cwd()}/configs/')
path = pathlib.Path(work) / f"{name}.toml"
path.write_text(text)
print(path)
EOF
}

free_port() {
    python3 -c 'import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p + 1)); t.close(); print(p); break
    except OSError:
        t.close()'
}

wait_port() {
    for _ in $(seq 1 300); do
        (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    exit 1
}

# A loopback cluster: one scheduler, then executors of CORES cores each; sets $url.
cluster() {
    local executors=$1 cores=$2 port own
    port=$(free_port)
    "$bin" cluster scheduler --bind "127.0.0.1:$port" >/dev/null 2>&1 &
    pids+=($!)
    wait_port "$port"
    for _ in $(seq 1 "$executors"); do
        own=$(free_port)
        "$bin" cluster executor --scheduler "127.0.0.1:$port" --bind "127.0.0.1:$own" \
            --cores "$cores" --key "linkage=$work/linkage.hex" >/dev/null 2>&1 &
        pids+=($!)
        wait_port "$own"
    done
    url="df://127.0.0.1:$port"
}

stop_cluster() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}

# Runs the permit NAME (with the extra arguments), ROUNDS times; prints the median.
timed() {
    local name=$1 p times=()
    shift
    p=$(permit "$name")
    for _ in $(seq 1 "$rounds"); do
        /usr/bin/time -f "%e %M" -o "$work/time" "$bin" -q run --permit "$p" "$@"
        times+=("$(cat "$work/time")")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk -v n="$name" -v r="$rows" '
        { t[NR] = $1; m[NR] = $2 }
        END { i = int((NR + 1) / 2); printf "%-28s %7.2f s  %9.0f rows/s  peak %4.0f MB (client)\n", n, t[i], r / t[i], m[i] / 1024 }'
}

echo "$mode stays of $people persons: $rows rows ($(du -h "$work/data/hospital/stays.csv" | cut -f1) of CSV), $(nproc) cores"
timed single
timed local --cluster local
cluster 1 1
timed executor-1x1core --cluster "$url"
stop_cluster
cluster 1 0
timed executor-1xall-cores --cluster "$url"
stop_cluster
cluster 2 1
timed executors-2x1core --cluster "$url"
stop_cluster
python3 - "$work" <<'EOF'
import sys, pyarrow.parquet as pq
work = sys.argv[1]
single = pq.read_table(f"{work}/out-single/stays.parquet")
for name in ["local", "executor-1x1core", "executor-1xall-cores", "executors-2x1core"]:
    other = pq.read_table(f"{work}/out-{name}/stays.parquet")
    assert other.equals(single), f"{name}: the rows differ from the single-node delivery"
print("every cluster delivery holds the single-node delivery's rows, in the same order")
EOF
