#!/usr/bin/env bash
# Issue #12's "no loss on other data sets": sppdet 0.2's defaults (selective search `fast`, no
# negative pruning) against 0.3's (`quality`, SPP-net's pruning) on the raccoon and kangaroo sets
# (web photos, one large object per image; kangaroo has no split, so the seeded 80/20 one).
# Usage: tools/other_datasets.sh [SHARED_DATA_DIR] [OUT_DIR]
set -euo pipefail
shared="${1:-../shared/data}"
out="${2:-runs/other_datasets}"
mkdir -p "$out"
declare -A data=([raccoon]="$shared/raccoon" [kangaroo]="$shared/kangaroo")
declare -A train=([raccoon]="$shared/raccoon/data/train_labels.csv" [kangaroo]="trainval")
declare -A test=([raccoon]="$shared/raccoon/data/test_labels.csv" [kangaroo]="test")
for ds in raccoon kangaroo; do
  for setting in v0.2 v0.3; do
    run="$out/$ds-$setting"
    [ -f "$run/eval_$(basename "${test[$ds]}" .csv)/metrics.json" ] && continue
    extra=()
    [ "$setting" = v0.2 ] && extra=(--set proposals.mode=fast --set svm.neg_overlap_prune=0)
    start=$(date +%s)
    python -m sppdet train --data "${data[$ds]}" --split "${train[$ds]}" --eval-split "${test[$ds]}" \
      --out "$run" --cache "$out/cache" --overwrite "${extra[@]}"
    echo $(( $(date +%s) - start )) > "$run/wall_s.txt"
  done
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| data set | 0.2 defaults (fast, no pruning) | 0.3 defaults (quality, pruning) | wall s (0.2 / 0.3) |")
print("|---|---|---|---|")
for ds in ("raccoon", "kangaroo"):
    m, w = [], []
    for s in ("v0.2", "v0.3"):
        run = out / f"{ds}-{s}"
        m.append(json.loads(next(run.glob("eval_*/metrics.json")).read_text())["mAP"])
        w.append((run / "wall_s.txt").read_text().strip())
    print(f"| {ds} | {m[0]:.3f} | {m[1]:.3f} | {w[0]} / {w[1]} |")
PY
