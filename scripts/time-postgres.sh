#!/usr/bin/env bash
# Times reading an extract straight from PostgreSQL against the export route (`COPY … TO` a CSV file,
# then the CSV path): the hospital's stays for PEOPLE people (600,000 gives about 1M stays) loaded
# into a typed table of a throwaway cluster (scripts/postgres.sh), then a stays-only copy of
# configs/hospital.toml run both ways. Prints wall time, CPU time, peak memory and rows per second,
# three alternating rounds, and checks that the two deliveries' data pages are identical.
#
# Usage: scripts/time-postgres.sh [PEOPLE] [WORK]      (defaults: 600000, /tmp/ehds-prep-pg-timing)
set -euo pipefail
cd "$(dirname "$0")/.."
people=${1:-600000}
work=${2:-/tmp/ehds-prep-pg-timing}
repo=$(pwd)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
install() { $sudo apt-get install -y --no-install-recommends "$@" >/dev/null; }
cargo build --release --quiet
bin="$(pwd)/${CARGO_TARGET_DIR:-target}/release/ehds-prep"
[ -x "$bin" ] || bin="${CARGO_TARGET_DIR:-target}/release/ehds-prep"
mkdir -p "$work/configs"
if [ ! -f "$work/sample-data/hospital/stays.csv" ] || [ "$(cat "$work/people" 2>/dev/null)" != "$people" ]; then
    rm -rf "$work/sample-data"
    "$bin" generate --out "$work/sample-data" --people "$people" --seed 7
    echo "$people" > "$work/people"
fi
cp sample-data/DEMO-*.hex "$work/sample-data/"
source scripts/postgres.sh
chmod 755 "$pg_dir"
export EHDS_PG_CONNECTION="$EHDS_TEST_PG"
# The stays table: the declared columns, typed; the export route's file.
psql "$EHDS_TEST_PG" -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE stays_text (stay_id text, patient_id text, nir text, admission_date text,
    discharge_date text, main_diagnosis text, unit text, postcode text);
\copy stays_text FROM '$work/sample-data/hospital/stays.csv' (FORMAT csv, HEADER true)
CREATE TABLE stays AS SELECT stay_id, patient_id, nir, admission_date::date AS admission_date,
    discharge_date::date AS discharge_date, main_diagnosis, unit, postcode FROM stays_text;
DROP TABLE stays_text;
VACUUM ANALYZE stays;
SQL
python3 - "$repo/configs/hospital.toml" "$work" "$pg_dir/ca.crt" <<'PY'
import sys
text, work, ca = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3]
start = text.index('[[datasets]]\nname = "patients"')
end = text.index('[[datasets]]\nname = "stays"')
text = (text[:start] + text[end:]).replace('"../sample-data/', f'"{work}/sample-data/')
csv = text.replace('"../out/hospital"', f'"{work}/out-csv"').replace(
    'files = ["' + work + '/sample-data/hospital/stays.csv"]', f'files = ["{work}/export.csv"]')
pg = text.replace('"../out/hospital"', f'"{work}/out-postgres"').replace(
    'format = "csv"\nfiles = ["' + work + '/sample-data/hospital/stays.csv"]',
    f'format = "postgres"\nconnection_env = "EHDS_PG_CONNECTION"\ntable = "stays"\n'
    f'sslmode = "require"\nsslrootcert = "{ca}"')
assert 'format = "postgres"' in pg and "export.csv" in csv
open(f"{work}/configs/stays-csv.toml", "w").write(csv)
open(f"{work}/configs/stays-postgres.toml", "w").write(pg)
PY
cat > "$work/export-then-run.sh" <<SH
#!/usr/bin/env bash
set -euo pipefail
psql "\$EHDS_PG_CONNECTION sslmode=require sslrootcert=$pg_dir/ca.crt" -q -c "\\copy (SELECT * FROM stays) TO '$work/export.csv' (FORMAT csv, HEADER true)"
"$bin" -q run --permit "$work/configs/stays-csv.toml"
SH
chmod +x "$work/export-then-run.sh"
source scripts/measure.sh
rows=$(psql "$EHDS_TEST_PG" -tAc "SELECT count(*) FROM stays")
echo "stays: $rows rows in PostgreSQL $(psql "$EHDS_TEST_PG" -tAc 'SHOW server_version')"
results="$work/results.txt"
: > "$results"
for round in 1 2 3; do
    measure "from PostgreSQL (round $round)" "$bin" -q run --permit "$work/configs/stays-postgres.toml"
    measure "COPY to CSV + run (round $round)" "$work/export-then-run.sh"
done
python3 - "$results" "$rows" <<'PY'
import sys, statistics
rows = int(sys.argv[2])
by = {}
for line in open(sys.argv[1]):
    label, wall, cpu, peak = line.rsplit(" ", 3)
    by.setdefault(label.split(" (round")[0], []).append((float(wall), float(cpu), int(peak)))
for label, runs in by.items():
    walls = sorted(r[0] for r in runs)
    print(f"{label:28} median wall {statistics.median(walls):6.2f} s (rounds {walls[0]:.2f}-{walls[-1]:.2f}), "
          f"{rows / statistics.median(walls) / 1e6:5.2f} M rows/s, peak {max(r[2] for r in runs)} MB")
PY
python3 - "$work" <<'PY'
import sys, pathlib
work = pathlib.Path(sys.argv[1])
def pages(p):
    b = p.read_bytes(); n = int.from_bytes(b[-8:-4], "little"); return b[:len(b) - 8 - n]
a, b = work / "out-csv/stays.parquet", work / "out-postgres/stays.parquet"
assert pages(a) == pages(b), "the two deliveries differ"
print("deliveries: data pages identical")
PY
