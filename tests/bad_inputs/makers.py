"""What the bad-input tests build their inputs with: small VOC files and images, the tiny run's
settings and non-UTF-8 names, detect's calls and its rows."""
import json
import os
from pathlib import Path

from PIL import Image


MISSING = "image id in the split without an annotation file (skipped)"


def _xml(filename, objs=(("dog", (1, 1, 20, 20), "0"),), size=(40, 30), extra=""):
    s = f"{extra}<annotation><filename>{filename}</filename>"
    if size:
        s += f"<size><width>{size[0]}</width><height>{size[1]}</height></size>"
    for name, (x1, y1, x2, y2), diff in objs:
        s += (f"<object><name>{name}</name><difficult>{diff}</difficult><bndbox><xmin>{x1}</xmin>"
              f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
    return s + "</annotation>"


def _img(path, size=(40, 30), colour=(120, 60, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _devkit(root, n=3):
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        _img(root / "JPEGImages" / f"{i:03d}.jpg")
        (root / "Annotations" / f"{i:03d}.xml").write_text(_xml(f"{i:03d}.jpg"))
    return root


RUN_FAST = {"proposals": {"max_boxes": 60, "work_size": 200}, "features": {"scales": [224]},
            "svm": {"retrain_limit": 300}}


LATIN1 = b"caf\xe9"  # an image name from an old Windows zip: not UTF-8


def _latin1_names_and_bom(root: Path, renames: dict[str, bytes]) -> None:
    """Rename images (and their XML) to non-UTF-8 names; save every split file with a BOM."""
    for old, new in renames.items():
        for sub, ext in (("JPEGImages", b".jpg"), ("Annotations", b".xml")):
            folder = os.fsencode(root / sub)
            os.rename(folder + b"/" + old.encode() + ext, folder + b"/" + new + ext)
    for f in (root / "ImageSets" / "Main").iterdir():
        data = f.read_bytes()
        for old, new in renames.items():
            data = data.replace(old.encode(), new)
        f.write_bytes(b"\xef\xbb\xbf" + data)


def _detect(run, inputs, out, **kw):
    import sppdet

    kw.setdefault("threshold", 0.0)
    return sppdet.detect(run, inputs, out, workers=1, **kw)


def decisive_run(det, image_path, folder):
    """``det`` made decisive (tests/decisive.py) on the image at ``image_path``, saved to
    ``folder``: for checks that two detections of the same image are equal to the last digit.
    Returns the copy."""
    import numpy as np
    from PIL import Image

    from decisive import decisive

    out = decisive(det, np.asarray(Image.open(image_path).convert("RGB")))
    out.save(folder)
    return out


def _rows(out):
    return json.loads((out / "detections.json").read_text())


def _by_image(rows):
    out = {}
    for r in rows:
        out.setdefault(r["image"], []).append((r["label"], r["score"], r["bbox"]))
    return {k: sorted(v) for k, v in out.items()}


def copy_detector(det):
    import copy

    return copy.copy(det)
