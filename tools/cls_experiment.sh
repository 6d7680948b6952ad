#!/usr/bin/env bash
# The README's classification figures: SPP classifiers on BCCD object crops (each cell cropped at
# its own size and aspect ratio), single-size (224) vs multi-size (224/180 alternating) training,
# tested with 1 view, 10 views, the full crop, and 10 views + full.
# Usage: tools/cls_experiment.sh [BCCD_DIR] [OUT_DIR]
set -euo pipefail
data="${1:-../shared/data/bccd/BCCD}"
out="${2:-runs/cls_experiment}"
common=(--data "$data" --split trainval --epochs 6 --max-per-class 300)
sppdet train-cls "${common[@]}" --sizes 224 --out "$out/single"
sppdet train-cls "${common[@]}" --sizes 224 180 --out "$out/multi"
for m in single multi; do
  sppdet eval-cls "$out/$m" --data "$data" --split test --out "$out/$m/eval_test.json"
done
python - "$out" <<'PY'
import json, sys
out = sys.argv[1]
for m, name in (("single", "single-size (224)"), ("multi", "multi-size (224, 180)")):
    r = json.load(open(f"{out}/{m}/eval_test.json"))
    print(f"| {name} | " + " | ".join(f"{100 * r[k]['top1_error']:.2f}" for k in ("1view", "10view", "full", "10view+full")) + " |")
PY
