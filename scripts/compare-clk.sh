#!/usr/bin/env bash
# CLK encoding and Dice matching side by side with Data61's clkhash 0.18.3 and anonlink 0.15.3
# (#22), on the same records, schema and secret: RECORDS generated persons (names of two or three
# syllables, birth date, sex, postcode; configs/clk-schema.json), encoded by clkhash (one worker) and
# by a whole `ehds-prep run` of a permit with a CLK column (one core, then every core: the run also
# reads the CSV and writes Parquet); the CLKs must be the same. Then the Dice comparison of the two
# halves at threshold 0.8, on one core: anonlink's find_candidate_pairs, and this engine's kernel on
# the same CLKs (`cargo bench --bench clk` with EHDS_CLK_FILE).
#
# Usage: scripts/compare-clk.sh [RECORDS] [WORK]   (defaults: 20000, /tmp/ehds-prep-compare-clk)
# clkhash and anonlink go into virtual environments of their own under WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-20000}
work=${2:-/tmp/ehds-prep-compare-clk}
repo=$(pwd)
cargo build --release --quiet
bin="$repo/${CARGO_TARGET_DIR:-target}/release/ehds-prep"
mkdir -p "$work"
for tool in "clkhash==0.18.3" "anonlink==0.15.3"; do
    venv="$work/${tool%%=*}"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "$tool"
    fi
done

# Records, a CLK key and the same secret as bytes for clkhash.
python3 - "$work" "$records" <<'EOF'
import random, sys
work, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
syllables = "ma ri el an lo do be ne vi ca ro la mi to se ga ré lu no pa di fa co ju li sa te mo".split()
def name():
    return "".join(rng.choice(syllables) for _ in range(rng.randint(2, 3))).capitalize()
with open(f"{work}/records.csv", "w", encoding="utf-8") as f:
    f.write("id,given,surname,birth_date,sex,postcode\n")
    for i in range(n):
        f.write(f"R{i},{name()},{name()},{rng.randint(1930, 2019)}-{rng.randint(1, 12):02}-"
                f"{rng.randint(1, 28):02},{rng.randint(1, 2)},{rng.randint(1000, 95999):05}\n")
EOF
rm -f "$work/key.hex"
"$bin" -q keygen --out "$work/key.hex" >/dev/null
python3 -c "import sys; open(sys.argv[2], 'wb').write(bytes.fromhex(open(sys.argv[1]).read().strip()))" \
    "$work/key.hex" "$work/secret"
cat > "$work/permit.toml" <<EOF
[permit]
id = "CLK-COMPARE"
purpose = "Speed comparison"
holder = "Holder"
recipient = "Access body"

[output]
dir = "$work/out"

[keys.clk]
file = "$work/key.hex"

[[datasets]]
name = "records"

[datasets.source]
format = "csv"
files = ["$work/records.csv"]

[[datasets.columns]]
name = "id"
type = "string"
action = "drop"

[[datasets.columns]]
name = "given"
type = "string"
action = "drop"

[[datasets.columns]]
name = "surname"
type = "string"
action = "drop"

[[datasets.columns]]
name = "birth_date"
type = "string"
action = "drop"

[[datasets.columns]]
name = "sex"
type = "string"
action = "drop"

[[datasets.columns]]
name = "postcode"
type = "string"
action = "drop"

[[datasets.clk]]
name = "clk"
schema = "$repo/configs/clk-schema.json"
key = "clk"
columns = ["given", "surname", "birth_date", "sex", "postcode"]
EOF

seconds() { python3 -c "import sys; print(f'{float(sys.argv[1]):.3f}')" "$1"; }
now() { date +%s.%N; }

start=$(now)
"$work/clkhash/bin/python" - "$repo/configs/clk-schema.json" "$work/secret" "$work/records.csv" \
    "$work/clkhash.txt" <<'EOF'
import csv, sys
from clkhash import clk, schema
from clkhash.serialization import serialize_bitarray
linkage = schema.from_json_file(open(sys.argv[1]))
secret = open(sys.argv[2], "rb").read()
rows = [r[1:] for r in list(csv.reader(open(sys.argv[3], encoding="utf-8")))[1:]]
clks = clk.generate_clks(rows, linkage, secret, validate=True, max_workers=1)
open(sys.argv[4], "w").write("\n".join(serialize_bitarray(c) for c in clks) + "\n")
EOF
clkhash_s=$(python3 -c "print($(now) - $start)")

start=$(now)
RAYON_NUM_THREADS=1 POLARS_MAX_THREADS=1 "$bin" -q run --permit "$work/permit.toml"
one_core_s=$(python3 -c "print($(now) - $start)")
start=$(now)
"$bin" -q run --permit "$work/permit.toml"
all_cores_s=$(python3 -c "print($(now) - $start)")

python3 - "$work/clkhash.txt" "$work/out/records.parquet" <<'EOF'
import sys
from collections import Counter
import pyarrow.parquet as pq
reference = Counter(open(sys.argv[1]).read().split())
ours = Counter(pq.read_table(sys.argv[2], columns=["clk"]).column("clk").to_pylist())
if reference != ours:
    sys.exit("the CLKs differ from clkhash's")
print(f"{sum(ours.values())} CLKs identical to clkhash's")
EOF

anonlink_rate=$("$work/anonlink/bin/python" - "$work/clkhash.txt" <<'EOF'
import base64, sys, time
from bitarray import bitarray
from anonlink import candidate_generation, similarities
def clk(text):
    bits = bitarray()
    bits.frombytes(base64.b64decode(text))
    return bits
clks = [clk(l) for l in open(sys.argv[1]).read().split()]
half = len(clks) // 2
start = time.perf_counter()
candidate_generation.find_candidate_pairs(
    [clks[:half], clks[half:2 * half]], similarities.dice_coefficient_accelerated, 0.8)
print(f"{half * half / (time.perf_counter() - start) / 1e6:.1f}")
EOF
)
ours_rate=$(EHDS_CLK_FILE="$work/clkhash.txt" RAYON_NUM_THREADS=1 \
    cargo bench --quiet --bench clk -- dice_file 2>/dev/null | awk '/thrpt:/ { print $4; exit }')

echo "encoding $records records (configs/clk-schema.json):"
echo "  clkhash 0.18.3, one worker:    $(seconds "$clkhash_s") s  ($(python3 -c "print(round($records / $clkhash_s))") records/s)"
echo "  ehds-prep run, one core:       $(seconds "$one_core_s") s  ($(python3 -c "print(round($records / $one_core_s))") records/s, $(python3 -c "print(round($clkhash_s / $one_core_s, 1))")x)"
echo "  ehds-prep run, all cores:      $(seconds "$all_cores_s") s  ($(python3 -c "print(round($records / $all_cores_s))") records/s)"
echo "Dice comparisons at threshold 0.8, one core:"
echo "  anonlink 0.15.3:               $anonlink_rate M pairs/s ($((records / 2)) x $((records / 2)))"
echo "  ehds-prep kernel:              $ours_rate M pairs/s (the same CLKs; cargo bench --bench clk)"
