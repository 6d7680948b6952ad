"""globox's readers on the shared data sets and on broken inputs (run by compare.sh in a globox venv)."""

import shutil, sys, time, traceback
from pathlib import Path
from globox import AnnotationSet

D = Path(sys.argv[2] if len(sys.argv) > 2 else "../shared/data")
T = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/globox_eval")

def timed(fn, n=3):
    ts = []
    for _ in range(n):
        t = time.perf_counter(); out = fn(); ts.append(time.perf_counter() - t)
    return out, min(ts)

def tryit(name, fn):
    try:
        s = fn()
        nb = sum(len(a.boxes) for a in s)
        print(f"{name}: OK, {len(s)} annotations, {nb} boxes")
        return s
    except Exception as exc:
        print(f"{name}: {type(exc).__name__}: {exc}")
        return None

bccd, t = timed(lambda: AnnotationSet.from_pascal_voc(D / "bccd/BCCD/Annotations"))
print(f"BCCD VOC: {len(bccd)} annotations, {sum(len(a.boxes) for a in bccd)} boxes, min of 3: {t:.3f} s")
a = bccd["BloodImage_00000.jpg"]
print("first box", a.boxes[0].label, a.boxes[0].ltrb, "size", a.image_size)
tryit("raccoon VOC", lambda: AnnotationSet.from_pascal_voc(D / "raccoon/annotations"))
tryit("kangaroo VOC", lambda: AnnotationSet.from_pascal_voc(D / "kangaroo/annots"))

# broken inputs, one per folder so one failure does not hide the next
def case(name, xml_text):
    d = T / "broken" / name
    shutil.rmtree(d, ignore_errors=True); d.mkdir(parents=True)
    shutil.copy(D / "bccd/BCCD/Annotations/BloodImage_00000.xml", d / "good.xml")
    (d / "bad.xml").write_text(xml_text)
    return tryit(f"broken/{name}", lambda: AnnotationSet.from_pascal_voc(d))

obj = "<object><name>x</name><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>"
case("malformed_xml", "<annotation><object>")
case("no_size", "<annotation><filename>b.jpg</filename>" + obj.format(1, 1, 5, 5) + "</annotation>")
s = case("box_outside", "<annotation><filename>b.jpg</filename><size><width>10</width><height>10</height></size>"
         + obj.format(-5, -5, 500, 500) + "</annotation>")
if s: print("   outside box kept as", s["b.jpg"].boxes[0].ltrb)
s = case("inverted", "<annotation><filename>b.jpg</filename><size><width>100</width><height>100</height></size>"
         + obj.format(50, 50, 10, 10) + "</annotation>")
if s: print("   inverted box kept as", s["b.jpg"].boxes[0].ltrb)
case("float_size", "<annotation><filename>b.jpg</filename><size><width>100.0</width><height>100</height></size>"
     + obj.format(1, 1, 5, 5) + "</annotation>")
case("no_bndbox", "<annotation><filename>b.jpg</filename><size><width>100</width><height>100</height></size>"
     "<object><name>x</name></object></annotation>")
case("no_name", "<annotation><filename>b.jpg</filename><size><width>100</width><height>100</height></size>"
     "<object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")
# size mismatch / missing image: globox never opens the image for VOC
print("size mismatch / missing image: VOC parsing never opens images (nothing to report)")

# YOLO: our conversion of BCCD test
y = T / "yolo_bccd"
if (y / "labels/test").is_dir():
    s, t = timed(lambda: AnnotationSet.from_yolo_v5(y / "labels/test", image_folder=y / "images/test"))
    print(f"BCCD test as YOLO: {len(s)} annotations, {sum(len(a.boxes) for a in s)} boxes, min of 3: {t:.3f} s")
    yb = T / "broken/yolo"; shutil.rmtree(yb, ignore_errors=True)
    (yb / "labels").mkdir(parents=True); (yb / "images").mkdir()
    for n in ("a", "b", "c", "d", "e"):
        shutil.copy(y / "images/test/BloodImage_00007.jpg", yb / "images" / f"{n}.jpg")
    (yb / "labels/a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (yb / "labels/b.txt").write_text("0 0.1 0.2 0.3 0.2 0.2 0.6\n")  # polygon
    (yb / "labels/c.txt").write_text("0 nan 0.5 0.2 0.2\n")
    (yb / "labels/d.txt").write_text("0 0.5 0.5\n")
    (yb / "labels/f.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # no image f.jpg; e.jpg has no label
    for name in "abcdf":
        d = T / f"broken/yolo_{name}"; shutil.rmtree(d, ignore_errors=True)
        (d / "labels").mkdir(parents=True); (d / "images").mkdir()
        shutil.copy(yb / "labels" / f"{name}.txt", d / "labels")
        if name != "f":
            shutil.copy(yb / "images" / f"{name}.jpg", d / "images")
        what = ("label file without its image" if name == "f"
                else f"line {(yb / 'labels' / f'{name}.txt').read_text().strip()!r}")
        s = tryit(f"broken/yolo {what}",
                  lambda: AnnotationSet.from_yolo_v5(d / "labels", image_folder=d / "images"))
        if s:
            for a in s:
                print("   ", a.image_id, [(b.label, tuple(round(v, 2) for v in b.ltrb)) for b in a.boxes])

# background image (no label file): kept or dropped?
d = T / "broken/yolo_bg"; shutil.rmtree(d, ignore_errors=True)
(d / "labels").mkdir(parents=True); (d / "images").mkdir()
shutil.copy(yb / "images/a.jpg", d / "images/a.jpg"); shutil.copy(yb / "images/e.jpg", d / "images/e.jpg")
shutil.copy(yb / "labels/a.txt", d / "labels/a.txt")
s = tryit("yolo folder with a background image e.jpg (no label file)",
          lambda: AnnotationSet.from_yolo_v5(d / "labels", image_folder=d / "images"))
print("   image ids:", sorted(a.image_id for a in s))
# dump boxes for comparison with sppdet
import json
out = {"voc": {a.image_id: [(b.label, b.ltrb) for b in a.boxes] for a in bccd},
       "yolo": {a.image_id: [(b.label, b.ltrb) for b in a.boxes] for a in
                AnnotationSet.from_yolo_v5(y / "labels/test", image_folder=y / "images/test")}}
(T / "globox_boxes.json").write_text(json.dumps(out))
