#!/usr/bin/env bash
# Builds ehds-prep and runs the bundled permits of the four sample holders (and the hospital's
# anonymised research extract) on the bundled sample data, then the access body's linking permit over
# the four holders' deliveries (the cohort, without NIR, linked on CLKs); then the SNDS-shaped sample's insurer and hospital permits and their
# link; and verifies each delivery. Deliveries go to out/<name>/ (each with
# report.html for people); the hospital's catalogue descriptions (HealthDCAT-AP) to out/catalogue/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/ehds-prep"
for holder in hospital insurer registry cohort research; do
    "$bin" run --permit "configs/$holder.toml"
done
"$bin" link --permit configs/linkage.toml
# The SNDS-shaped sample (sample-data/snds, from `generate-snds`): the insurer's DCIR and a
# hospital's PMSI extracts under one permit, linked by the access body (docs/snds.md).
for holder in snds-insurer snds-hospital; do
    "$bin" run --permit "configs/$holder.toml"
done
"$bin" link --permit configs/snds-linkage.toml
# The OMOP sample (sample-data/omop, from `generate-omop`): one guarantee per person over a profile
# drawn from several tables (README, "Person profiles").
"$bin" run --permit configs/omop.toml
for delivery in hospital insurer registry cohort research linked snds-insurer snds-hospital snds-linked omop; do
    "$bin" inspect "out/$delivery" | tail -n 1
done
mkdir -p out/catalogue
for dataset in patients stays; do
    "$bin" describe --permit configs/hospital.toml --dataset "$dataset" --out "out/catalogue/hospital-$dataset.jsonld"
done
echo "catalogue descriptions: out/catalogue/hospital-patients.jsonld, out/catalogue/hospital-stays.jsonld"
