"""Test oracle: the py-faster-rcnn voc_eval.py procedure restated as plain loops.

It reads what the reference reads (VOC XML annotations, an image-set file, a comp4 detection
file) so that the library's in-memory evaluation is checked against files on disk.
"""
import xml.etree.ElementTree as ET

import numpy as np


def oracle_ap(rec, prec, use_07):
    if use_07:
        total = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            if np.sum(rec >= t) == 0:
                p = 0
            else:
                p = np.max(prec[rec >= t])
            total = total + p / 11.0
        return total
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1])


def oracle_voc_eval(detfile, annopath, imagesetfile, classname, ovthresh=0.5, use_07=True):
    with open(imagesetfile) as f:
        names = [x.strip() for x in f.readlines()]
    recs = {}
    for name in names:
        objs = []
        for obj in ET.parse(annopath.format(name)).findall("object"):
            bb = obj.find("bndbox")
            objs.append({"name": obj.find("name").text,
                         "difficult": int(obj.find("difficult").text),
                         "bbox": [float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]})
        recs[name] = objs
    class_recs, npos = {}, 0
    for name in names:
        R = [o for o in recs[name] if o["name"] == classname]
        bbox = np.array([o["bbox"] for o in R])
        difficult = np.array([o["difficult"] for o in R]).astype(bool)
        npos += int(sum(~difficult))
        class_recs[name] = {"bbox": bbox, "difficult": difficult, "det": [False] * len(R)}
    with open(detfile) as f:
        lines = [x.strip().split(" ") for x in f.readlines()]
    image_ids = [x[0] for x in lines]
    confidence = np.array([float(x[1]) for x in lines])
    BB = np.array([[float(z) for z in x[2:]] for x in lines])
    nd = len(image_ids)
    tp, fp = np.zeros(nd), np.zeros(nd)
    if nd > 0:
        sorted_ind = np.argsort(-confidence)
        BB = BB[sorted_ind, :]
        image_ids = [image_ids[x] for x in sorted_ind]
        for d in range(nd):
            R = class_recs[image_ids[d]]
            bb = BB[d, :].astype(float)
            ovmax = -np.inf
            BBGT = R["bbox"].astype(float)
            if BBGT.size > 0:
                ixmin = np.maximum(BBGT[:, 0], bb[0]); iymin = np.maximum(BBGT[:, 1], bb[1])
                ixmax = np.minimum(BBGT[:, 2], bb[2]); iymax = np.minimum(BBGT[:, 3], bb[3])
                iw = np.maximum(ixmax - ixmin + 1.0, 0.0); ih = np.maximum(iymax - iymin + 1.0, 0.0)
                inters = iw * ih
                uni = ((bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                       + (BBGT[:, 2] - BBGT[:, 0] + 1.0) * (BBGT[:, 3] - BBGT[:, 1] + 1.0) - inters)
                overlaps = inters / uni
                ovmax = np.max(overlaps)
                jmax = np.argmax(overlaps)
            if ovmax > ovthresh:
                if not R["difficult"][jmax]:
                    if not R["det"][jmax]:
                        tp[d] = 1.0
                        R["det"][jmax] = 1
                    else:
                        fp[d] = 1.0
            else:
                fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return rec, prec, oracle_ap(rec, prec, use_07), npos
