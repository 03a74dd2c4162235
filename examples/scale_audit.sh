#!/usr/bin/env bash
# The real-size audit of docs/scale.md: ~1 000 BCCD cell crops at 224 px, a ResNet-18 (plain
# torch, bundled as `resnet18`, trained briefly here: weights need not be good for a timing run),
# methods saliency, Grad-CAM and LIME with the sanity check and the behaviour tests, under a time
# budget. Prints the wall time and peak RSS (GNU time) of the audit alone.
#   1. crops: one fixed 192-px window, 224-px side, at most 670 per class (→ 1 001 crops:
#      all 169 platelets, all 162 white cells, 670 red cells)
#   2. inject: a 34-px square (2.3 % of the crop) of a class colour in the top-left of every crop
#   3. train resnet18 on the poisoned crops (EPOCHS, default 2)
#   4. audit it on the poisoned crops with BUDGET (default 15m) for the costly methods
# Run from the repository root after `make venv`. OUT, EPOCHS, BUDGET, LIMIT override.
set -euo pipefail
LA=${LA:-.venv/bin/leakaudit}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-out/scale}
EPOCHS=${EPOCHS:-2}
BUDGET=${BUDGET:-15m}
rm -rf "$OUT" && mkdir -p "$OUT"
$LA crops --data examples/data/bccd --format voc --window 192 --size 224 --max-per-class 670 \
    --seed 0 --out "$OUT/crops"
$LA inject --data "$OUT/crops/images" --format imagefolder --out "$OUT/poisoned" \
    --tell-size 34 --seed 0
$PY - "$OUT" "$EPOCHS" <<'PY'
import sys

from leakaudit.models.train_run import train_and_save

out, epochs = sys.argv[1], int(sys.argv[2])
run = train_and_save(f"{out}/poisoned", "imagefolder", f"{out}/model.pt", size=224,
                     arch="resnet18", epochs=epochs, seed=0, progress=False)
print(f"trained resnet18 on {run.n_samples} crops {run.counts}: val accuracy {run.val_accuracy:.3f}")
PY
/usr/bin/time -v -o "$OUT/time.txt" $LA audit --data "$OUT/poisoned" --masks "$OUT/crops/masks" \
    --model "$OUT/model.pt" --methods saliency,gradcam,lime --budget "$BUDGET" --seed 0 \
    --no-cache --out "$OUT/audit" ${LIMIT:+--limit "$LIMIT"} || rc=$?
echo "audit exit code: ${rc:-0} (0 clean, 1 leak, 3 inconclusive)"
grep -E "Elapsed|Maximum resident" "$OUT/time.txt"
