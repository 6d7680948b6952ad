#!/usr/bin/env bash
# The README's BCCD figures: 1-scale SPP-net trained on BCCD trainval, VOC07 mAP on BCCD test,
# with and without fc fine-tuning and bounding-box regression. The first run is the default
# configuration from a fresh cache, so its wall time is the end-to-end time.
# Usage: tools/bccd_experiment.sh [BCCD_DIR] [OUT_DIR]   (a fresh cache under OUT_DIR/cache)
set -euo pipefail
data="${1:-../shared/data/bccd/BCCD}"
out="${2:-runs/bccd_experiment}"
mkdir -p "$out"
cache="$out/cache"
rm -rf "$cache"
start=$(date +%s)
sppdet train --data "$data" --split trainval --out "$out/pool5" --cache "$cache" --eval-split test --overwrite
echo "end-to-end, default config (pool5 SVMs + box regression), fresh cache: $(( $(date +%s) - start )) s"
sppdet eval "$out/pool5" --data "$data" --split test --cache "$cache" --out "$out/pool5_nobbox" \
  --set bbox_reg.enabled=false
start=$(date +%s)
sppdet train --data "$data" --split trainval --out "$out/ft" --cache "$cache" --eval-split test --overwrite \
  --set finetune.enabled=true
echo "fine-tuned run, cached proposals and conv maps: $(( $(date +%s) - start )) s"
sppdet eval "$out/ft" --data "$data" --split test --cache "$cache" --out "$out/ft_nobbox" --set bbox_reg.enabled=false
python - "$out" <<'PY'
import json, sys
out = sys.argv[1]
for name, path in [("pool5 SVMs, no box regression", "pool5_nobbox"), ("pool5 SVMs + box regression (default)", "pool5/eval_test"),
                   ("fine-tuned fc7 SVMs, no box regression", "ft_nobbox"), ("fine-tuned fc7 SVMs + box regression", "ft/eval_test")]:
    m = json.load(open(f"{out}/{path}/metrics.json"))
    print(f"| {name} | {m['mAP']:.3f} | " + " | ".join(f"{m['AP'][c]:.3f}" for c in sorted(m['AP'])) + " |")
for r in ("pool5", "ft"):
    t = json.load(open(f"{out}/{r}/train_log.json"))
    print(r, "peak RSS MB:", round(t["peak_rss_mb"]), "stage seconds:", {k: round(v, 1) for k, v in t["timings_s"].items()})
PY
