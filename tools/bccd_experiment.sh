#!/usr/bin/env bash
# The README's BCCD figures: 1-scale SPP-net trained on BCCD trainval, VOC07 mAP on BCCD test,
# with and without fc fine-tuning and bounding-box regression.
# Usage: tools/bccd_experiment.sh [BCCD_DIR] [OUT_DIR]   (a fresh cache under OUT_DIR/cache)
set -euo pipefail
data="${1:-../shared/data/bccd/BCCD}"
out="${2:-runs/bccd_experiment}"
mkdir -p "$out"
cache="$out/cache"
start=$(date +%s)
sppdet train --data "$data" --split trainval --out "$out/ft" --cache "$cache" --eval-split test --overwrite
echo "end-to-end (fine-tuned, with box regression): $(( $(date +%s) - start )) s"
sppdet eval "$out/ft" --data "$data" --split test --cache "$cache" --out "$out/ft_nobbox" --set bbox_reg.enabled=false
sppdet train --data "$data" --split trainval --out "$out/pool5" --cache "$cache" --eval-split test --overwrite \
  --set finetune.enabled=false
sppdet eval "$out/pool5" --data "$data" --split test --cache "$cache" --out "$out/pool5_nobbox" \
  --set bbox_reg.enabled=false
python - "$out" <<'PY'
import json, sys
out = sys.argv[1]
for name, path in [("pool5 SVMs, no box regression", "pool5_nobbox"), ("pool5 SVMs + box regression", "pool5/eval_test"),
                   ("fine-tuned fc7 SVMs, no box regression", "ft_nobbox"), ("fine-tuned fc7 SVMs + box regression", "ft/eval_test")]:
    m = json.load(open(f"{out}/{path}/metrics.json"))
    print(f"| {name} | {m['mAP']:.3f} | " + " | ".join(f"{m['AP'][c]:.3f}" for c in sorted(m['AP'])) + " |")
PY
