#!/usr/bin/env bash
# Builds ehds-prep and runs the bundled permits of the three sample holders (and the hospital's
# anonymised research extract) on the bundled sample data, then verifies each delivery. Deliveries go to out/<holder>/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/ehds-prep"
for holder in hospital insurer registry research; do
    "$bin" run --permit "configs/$holder.toml"
done
for holder in hospital insurer registry research; do
    "$bin" inspect "out/$holder" | tail -n 1
done
