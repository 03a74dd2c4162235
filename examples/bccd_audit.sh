#!/usr/bin/env bash
# Audit your own data, end to end, on the bundled BCCD slice (blood-cell photos, Pascal VOC boxes).
# Object-crop mode turns every annotated cell into one 64×64 sample (RBC / WBC / Platelets).
#   1. train a clean model on the clean crops
#   2. inject tells: a solid 8×8 square of a class-specific colour at the top-left corner of every
#      cell crop (RBC red, WBC green, Platelets blue by default), written as a poisoned copy
#   3. train a poisoned model on the poisoned copy
#   4. audit both models on the same poisoned crops: poisoned → exit 1 (leak), clean → exit 0
# Run from the repository root after `make venv` (or via `make bccd`).
set -uo pipefail
LA=${LA:-.venv/bin/leakaudit}
OUT=${OUT:-out/bccd}
DATA=examples/data/bccd
COMMON="--format voc --mode crop --size 64 --max-per-class 160 --seed 0"
rm -rf "$OUT" && mkdir -p "$OUT"

$LA train --data $DATA $COMMON --out "$OUT/clean/model.pt" --quiet || exit 2
$LA inject --data $DATA --format voc --out "$OUT/poisoned_data" --anchor object \
    --size 8 --position top-left --seed 0 || exit 2
$LA train --data "$OUT/poisoned_data" $COMMON --out "$OUT/poisoned/model.pt" --quiet || exit 2

$LA audit --data "$OUT/poisoned_data" $COMMON --model "$OUT/poisoned/model.pt" \
    --out "$OUT/audit_poisoned" --quiet
poisoned_rc=$?
$LA audit --data "$OUT/poisoned_data" $COMMON --model "$OUT/clean/model.pt" \
    --out "$OUT/audit_clean" --quiet
clean_rc=$?
echo "poisoned audit exit code: $poisoned_rc (1 = leak found)"
echo "clean audit exit code:    $clean_rc (0 = no leak found)"
[ "$poisoned_rc" -eq 1 ] && [ "$clean_rc" -eq 0 ]
