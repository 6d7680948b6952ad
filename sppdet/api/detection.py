"""``sppdet detect``: images, folders, videos and streams through a run, resumable via the journal."""
from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..config import TEST_TIME_KEYS, override_config
from ..arguments import (BOOL, DEVICE, ENGINE, INPUTS, NUMBER, OVERRIDES, PATH, RAY, RUN, SOURCES, THRESHOLD, WORKERS, checked, whole)
from ..errors import UserError

from .setup import UserInterrupt, _out_dir, _tidy_outs, is_detector, load, make_executor

log = logging.getLogger("sppdet")


# -- detection over files --------------------------------------------------------------------
@checked(run=RUN, inputs=INPUTS, out=PATH, threshold=THRESHOLD.or_none(), paint=BOOL, exif_transpose=BOOL,
         device=DEVICE.or_none(), overwrite=BOOL, workers=WORKERS.or_none(), ray=RAY.or_none(), overrides=OVERRIDES,
         tile=whole(1).named("tile (--tile)").or_none(), overlap=NUMBER.named("overlap (--overlap)").or_none(),
         every=whole(1).named("every (--every)"),
         max_frames=whole(1).named("max_frames (--max-frames)").or_none(), sources=SOURCES, engine=ENGINE.or_none())
@_tidy_outs
def detect(run, inputs: Sequence[str | Path] | str | Path, out: str | Path, *,
           threshold: float | dict[str, float] | None = None, paint: bool = True, exif_transpose: bool = True,
           device: str | None = None, overwrite: bool = False, workers: int | None = None, ray: str | None = None,
           overrides: Sequence[str] = (), tile: int | None = None, overlap: float | None = None, every: int = 1,
           max_frames: int | None = None, sources: Sequence[str | int] = (), engine: str | None = None) -> dict:
    """Detect objects in image files, videos, folders of them and ``.txt`` lists of paths, and
    in ``sources`` (camera indices such as ``0``, or stream URLs and paths OpenCV opens).

    ``run``: a run folder, an exported ``model.onnx``, or a loaded detector; ``engine`` as
    :func:`load` takes it (``"onnxruntime"`` runs a run folder's graph, exported in memory).

    Image results are appended to ``out/detections.jsonl`` image by image (so an interruption
    keeps every finished image, and running the same call again continues where it stopped);
    at the end ``out/detections.json`` (a list of ``{"image", "label", "score", "bbox"}``,
    ``image`` being the path as given) is written atomically. Painted images keep each input's
    path relative to the inputs' common folder, so equal file names never collide.

    A video ``clip.mp4`` gives ``clip_det.jsonl`` (one JSON line per detected frame: ``frame``,
    ``time`` in seconds, ``boxes``, ``scores``, ``labels``) and, with ``paint``, the annotated
    ``clip_det.mp4``; ``every``: detect every N-th frame; ``max_frames``: at most that many
    detected frames per video or stream. A finished video is not detected again; one that was
    interrupted is detected again from its start (what it had written stays valid until then).
    Streams' outputs are named after the source and the time they started (never replaced).

    ``threshold``: a number, or per class (``{"RBC": 0.4, "WBC": 0.2}``, the classes not named
    keeping the run's ``test.score_thresh``, or the dict's ``"*"``). ``tile``: detect on
    overlapping ``tile``-pixel tiles (``overlap`` of a tile, default 0.25) and the whole image, merged
    (:mod:`sppdet.tiling`), for images much larger than the training scale.

    Returns ``{"images", "detections", "skipped": [messages], "out", "videos": [summaries],
    "frames"}``.
    """
    from ..inputs import expand_inputs
    from ..locking import folder_lock
    from ..video import VIDEO_EXTENSIONS, is_video_file, parse_source

    det = run if is_detector(run) else load(run, device=device, engine=engine)
    sources = [parse_source(str(s)) for s in sources]
    per_class, default = {}, threshold
    if isinstance(threshold, dict):  # per class; "*": the default for the classes not named
        per_class = dict(threshold)
        default = per_class.pop("*", None)
    if default is not None:
        if any(o.split("=", 1)[0].strip() == "test.score_thresh" for o in overrides):
            raise UserError("give the score threshold once: threshold (--threshold) or the override "
                            "test.score_thresh, not both")
    extra = list(overrides) + ([f"test.score_thresh={float(default)!r}"] if default is not None else [])
    if extra:
        det = copy.copy(det)
        det.cfg = override_config(det.cfg, extra, allowed=TEST_TIME_KEYS)
    thresholds = det.thresholds(per_class or None)  # names and ranges checked before any work
    if overlap is not None and tile is None:
        raise UserError("overlap (--overlap) only applies to tiles: add tile (--tile SIZE), or leave it out")
    tiling = det.tiling(tile, 0.25 if overlap is None else overlap)
    out = _out_dir(out, "--out")
    paths, skipped = expand_inputs(inputs, videos=True)
    if not paths and not sources:
        raise UserError("no input images or videos found" + (":\n  " + "\n  ".join(skipped) if skipped else
                                                             f" (videos: {', '.join(VIDEO_EXTENSIONS)})"))
    videos = [p for p in paths if is_video_file(p)]
    images = [p for p in paths if not is_video_file(p)]
    log.info(f"detecting in {len(images)} images" + (f", {len(videos)} videos" if videos else "")
             + (f", {len(sources)} streams" if sources else "")
             + (f" from {', '.join(map(str, inputs[:3]))}" if inputs else "")
             + (f" and {len(inputs) - 3} more inputs" if len(inputs) > 3 else "")
             + (f", on {tiling.size}-px tiles overlapping by {tiling.overlap:g}" if tiling else ""))
    with folder_lock(out, "--out"):
        return _detect_locked(det, paths, skipped, out, paint, exif_transpose, overwrite, workers, ray,
                              DetectMedia(thresholds, per_class, tiling, every, max_frames, sources))


@dataclass
class DetectMedia:
    """What :func:`detect` does beyond one pass over each image: per-class thresholds, tiles,
    videos' frame step and cap, streams."""

    thresholds: Any  # [C] numpy vector
    per_class: dict
    tiling: Any = None
    every: int = 1
    max_frames: int | None = None
    sources: list = field(default_factory=list)


def _detect_locked(det, paths: list[Path], skipped: list[str], out: Path, paint: bool, exif_transpose: bool,
                   overwrite: bool, workers, ray, media: DetectMedia) -> dict:
    import numpy as np

    from ..fileio import atomic_write_json, describe_os_error
    from ..images import ImageReadError, read_image
    from ..inputs import output_names
    from ..journal import DetectJournal, content_key, model_digest
    from ..locking import check_plain_file
    from ..detection import detect_images
    from ..video import VideoJob, VideoReadError, is_video_file, source_name
    from ..viz import paint as paint_image

    check_plain_file(out / "detections.json", "--out")
    videos = [p for p in paths if is_video_file(p)]
    images = [p for p in paths if not is_video_file(p)]
    names = output_names(paths)
    video_names = output_names(paths, "_det.mp4")
    line_names = output_names(paths, "_det.jsonl")
    cfg = det.cfg.to_dict()
    cfg.pop("device", None)  # the device changes no result
    cfg.get("backbone", {}).pop("weights", None)  # a path: the model digest covers the weights' sha256
    identity = {"model": model_digest(det), "config": cfg, "exif_transpose": exif_transpose}
    if media.per_class:  # only then: the journals of a plain detect stay those of earlier versions
        identity["class_thresholds"] = {c: float(t) for c, t in zip(det.classes, media.thresholds)
                                        if c in media.per_class}
    if media.tiling is not None:
        identity["tile"] = media.tiling.identity()
    journal = DetectJournal(out / "detections.jsonl", identity, det.classes, overwrite,
                            min_score=dict(zip(det.classes, media.thresholds.tolist())),
                            # tiles: the cap holds per pass, not per image
                            max_rows=det.cfg.test.max_per_image if media.tiling is None else 1 << 62)
    keys = {p: content_key(p) for p in paths}
    todo = [p for p in images if journal.result(str(p), keys[p]) is None]
    video_settings = {"every": media.every, "max_frames": media.max_frames}

    def video_done(p: Path) -> bool:
        e = journal.result(str(p), keys[p])
        if e is None or e["error"] is not None:
            return e is not None  # an unreadable video stays skipped until its file changes
        v = e.get("video") or {}
        return ({k: v.get(k) for k in video_settings} == video_settings and (out / line_names[p]).is_file()
                and (not paint or (e["painted"] == str(video_names[p]) and (out / video_names[p]).is_file())))

    todo_videos = [p for p in videos if not video_done(p)]
    if len(todo) + len(todo_videos) < len(paths):
        log.info(f"{len(paths) - len(todo) - len(todo_videos)} of {len(paths)} inputs already done in "
                 f"{journal.path}; continuing")

    def target(rel: Path, direct: bool = False) -> Path:
        """``out / rel``, its folder made; never through a link out of --out, nor, for a file
        written in place (``direct``: a video grows frame by frame), onto a link."""
        t = out / rel
        t.parent.mkdir(parents=True, exist_ok=True)
        if not Path(os.path.realpath(t.parent)).is_relative_to(os.path.realpath(out)):
            raise UserError(f"{t.parent} is a link out of --out {out}; sppdet does not write through "
                            "links: remove it or choose another --out")
        if direct:
            check_plain_file(t, "--out")
        return t

    def painted(p: Path, rows: list[dict], image=None) -> str | None:
        if not paint:
            return None
        target(names[p])
        if image is None:
            image = read_image(p, exif_transpose=exif_transpose)
        paint_image(image, np.array([r["bbox"] for r in rows]).reshape(-1, 4), [r["label"] for r in rows],
                    np.array([r["score"] for r in rows]), det.classes, out / names[p])
        return str(names[p])

    current: list[VideoJob] = []  # the video being detected, for the messages

    def kept() -> str:
        n = sum(journal.result(str(p), keys[p]) is not None for p in paths)
        what = "images and videos" if videos and images else "videos" if videos else "images"
        text = f"{n} of {len(paths)} {what} are done and kept in {journal.path}" if paths else "no files given"
        if current and not current[-1].finished:
            job = current[-1]
            text += (f"; {job.source}: the {job.frames_detected} frames detected so far are in {job.jsonl} (one "
                     "valid JSON line each)" + (f" and {job.video} (playable)" if job.video and job.frames_detected
                                                else "")
                     + (", and it is detected again from its start" if isinstance(job.source, Path) else ""))
        return text

    jobs: list[VideoJob] = []
    try:
        # a rerun with painting paints what an earlier run (--no-images, or interrupted) did not
        for p in images:
            e = journal.result(str(p), keys[p])
            if paint and e is not None and e["error"] is None and not (
                    e["painted"] == str(names[p]) and (out / names[p]).is_file()):
                try:
                    journal.add(str(p), keys[p], e["detections"], None, painted(p, e["detections"]))
                except ImageReadError:
                    todo.append(p)
        with make_executor(workers, ray) as ex:
            # proposals in the workers while this process runs the detector on the images before
            for res in detect_images(det, todo, ex, exif_transpose=exif_transpose, threshold=media.thresholds,
                                     tiling=media.tiling):
                p = res["path"]
                if "error" in res:
                    journal.add(str(p), keys[p], [], res["error"])
                    continue
                d = res["detections"]
                d.path = str(p)
                rows = d.to_list()
                journal.add(str(p), keys[p], rows, None, painted(p, rows, res["image"]))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        streams = [(s, Path(f"{source_name(s)}_{stamp}_det.jsonl"), Path(f"{source_name(s)}_{stamp}_det.mp4"))
                   for s in media.sources]
        for src, lines, video in [(p, line_names[p], video_names[p]) for p in todo_videos] + streams:
            job = VideoJob(det, src, target(lines, direct=True), target(video, direct=True) if paint else None,
                           media.every, media.max_frames, media.thresholds, media.tiling)
            current.append(job)
            try:
                job.run()
            except VideoReadError as exc:
                if isinstance(src, Path):
                    journal.add(str(src), keys[src], [], str(exc))
                else:
                    skipped.append(str(exc))
                continue
            for w in job.warnings:
                log.warning(w)
            jobs.append(job)
            if isinstance(src, Path):
                journal.add(str(src), keys[src], [], None, str(video_names[src]) if paint else None,
                            video={**video_settings, **job.summary(), "jsonl": str(line_names[src])})
    except KeyboardInterrupt:
        raise UserInterrupt(f"{kept()}; run the same command again to continue") from None
    except OSError as exc:
        raise UserError(f"cannot write to {out}: {describe_os_error(exc)}; {kept()}: free some space and "
                        "run the same command again to continue") from None
    finally:
        journal.close()
    entries = [journal.result(str(p), keys[p]) for p in images]
    rows = [row for e in entries if e is not None for row in e["detections"]]
    # unreadable images and videos, of this run and of the runs it continues (the journal keeps their errors)
    skipped += [e["error"] for e in entries + [journal.result(str(p), keys[p]) for p in videos]
                if e is not None and e["error"]]
    try:
        atomic_write_json(out / "detections.json", rows, indent=1)
    except OSError as exc:
        raise UserError(f"cannot write {out / 'detections.json'}: {describe_os_error(exc)}; every image is "
                        f"done and kept in {journal.path}: free some space and run the same command again") from None
    summaries = []
    for p in videos:  # finished now or before
        e = journal.result(str(p), keys[p])
        if e is not None and e["error"] is None and e.get("video"):
            summaries.append({**e["video"], "source": str(p), "jsonl": str(out / line_names[p]),
                              "video": str(out / video_names[p]) if e["painted"] else None})
    summaries += [j.summary() for j in jobs if not isinstance(j.source, Path)]
    return {"images": len(images), "detections": len(rows), "skipped": skipped, "out": str(out),
            "videos": summaries, "frames": sum(v["frames_detected"] for v in summaries)}
