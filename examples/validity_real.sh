#!/usr/bin/env bash
# False alarms on real data (docs/validity.md): independent clean models, each audited on clean
# images WITHOUT tell annotations, so only annotation-free discovery (suspected tells tested by
# removal and swap) can fail them. Exit code of each audit: 0 clean, 1 leak (a false alarm),
# 3 inconclusive (nothing that could fail was measured), 2 error; a crop or train step that
# failed is recorded as 'error' (see its log.txt), not dropped.
#   * BCCD blood-cell crops (bundled slice), both crop styles (one fixed 192-px window; boxes
#     with 50 % context) and several class sets, one seed each
#   * scikit-learn's digits (8×8, shown at 32×32), several seeds
# Quick settings (48 px crops, saliency only: without annotations the attribution conditions
# are N/A, and discovery runs on saliency). Appends one line per model to $OUT/results.tsv.
set -uo pipefail
LA=${LA:-.venv/bin/leakaudit}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-out/validity/real}
mkdir -p "$OUT"
# `validity_real.sh NAME...` redoes only those runs (b3 d2 …), appending to results.tsv
[ $# -gt 0 ] || : > "$OUT/results.tsv"

failed() {  # name source classes seed: a step before the audit failed
    printf '%s\t%s\t%s\t%s\terror\n' "$1" "$2" "$3" "$4" >> "$OUT/results.tsv"
}

bccd() {  # name style classes seed
    local d="$OUT/$1" style=$2 classes=$3 seed=$4
    rm -rf "$d" && mkdir -p "$d"
    if [ "$style" = window ]; then crop=(--window 192); else crop=(--margin 0.5); fi
    $LA crops --data examples/data/bccd --format voc "${crop[@]}" --size 48 --classes "$classes" \
        --skip-unknown --max-per-class 160 --seed "$seed" --out "$d/crops" > "$d/log.txt" 2>&1 || {
        failed "$1" "bccd-$style" "$classes" "$seed"; return; }
    $LA train --data "$d/crops/images" --size 48 --seed "$seed" --out "$d/model.pt" --quiet \
        >> "$d/log.txt" 2>&1 || { failed "$1" "bccd-$style" "$classes" "$seed"; return; }
    $LA audit --data "$d/crops/images" --masks "$d/crops/masks" --model "$d/model.pt" \
        --methods saliency --seed "$seed" --no-cache --quiet --out "$d/audit" >> "$d/log.txt" 2>&1
    printf '%s\tbccd-%s\t%s\t%s\t%s\n' "$1" "$style" "$classes" "$seed" "$?" >> "$OUT/results.tsv"
}

digits() {  # name seed
    local d="$OUT/$1" seed=$2
    rm -rf "$d" && mkdir -p "$d"
    [ -d "$OUT/digits_images" ] || $PY - "$OUT/digits_images" <<'PY'
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

root = Path(sys.argv[1])
d = load_digits()
for i, (img, y) in enumerate(zip(d.images, d.target, strict=True)):
    (root / str(y)).mkdir(parents=True, exist_ok=True)
    grey = np.kron(img / 16.0, np.ones((4, 4)))  # 8×8 → 32×32, nearest neighbour
    Image.fromarray((np.stack([grey] * 3, -1) * 255).astype(np.uint8)).save(root / f"{y}/{i}.png")
PY
    $LA train --data "$OUT/digits_images" --size 32 --seed "$seed" --out "$d/model.pt" --quiet \
        > "$d/log.txt" 2>&1 || { failed "$1" digits 0-9 "$seed"; return; }
    $LA audit --data "$OUT/digits_images" --size 32 --model "$d/model.pt" --methods saliency \
        --limit 300 --seed "$seed" --no-cache --quiet --out "$d/audit" >> "$d/log.txt" 2>&1
    printf '%s\tdigits\t0-9\t%s\t%s\n' "$1" "$seed" "$?" >> "$OUT/results.tsv"
}

RUNS=(
    "bccd b1 window RBC,WBC,Platelets 0"
    "digits d1 0"
    "bccd b2 proportional RBC,WBC,Platelets 1"
    "digits d2 1"
    "bccd b3 window RBC,WBC 2"
    "bccd b4 proportional WBC,Platelets 3"
    "digits d3 2"
    "bccd b5 window RBC,Platelets 4"
    "bccd b6 proportional RBC,WBC 5"
    "digits d4 3"
)
for run in "${RUNS[@]}"; do
    read -r -a a <<< "$run"
    if [ $# -eq 0 ] || [[ " $* " == *" ${a[1]} "* ]]; then "${a[@]}"; fi
done
cat "$OUT/results.tsv"
