"""Detection over many images: a split (:func:`run_detection`, for evaluation, from the caches
when given) and image files (:func:`detect_images`, proposals pipelined in an executor's workers).

Both score on one thread on a CPU, as the cache's maps were computed, so that ``eval`` and
``detect`` give the same detections for any ``--workers``.
"""
from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Iterator, Sequence

from .images import ImageReadError
from .progress import progress
from .runtime import single_threaded

if TYPE_CHECKING:
    from .cache import CachedData
    from .datasets.common import ImageRecord, LoadReport
    from .detector import Detector
    from .parallel import Executor
    from .tiling import Tiling


def run_detection(det: Detector, records: Sequence[ImageRecord], data: CachedData | None,
                  report: LoadReport, desc: str = "detect") -> list[dict]:
    """Detections (``{"image", "label", "score", "bbox", "margin"}``) for each record, using caches
    when given. AP needs the low scores too: a calibrated run keeps every window above the
    margin floor, whatever ``test.score_thresh`` says (a run before 0.4 keeps its threshold).

    On a CPU the scoring runs on one thread, as ``detect`` does beside its workers: the fc and
    SVM products differ in the last bit between thread counts, and eval and detect must agree.
    """
    out = []
    floor = 0.0 if det.calibrated else None
    with single_threaded() if det.device.type == "cpu" else contextlib.nullcontext():
        for r in progress(records, desc=desc + (" (cached maps)" if data is not None else ""), unit="img"):
            try:
                if data is not None:
                    maps = data.maps(r)
                    props = data.proposals_for(r, maps)
                    d = det.detect_maps(maps, props, r.width, r.height, threshold=floor)
                else:
                    d = det.detect(r.read(), threshold=floor)
            except ImageReadError as exc:
                report.add("image that cannot be decoded (skipped)", str(exc))
                continue
            out += d.to_list(r.path.name)
    return out


def proposal_task(shared: tuple, path) -> dict:
    """Decode one image and compute its windows with a pixel-based proposal method, for
    ``detect`` to pipeline: ``executor.map(proposal_task, paths, shared=(proposer,
    exif_transpose, tiling))`` yields, in order, ``{"path", "image", "boxes", "seconds",
    "decode_seconds"}`` (``seconds``: the proposals alone; ``boxes`` None when ``proposer`` is
    None: a method that reads the conv maps proposes in the driver; with a ``tiling``, a list
    of windows per pass of :meth:`sppdet.tiling.Tiling.passes`), or ``{"path", "error"}``
    for an unreadable file, while the driver runs the conv, SPP and the SVMs on the images before it."""
    from .images import ImageReadError, read_image

    proposer, exif_transpose, tiling = shared if len(shared) == 3 else (*shared, None)
    t0 = time.perf_counter()
    try:
        image = read_image(path, exif_transpose=exif_transpose)
    except ImageReadError as exc:
        return {"path": path, "error": str(exc)}
    t1 = time.perf_counter()
    boxes = None
    if proposer is not None:
        with single_threaded():
            if tiling is None:
                boxes = proposer.propose(str(path), lambda: image)
            else:
                from .tiling import crop

                h, w = image.shape[:2]
                boxes = [proposer.propose(f"{path}#{win}", lambda win=win: crop(image, win), None,
                                          (win[2] - win[0], win[3] - win[1])) for win in tiling.passes(w, h)]
    return {"path": path, "image": image, "boxes": boxes, "seconds": time.perf_counter() - t1,
            "decode_seconds": t1 - t0}


def detect_images(det, paths: Sequence, executor: Executor, desc: str = "detect",
                  exif_transpose: bool = True, threshold=None, tiling: Tiling | None = None) -> Iterator[dict]:
    """Detections for each image file, proposals in the executor's workers and the detector
    (conv, SPP, fc, SVMs, box regression) in this process, overlapped. ``threshold``: see
    :meth:`Detector.thresholds`; ``tiling``: detect on tiles and the whole image, merged
    (:func:`sppdet.tiling.detect_tiled`), each tile's windows proposed in the workers.

    Yields, in input order, ``{"path", "image", "detections"}`` or ``{"path", "error"}``.
    On a CPU the detector runs on one thread: the workers have the other cores, and the fc
    and SVM products differ in the last bit between thread counts, so this keeps the result
    the same for any ``--workers`` (and the conv the same as the cache's maps).
    """
    from .tiling import detect_tiled

    proposer = det.proposer  # the same one Detector.detect uses (warns once for external proposals)
    shared = (None if proposer.needs_maps else proposer, exif_transpose, tiling)
    thr = det.thresholds(threshold)
    for res in executor.map(proposal_task, paths, desc=desc, unit="img", shared=shared):
        if "error" in res:
            yield res
            continue
        image = res["image"]
        with single_threaded() if det.device.type == "cpu" else contextlib.nullcontext():
            if tiling is not None:
                d = detect_tiled(det, image, tiling, thr, proposals=res["boxes"])
            else:
                d = det.detect(image, res["boxes"], threshold=thr)  # the network proposes here when boxes is None
            if res["boxes"] is not None:
                d.timings["proposals"] = res["seconds"]
        yield {"path": res["path"], "image": image, "detections": d}
