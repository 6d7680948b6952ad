"""Error analysis: what a detector's false positives are, which objects it misses, in one
self-contained ``report.html``.

False positives are sorted into the categories of Hoiem, Chodpathumwan and Dai, *Diagnosing
Error in Object Detectors* (ECCV 2012). Each detection of class c, in descending score order,
is matched as VOC matches it (best IoU with an object of class c; IoU > 0.5 with an object not
matched before is a hit), then:

- ``correct``: a hit (exactly VOC's true positives);
- ``localisation``: IoU with an object of class c in [0.1, 0.5], or > 0.5 with one already
  matched (a duplicate; ``duplicate`` counts these separately);
- ``similar``: otherwise, IoU ≥ 0.1 with an object of a class grouped with c in ``similar``;
- ``other``: otherwise, IoU ≥ 0.1 with an object of any other class;
- ``background``: IoU < 0.1 with every object.

Detections whose best match is a ``difficult`` object are ignored, as VOC ignores them.
The breakdown is reported for each class's top N detections, N = its number of
(non-difficult) objects, as Hoiem et al. do: at that depth a perfect detector would have
only correct detections, so every other entry is an error that costs precision where it
matters. The full list and the top N/4 … 4N are in ``analysis.json`` too.

When ``tidecv`` (Bolya et al., *TIDE*, ECCV 2020) is installed, its ΔAP per error type is
added. It is optional, and must be installed with ``pip install --no-deps tidecv appdirs
pandas seaborn``: its declared dependency ``opencv-python`` overwrites the files of the
``opencv-contrib-python-headless`` build sppdet needs (``cv2.ximgproc.segmentation``, selective
search, is then gone).
"""
from __future__ import annotations

import contextlib
import html
import io
from pathlib import Path
from typing import Sequence

import numpy as np

from ..boxes import area, iou, to_continuous, to_xywh, widths_heights
from ..fileio import atomic_write, atomic_write_json
from .detections import image_id_of, record_index
from .voc import evaluate_voc, format_table

CATEGORIES = ("correct", "localisation", "similar", "other", "background")
COLORS = {"correct": "#3cb44b", "localisation": "#ffe119", "similar": "#f58231", "other": "#911eb4",
          "background": "#e6194b"}
RANK_MULTIPLES = (0.25, 0.5, 1.0, 2.0, 4.0)
TIDE_INSTALL = "pip install --no-deps tidecv appdirs pandas seaborn"


def _iou(box: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """IoU of one box with each row of ``gts``, inclusive pixels (the +1 convention of VOC)."""
    if len(gts) == 0:
        return np.zeros(0)
    return iou(np.asarray(box, dtype=np.float64)[None], gts)[0]


def _gt(records, classes: Sequence[str]) -> dict[str, dict]:
    """image id → {"boxes" [N, 4] 0-based, "labels", "difficult"} from the objects evaluation uses."""
    known = set(classes)
    out = {}
    for r in records:
        objs = [o for o in r.eval_objects() if o[0] in known]
        out[r.image_id] = {"boxes": np.array([[v - 1.0 for v in o[1]] for o in objs], dtype=np.float64).reshape(-1, 4),
                           "labels": [o[0] for o in objs], "difficult": np.array([o[2] for o in objs], dtype=bool),
                           "record": r}
    return out


def categorise(records, detections: list[dict], classes: Sequence[str],
               similar: Sequence[Sequence[str]] | None = None, iou_thresh: float = 0.5,
               low: float = 0.1) -> tuple[dict[str, list[dict]], dict[str, list[tuple[str, int]]]]:
    """Each class's detections, best first, each with a ``category`` (or ``ignored``) and its
    ``iou``; and each class's missed objects as (image id, object index)."""
    gt = _gt(records, classes)
    group = {c: set() for c in classes}
    for g in similar or []:
        for c in g:
            group.setdefault(c, set()).update(x for x in g if x != c)
    index = record_index(records)
    out: dict[str, list[dict]] = {c: [] for c in classes}
    for d in detections:
        if d["label"] in out:
            out[d["label"]].append(d)
    missed = {}
    for c in classes:
        dets = out[c]
        scores = np.array([float(d["score"]) for d in dets], dtype=np.float64)
        order = np.argsort(-scores)  # the tie-breaking evaluate_voc uses
        matched = {img: np.zeros(len(g["labels"]), dtype=bool) for img, g in gt.items()}
        ranked = []
        for k in order:
            d = dets[k]
            img = image_id_of(index, d["image"])
            if img not in gt:
                continue
            g = gt[img]
            box = np.asarray(d["bbox"], dtype=np.float64)
            ious = _iou(box, g["boxes"])
            same = np.array([lab == c for lab in g["labels"]], dtype=bool)
            entry = {**d, "image_id": img}
            best = float(ious[same].max()) if same.any() else 0.0
            if best > iou_thresh:
                j = int(np.flatnonzero(same)[np.argmax(ious[same])])
                if g["difficult"][j]:
                    entry.update(category="ignored", iou=best)
                elif matched[img][j]:
                    entry.update(category="localisation", duplicate=True, iou=best)
                else:
                    matched[img][j] = True
                    entry.update(category="correct", iou=best)
            elif best >= low:
                entry.update(category="localisation", iou=best)
            else:
                sim = np.array([lab in group.get(c, ()) for lab in g["labels"]], dtype=bool)
                oth = ~same & ~sim
                if sim.any() and ious[sim].max() >= low:
                    entry.update(category="similar", iou=float(ious[sim].max()))
                elif oth.any() and ious[oth].max() >= low:
                    entry.update(category="other", iou=float(ious[oth].max()))
                else:
                    entry.update(category="background", iou=float(ious.max()) if len(ious) else 0.0)
            ranked.append(entry)
        out[c] = ranked
        missed[c] = [(img, j) for img, g in gt.items() for j, lab in enumerate(g["labels"])
                     if lab == c and not g["difficult"][j] and not matched[img][j]]
    return out, missed


def _count(entries: list[dict]) -> dict[str, int]:
    n = {k: 0 for k in CATEGORIES}
    n["duplicate"] = 0
    for e in entries:
        if e["category"] in n:
            n[e["category"]] += 1
            n["duplicate"] += int(e.get("duplicate", False))
    return n


def _top(entries: list[dict], n: int) -> list[dict]:
    scored = [e for e in entries if e["category"] != "ignored"]
    return scored[:n]


def tide_breakdown(records, detections: list[dict], classes: Sequence[str]) -> dict:
    """TIDE's ΔAP (in AP points) per error type when ``tidecv`` is installed, else why not."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from tidecv import TIDE, Data
    except Exception as exc:  # noqa: BLE001 - an optional extra: any import failure means "absent"
        return {"available": False, "reason": f"tidecv not importable: {type(exc).__name__}: {exc}"}
    cid = {c: i for i, c in enumerate(classes)}
    iid = {r.image_id: i for i, r in enumerate(records)}
    index = record_index(records)
    gt, pred = Data("ground truth"), Data("detections")
    for r in records:
        for lab, b, diff in r.eval_objects():
            if lab not in cid:
                continue
            xywh = to_xywh(np.asarray(b, dtype=np.float64) - 1.0)  # 1-based → 0-based corner
            if diff:
                gt.add_ignore_region(iid[r.image_id], cid[lab], xywh)
            else:
                gt.add_ground_truth(iid[r.image_id], cid[lab], xywh)
    for d in detections:
        img = image_id_of(index, d["image"])
        if img in iid and d["label"] in cid:
            pred.add_detection(iid[img], cid[d["label"]], float(d["score"]), to_xywh(d["bbox"]))
    tide = TIDE()
    with contextlib.redirect_stdout(io.StringIO()):
        tide.evaluate(gt, pred, mode=TIDE.BOX, name="detections")
        errors = tide.get_all_errors()
    run = tide.runs["detections"]
    return {"available": True, "AP50": float(run.ap) / 100.0,
            "dAP": {k: float(v) / 100.0 for k, v in errors["main"]["detections"].items()},
            "dAP_special": {k: float(v) / 100.0 for k, v in errors["special"]["detections"].items()}}


def _safe(name: str) -> str:
    """The class's part of a file name: comp4's and the PR plots' (``red cell`` and ``red_cell``
    get different files, and the report finds each class's PR plot)."""
    from .voc import class_file_part

    return class_file_part(name)


def _plot_breakdowns(stats: dict, out_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}

    def stacked(ax, labels, rows):
        bottom = np.zeros(len(rows))
        for cat in CATEGORIES:
            vals = np.array([r[cat] / max(sum(r[k] for k in CATEGORIES), 1) for r in rows])
            ax.bar(labels, vals, bottom=bottom, color=COLORS[cat], label=cat, edgecolor="white", lw=0.5)
            bottom += vals
        ax.set(ylim=(0, 1), ylabel="fraction of detections")

    for c, s in stats.items():
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        keys = list(s["by_rank"])
        stacked(ax, keys, [s["by_rank"][k] for k in keys])
        ax.set(xlabel="top detections (N = %d objects)" % s["npos"], title=f"{c}: detections by type")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
        fig.tight_layout()
        paths[c] = out_dir / f"fp_{_safe(c)}.png"
        fig.savefig(paths[c], dpi=90)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.6 * len(stats) + 2.5), 3.4))
    stacked(ax, list(stats), [s["top_n"] for s in stats.values()])
    ax.set(title="top N detections of each class, by type")
    ax.tick_params(axis="x", labelrotation=45 if len(stats) > 6 else 0)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    paths["__all__"] = out_dir / "fp_all_classes.png"
    fig.savefig(paths["__all__"], dpi=90)
    plt.close(fig)
    return paths


def calibration_table(ranked: dict[str, list[dict]]) -> dict:
    """How well scores read as probabilities: the reliability of every class's detections
    together (hit = VOC's true positive; detections of difficult objects left out) and each
    class's expected calibration error. Margins (runs before 0.4) are not probabilities."""
    from ..calibration import reliability

    entries = {c: [e for e in r if e["category"] != "ignored"] for c, r in ranked.items()}
    scores = np.array([e["score"] for r in entries.values() for e in r], dtype=np.float64)
    if len(scores) and (scores.min() < 0 or scores.max() > 1):
        return {"available": False, "reason": "the scores are SVM margins, not probabilities (a run trained "
                                              "before sppdet 0.4, without score calibration)"}
    hits = np.array([e["category"] == "correct" for r in entries.values() for e in r])
    out = {"available": True, **reliability(scores, hits), "ece_by_class": {}}
    for c, r in entries.items():
        out["ece_by_class"][c] = reliability(np.array([e["score"] for e in r]),
                                             np.array([e["category"] == "correct" for e in r]))["ece"]
    return out


def _plot_reliability(cal: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(4.5, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    rows = [b for b in cal["bins"] if b["count"]]
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--", label="perfectly calibrated")
    ax.bar([b["low"] for b in rows], [b["hit_rate"] for b in rows], width=0.1, align="edge", color="#4363d8",
           edgecolor="white", label="fraction correct")
    ax.plot([b["mean_score"] for b in rows], [b["hit_rate"] for b in rows], "o", color="#e6194b", ms=4,
            label="at the bin's mean score")
    ax.set(ylim=(0, 1), ylabel="fraction correct",
           title=f"reliability (ECE {cal['ece']:.3f})" if cal["ece"] is not None else "reliability")
    ax.legend(fontsize=7, loc="upper left")
    ax2.bar([b["low"] for b in cal["bins"]], [b["count"] for b in cal["bins"]], width=0.1, align="edge",
            color="#aaa", edgecolor="white")
    ax2.set(xlim=(0, 1), xlabel="score", ylabel="detections")
    ax2.set_yscale("symlog")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _thumbnail(record, focus: np.ndarray, red: list, green: list, out_path: Path, size: int = 160) -> Path | None:
    """The region around ``focus`` with ``red`` (detections) and ``green`` (ground truth) boxes
    painted by torchvision, as a small JPEG; None when the image cannot be read."""
    import torch
    from PIL import Image
    from torchvision.utils import draw_bounding_boxes

    from ..images import ImageReadError, read_image

    try:
        img = read_image(record.path)
    except ImageReadError:
        return None
    H, W = img.shape[:2]
    x1, y1, x2, y2 = focus
    pad = max(*widths_heights(np.asarray(focus, dtype=np.float64)), 32) * 0.5
    cx1, cy1 = int(max(0, np.floor(x1 - pad))), int(max(0, np.floor(y1 - pad)))
    cx2, cy2 = int(min(W, np.ceil(x2 + pad + 1))), int(min(H, np.ceil(y2 + pad + 1)))
    crop = Image.fromarray(img[cy1:cy2, cx1:cx2])
    s = size / max(crop.size)
    crop = crop.resize((max(1, round(crop.size[0] * s)), max(1, round(crop.size[1] * s))), Image.BILINEAR)
    t = torch.from_numpy(np.array(crop)).permute(2, 0, 1)
    boxes, colors = [], []
    for group, color in ((green, "#3cb44b"), (red, "#e6194b")):
        for b in group:
            c = to_continuous(np.asarray(b, dtype=np.float64))
            boxes.append([(c[0] - cx1) * s, (c[1] - cy1) * s, (c[2] - cx1) * s, (c[3] - cy1) * s])
            colors.append(color)
    if boxes:
        bt = torch.tensor(boxes, dtype=torch.float32)
        bt[:, 0::2] = bt[:, 0::2].clamp(0, crop.size[0] - 1)
        bt[:, 1::2] = bt[:, 1::2].clamp(0, crop.size[1] - 1)
        t = draw_bounding_boxes(t, bt, colors=colors, width=2)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(t.permute(1, 2, 0).numpy()).save(out_path, quality=85)
    return out_path


def _galleries(ranked, missed, gt, classes, out_dir: Path, max_gallery: int) -> dict[str, dict[str, list]]:
    out = {}
    for c in classes:
        fps = [e for e in ranked[c] if e["category"] not in ("correct", "ignored")][:max_gallery]
        items_fp, items_miss = [], []
        for k, e in enumerate(fps):
            g = gt[e["image_id"]]
            box = np.asarray(e["bbox"], dtype=np.float64)
            near = [b for b in g["boxes"] if _iou(box, b[None])[0] > 0]
            p = _thumbnail(g["record"], box, [box], near, out_dir / _safe(c) / f"fp_{k:03d}.jpg")
            if p is not None:
                items_fp.append({"file": p.relative_to(out_dir.parent).as_posix(), "image": e["image"],
                                 "score": float(e["score"]), "category": e["category"],
                                 "iou": round(float(e["iou"]), 3)})
        # missed objects, largest first (the ones a user notices)
        miss = sorted(missed[c], key=lambda m: -float(area(gt[m[0]]["boxes"][m[1]])))
        for k, (img, j) in enumerate(miss[:max_gallery]):
            g = gt[img]
            box = g["boxes"][j]
            dets = [np.asarray(e["bbox"]) for e in ranked[c] if e["image_id"] == img and _iou(box, np.asarray(e["bbox"], dtype=np.float64)[None])[0] > 0.1][:3]
            p = _thumbnail(g["record"], box, dets, [box], out_dir / _safe(c) / f"missed_{k:03d}.jpg")
            if p is not None:
                items_miss.append({"file": p.relative_to(out_dir.parent).as_posix(), "image": g["record"].path.name,
                                   "box": [float(v) for v in box]})
        out[c] = {"false_positives": items_fp, "missed": items_miss}
    return out


def analyze(records, dets: list[dict], classes: Sequence[str], out_dir: str | Path, max_gallery: int = 12,
            metric: str = "voc07", similar: Sequence[Sequence[str]] | None = None, res: dict | None = None,
            title: str = "sppdet error analysis") -> dict:
    """Write ``analysis.json``, breakdown plots, PR curves, thumbnails and ``report.html`` into
    ``out_dir``; return what ``analysis.json`` holds.

    ``records``/``dets``/``classes`` are what :func:`~sppdet.evaluation.voc.evaluate_voc` takes
    (``res`` is its result when already computed); ``similar`` optionally groups classes that count
    as "similar" for each other (e.g. ``[["cat", "dog"], ["car", "bus"]]``).
    """
    from .plots import plot_pr_curves

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    res = res if res is not None else evaluate_voc(records, dets, classes, metric)
    ranked, missed = categorise(records, dets, classes, similar)
    gt = _gt(records, classes)
    stats = {}
    for c in classes:
        npos = int(res["npos"][c])
        by_rank = {}
        for m in RANK_MULTIPLES:
            n = max(1, int(round(m * npos))) if npos else 0
            by_rank[f"{m:g}N" if m != 1 else "N"] = _count(_top(ranked[c], n))
        stats[c] = {"npos": npos, "detections": len(ranked[c]), "top_n": by_rank["N"],
                    "all": _count(ranked[c]), "missed": len(missed[c]),
                    "ignored": sum(e["category"] == "ignored" for e in ranked[c]), "by_rank": by_rank}
    totals = {k: sum(s["top_n"][k] for s in stats.values()) for k in (*CATEGORIES, "duplicate")}
    plots = _plot_breakdowns(stats, out_dir)
    pr = plot_pr_curves(res, out_dir / "pr")
    gallery = _galleries(ranked, missed, gt, classes, out_dir / "gallery", max_gallery)
    tide = tide_breakdown(records, dets, classes)
    calibration = calibration_table(ranked)
    if calibration["available"] and calibration["detections"]:
        calibration["plot"] = _plot_reliability(calibration, out_dir / "calibration.png").name
    result = {
        "metric": res["metric"], "mAP": res["mAP"], "AP": res["AP"],
        "breakdown_rule": "each class's top N detections, N = its number of non-difficult objects",
        "thresholds": {"hit_iou_above": 0.5, "overlap_iou_at_least": 0.1},
        "similar_groups": [list(g) for g in similar or []],
        "classes": stats, "totals_top_n": totals, "tide": tide, "calibration": calibration,
        "files": {"report": "report.html", "breakdown_plots": {c: p.name for c, p in plots.items()},
                  "pr_curves": [p.relative_to(out_dir).as_posix() for p in pr], "gallery": gallery},
    }
    atomic_write_json(out_dir / "analysis.json", result)
    atomic_write(out_dir / "report.html", _html(result, res, title))
    return result


def _img(src: str, alt: str, width: int | None = None) -> str:
    w = f' width="{width}"' if width else ""
    return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}"{w} loading="lazy">'


def _html(result: dict, res: dict, title: str) -> str:
    e = html.escape
    f = result["files"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    rows = "".join(
        f"<tr><td>{e(c)}</td><td>{fmt(result['AP'][c])}</td><td>{s['npos']}</td><td>{s['detections']}</td>"
        + "".join(f"<td>{s['top_n'][k]}</td>" for k in (*CATEGORIES, "duplicate")) + f"<td>{s['missed']}</td></tr>"
        for c, s in result["classes"].items())
    head = "".join(f"<th>{k}</th>" for k in ("class", "AP", "objects", "detections", *CATEGORIES,
                                              "(duplicates)", "missed"))
    tide = result["tide"]
    if tide.get("available"):
        tide_html = ("<p>TIDE (tidecv), ΔAP50 in AP points if each error type were fixed; AP50 "
                     f"{tide['AP50'] * 100:.2f}.</p><table><tr>" + "".join(f"<th>{e(k)}</th>" for k in tide["dAP"])
                     + "".join(f"<th>{e(k)}</th>" for k in tide["dAP_special"]) + "</tr><tr>"
                     + "".join(f"<td>{v * 100:.2f}</td>" for v in tide["dAP"].values())
                     + "".join(f"<td>{v * 100:.2f}</td>" for v in tide["dAP_special"].values()) + "</tr></table>")
    else:
        tide_html = (f"<p>TIDE breakdown not computed ({e(tide.get('reason', ''))}). To add it: "
                     f"<code>{TIDE_INSTALL}</code> (not a plain <code>pip install tidecv</code>, which "
                     "replaces the OpenCV build that selective search needs).</p>")
    cal = result["calibration"]
    if not cal.get("available"):
        cal_html = f"<p>Not shown: {e(cal.get('reason', ''))}.</p>"
    elif not cal["detections"]:
        cal_html = "<p>No detections to show.</p>"
    else:
        cal_html = ("<p>Scores are calibrated probabilities that a detection is correct (Platt's sigmoid per "
                    "class, fitted on training images its SVM did not train on). Among detections scoring "
                    "about <i>p</i>, a fraction <i>p</i> should be correct (VOC true positives): expected "
                    f"calibration error <b>{cal['ece']:.3f}</b> over {cal['detections']} detections "
                    "(10 bins). Low scores are kept for AP, so most detections sit in the first bin.</p>"
                    + _img(cal["plot"], "reliability diagram") + "<table><tr><th>class</th><th>ECE</th></tr>"
                    + "".join(f"<tr><td>{e(c)}</td><td>{fmt(v)}</td></tr>" for c, v in cal["ece_by_class"].items())
                    + "</table>")
    per_class = []
    pr_by_name = {Path(p).stem: p for p in f["pr_curves"]}
    for c in result["classes"]:
        g = f["gallery"][c]
        fps = "".join(f'<figure>{_img(it["file"], "false positive")}<figcaption>{e(it["category"])} '
                      f'{it["score"]:.2f}<br>{e(it["image"])}</figcaption></figure>' for it in g["false_positives"])
        miss = "".join(f'<figure>{_img(it["file"], "missed object")}<figcaption>{e(it["image"])}</figcaption></figure>'
                       for it in g["missed"])
        pr = pr_by_name.get(f"pr_{_safe(c)}")
        per_class.append(
            f'<h2 id="{e(_safe(c))}">{e(c)}</h2><div class="plots">'
            + (_img(pr, f"PR curve {c}") if pr else "")
            + _img(f["breakdown_plots"][c], f"detections of {c} by type") + "</div>"
            + f"<h3>Highest-scoring false positives</h3><div class='gallery'>{fps or '<p>none</p>'}</div>"
            + "<p class='note'>red: the detection; green: ground truth it overlaps.</p>"
            + f"<h3>Missed objects (never detected at IoU &gt; 0.5), largest first</h3>"
              f"<div class='gallery'>{miss or '<p>none</p>'}</div>"
            + "<p class='note'>green: the missed object; red: detections of the class that overlap it.</p>")
    m = result["mAP"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; max-width: 1200px; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td:first-child {{ text-align: left; }}
.gallery {{ display: flex; flex-wrap: wrap; gap: 6px; }} figure {{ margin: 0; font-size: 11px; width: 164px; }}
.plots img {{ margin-right: 8px; vertical-align: top; }} .note {{ color: #666; font-size: 12px; }}
</style></head><body>
<h1>{e(title)}</h1>
<p>{e(result['metric'])} mAP <b>{fmt(m)}</b>. Detection types as in Hoiem et al. (2012), counted over each class's
top N detections, N = its number of objects (difficult objects excluded): <i>correct</i> (IoU &gt; 0.5 with an
object not yet matched), <i>localisation</i> (IoU 0.1&ndash;0.5 with an object of the class, or a duplicate),
<i>similar</i> (IoU &ge; 0.1 with an object of a similar class{", groups: " + e(str(result['similar_groups'])) if result['similar_groups'] else ": no groups given, so none"}),
<i>other</i> (IoU &ge; 0.1 with an object of another class), <i>background</i> (IoU &lt; 0.1 with every object).</p>
<table><tr>{head}</tr>{rows}</table>
<pre>{e(format_table(res))}</pre>
<h2>All classes</h2>{_img(f['breakdown_plots']['__all__'], 'breakdown of all classes')}
<h2>TIDE</h2>{tide_html}
<h2>Score calibration</h2>{cal_html}
{''.join(per_class)}
<p class="note">Written by sppdet; <code>analysis.json</code> holds every number shown here.</p>
</body></html>
"""

