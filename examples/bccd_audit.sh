#!/usr/bin/env bash
# Audit your own data, end to end, on the bundled BCCD slice (blood-cell photos, Pascal VOC boxes).
#   1. cut every annotated cell into a 64×64 crop (RBC / WBC / Platelets, 160 per class), with one
#      fixed 192-px window for all cells, written as an ImageFolder with region masks
#   2. inject tells into a copy of the crops: a solid 10×10 square of a class-specific colour in
#      the top-left corner of every crop (the `inject` defaults; per crop, so a cell's tell never
#      shows up in its neighbours' crops)
#   3. train a clean model on the clean crops and a poisoned model on the poisoned copy
#   4. audit both models on the same poisoned crops: poisoned → exit 1 (leak), clean → exit 0
# Run from the repository root after `make venv` (or via `make bccd`). SEED=n picks another seed,
# POSITION=bottom-right (or random, X,Y, another corner) another tell position.
set -uo pipefail
LA=${LA:-.venv/bin/leakaudit}
OUT=${OUT:-out/bccd}
SEED=${SEED:-0}
POSITION=${POSITION:-top-left}
rm -rf "$OUT" && mkdir -p "$OUT"

$LA crops --data examples/data/bccd --format voc --window 192 --size 64 --max-per-class 160 \
    --seed "$SEED" --out "$OUT/crops" || exit 2
$LA inject --data "$OUT/crops/images" --format imagefolder --out "$OUT/poisoned_crops" \
    --tell-position "$POSITION" --seed "$SEED" || exit 2
$LA train --data "$OUT/crops/images" --seed "$SEED" --out "$OUT/clean/model.pt" --quiet || exit 2
$LA train --data "$OUT/poisoned_crops" --seed "$SEED" --out "$OUT/poisoned/model.pt" --quiet || exit 2

AUDIT="--data $OUT/poisoned_crops --masks $OUT/crops/masks --seed $SEED --quiet"
$LA audit $AUDIT --model "$OUT/poisoned/model.pt" --out "$OUT/audit_poisoned"
poisoned_rc=$?
$LA audit $AUDIT --model "$OUT/clean/model.pt" --out "$OUT/audit_clean"
clean_rc=$?
echo "poisoned audit exit code: $poisoned_rc (1 = leak found)"
echo "clean audit exit code:    $clean_rc (0 = no leak found)"
[ "$poisoned_rc" -eq 1 ] && [ "$clean_rc" -eq 0 ]
