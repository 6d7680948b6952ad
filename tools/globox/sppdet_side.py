"""sppdet's readers on the files globox_side.py read: boxes compared, load times (min of 3)."""
import json, sys, time
import numpy as np
from sppdet.datasets import load_dataset
g = json.load(open(sys.argv[1] + "/globox_boxes.json"))
ts = []
for _ in range(3):
    t = time.perf_counter(); ds = load_dataset(sys.argv[2] + "/bccd/BCCD", "all"); ts.append(time.perf_counter() - t)
print(f"sppdet load_dataset(BCCD, all): {len(ds)} images, {sum(len(r.boxes) for r in ds.records)} boxes (after repairs), "
      f"{sum(len(r.eval_objects()) for r in ds.records)} raw objects, min of 3: {min(ts):.3f} s")
print(ds.report.summary())
# VOC: globox keeps the file's numbers (1-based); sppdet's raw objects are the same numbers
diff = 0; n = 0
for r in ds.records:
    gb = g["voc"][r.path.name]
    ours = r.eval_objects()
    assert [x[0] for x in ours] == [x[0] for x in gb], r.image_id
    diff = max(diff, float(np.abs(np.array([o[1] for o in ours]) - np.array([b[1] for b in gb])).max()) if ours else 0); n += len(ours)
print(f"VOC raw boxes: {n} compared, max |sppdet raw - globox| = {diff}")
ts = []
for _ in range(3):
    t = time.perf_counter(); y = load_dataset(sys.argv[1] + "/yolo_bccd", "test"); ts.append(time.perf_counter() - t)
print(f"sppdet YOLO BCCD test: {len(y)} images, min of 3: {min(ts):.3f} s")
names = y.classes
diff = 0; n = 0
for r in y.records:
    gb = g["yolo"][r.path.name]
    gbox = np.array([b[1] for b in gb]).reshape(-1, 4)
    # globox: continuous [l, r); sppdet: inclusive pixels, x2 = r - 1, then clipped
    gbox[:, 2:] -= 1
    gbox = np.clip(gbox, 0, [r.width - 1, r.height - 1] * 2)
    assert [names[int(b[0])] for b in gb] == r.labels
    diff = max(diff, float(np.abs(gbox - r.boxes).max())); n += len(gb)
print(f"YOLO boxes: {n} compared, max |sppdet - (globox - 1 on x2/y2, clipped)| = {diff:.2e}")
