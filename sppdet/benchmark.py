"""Side-by-side timing of R-CNN, SPP-net 1-scale and SPP-net 5-scale on the same images and
proposals, with the same trunk, fc head, SVMs and box regression; stage by stage."""
from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .backbones import build_trunk
from .bbox_regression import BoxRegressor
from .config import Config
from .errors import UserError
from .detector import Detector
from .features import FeatureExtractor
from .heads import FCHead
from .fileio import atomic_write, atomic_write_json
from .images import ImageReadError
from .progress import progress
from .detection import proposal_task
from .parallel import Executor, SerialExecutor
from .proposals import SelectiveSearch
from .rcnn import RCNNExtractor

log = logging.getLogger(__name__)
STAGES = ["proposals", "conv", "pooling", "fc", "svm", "bbox_nms", "graph"]  # graph: onnxruntime's one step
FIVE_SCALES = [480, 576, 688, 864, 1200]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _random_detector(cfg: Config, classes: Sequence[str], extractor, seed: int) -> Detector:
    """A detector with random head/SVM/regressor weights of the trained shapes, so a bench needs
    no trained run. The conv, pooling, fc and SVM times do not depend on the values; box
    regression and NMS do (they see only windows above ``test.score_thresh``), so the SVM
    biases put every window below it: those stages are then not timed, where a random
    detector would pass all windows × classes and cost far more than a trained one (BCCD:
    0.4 s against 3 ms per image). ``--run`` times them with a trained detector."""
    g = torch.Generator().manual_seed(seed)
    head = FCHead(extractor.dim, cfg.finetune.hidden, len(classes)) if cfg.finetune.enabled else None
    dim = cfg.finetune.hidden if head is not None else extractor.dim
    W = (torch.randn(dim, len(classes), generator=g) * 0.01).numpy()
    bbox = BoxRegressor(len(classes), extractor.dim)
    bbox.trained[:] = True
    b = np.full(len(classes), -1e6)  # below any threshold: no window reaches box regression / NMS
    return Detector(cfg, classes, extractor, head, W, b, 1.0, bbox, 1.0)


def conv_pixels(extractor, height: int, width: int, n_windows: int) -> int:
    """Input pixels the trunk convolves for one image: every window's warp for R-CNN, every
    scale of the pyramid for SPP-net. On a CPU, conv time is close to proportional to it."""
    return extractor.conv_pixels(height, width, n_windows)


def time_method(det: Detector, images: list[np.ndarray], proposals: list[np.ndarray],
                proposal_times: list[float], desc: str) -> dict:
    """``proposals[i] is None``: the detector's own method proposes from the conv maps it has
    just computed (the proposal network), timed as "proposals"."""
    device = det.extractor.device
    per_image, windows = [], []
    warm = det.extractor.compute(images[0])  # warm-up
    p0 = proposals[0] if proposals[0] is not None else det.propose(images[0], warm, *images[0].shape[1::-1])
    det.detect_maps(warm, p0[:64], *images[0].shape[1::-1])
    for img, props, tp in progress(list(zip(images, proposals, proposal_times)), desc=desc, unit="img"):
        t = {"proposals": tp}
        _sync(device)
        t0 = time.perf_counter()
        maps = det.extractor.compute(img)
        _sync(device)
        t["conv"] = time.perf_counter() - t0
        if props is None:
            t0 = time.perf_counter()
            props = det.propose(img, maps, img.shape[1], img.shape[0])
            t["proposals"] = time.perf_counter() - t0
        windows.append(len(props))
        det.detect_maps(maps, props, img.shape[1], img.shape[0], t)
        inner = det.extractor.pool_stages()  # R-CNN: its convs happen inside "pooling"
        if inner:
            t["pooling"] = 0.0
            for stage, seconds in inner.items():
                t[stage] += seconds
        per_image.append({k: t.get(k, 0.0) for k in STAGES})
    totals = [sum(v for k, v in t.items() if k != "proposals") for t in per_image]
    stats = {"seconds_per_image": {k: statistics.median(t[k] for t in per_image) for k in STAGES}}
    stats["seconds_per_image"]["total"] = statistics.median(totals)
    stats["seconds_per_image"]["total_with_proposals"] = statistics.median(
        tot + t["proposals"] for tot, t in zip(totals, per_image))
    stats["total_min_median_max"] = [min(totals), statistics.median(totals), max(totals)]
    stats["windows_per_image"] = statistics.median(windows)
    stats["conv_pixels_per_image"] = statistics.median(
        conv_pixels(det.extractor, img.shape[0], img.shape[1], n) for img, n in zip(images, windows))
    return stats


def time_engine(det, images: list[np.ndarray], proposals: list[np.ndarray | None],
                proposal_times: list[float], desc: str) -> dict:
    """:func:`time_method` for the onnxruntime engine (:class:`sppdet.onnx_engine.OnnxDetector`):
    per image the resize and the one graph ("graph"; a proposal network runs inside it), the
    selective-search windows given as the torch rows get them."""
    det.detect(images[0], proposals[0])  # warm-up
    per_image = []
    for img, props, tp in progress(list(zip(images, proposals, proposal_times)), desc=desc, unit="img"):
        r = det.detect(img, props)
        t = dict.fromkeys(STAGES, 0.0)
        t.update(proposals=tp, graph=r.timings["resize"] + r.timings["graph"])
        per_image.append(t)
    totals = [t["graph"] for t in per_image]
    stats = {"seconds_per_image": {k: statistics.median(t[k] for t in per_image) for k in STAGES}}
    stats["seconds_per_image"]["total"] = statistics.median(totals)
    stats["seconds_per_image"]["total_with_proposals"] = statistics.median(
        tot + t["proposals"] for tot, t in zip(totals, per_image))
    stats["total_min_median_max"] = [min(totals), statistics.median(totals), max(totals)]
    return stats


def _onnx_engine(run: Detector):
    """The run's graph on onnxruntime for bench's row, or why there is none (a line)."""
    try:
        from .onnx_engine import from_detector
        from .onnx_export import check_exportable, require_onnx

        require_onnx()
        check_exportable(run)
    except UserError as exc:
        return str(exc)
    return from_detector(run)


def run_bench(cfg: Config, image_paths: Sequence[Path], device: torch.device, out_dir: Path,
              run: Detector | None = None, rcnn_images: int | None = None, seed: int = 0,
              executor: Executor | None = None, exif_transpose: bool = False) -> dict:
    """Time the three methods on the same images and proposals; writes bench.json/.md/.png.
    ``exif_transpose``: read the images turned by their EXIF orientation (as the data set's
    records are, ``data.exif_transpose``).

    The proposals are computed by ``executor``'s workers (default: in this process); each
    image's selective-search time is measured where it ran, on one thread.
    """
    images, proposals, ptimes = [], [], []
    for res in (executor or SerialExecutor()).map(proposal_task, image_paths, desc="proposals", unit="img",
                                                  shared=(SelectiveSearch(cfg.proposals), exif_transpose)):
        if "error" in res:
            raise ImageReadError(res["error"])
        images.append(res["image"])
        proposals.append(res["boxes"])
        ptimes.append(res["seconds"])
    trunk = run.extractor.trunk if run is not None else build_trunk(cfg.backbone.name, cfg.backbone.weights)
    classes = run.classes if run is not None else [f"class{i}" for i in range(20)]
    f = cfg.features

    def make(extractor):
        if run is not None:
            extractor.channels_last = run.extractor.channels_last
            return Detector(cfg, classes, extractor, run.head, run.svm_W.numpy(), run.svm_b.numpy(),
                            run.feat_scale, run.bbox, run.pool5_scale, platt=run.platt)
        return _random_detector(cfg, classes, extractor, seed)

    methods = {
        "rcnn": make(RCNNExtractor(trunk, f.levels, device)),
        "spp-1scale": make(FeatureExtractor(trunk, [688], f.max_size, f.levels, device)),
        "spp-5scale": make(FeatureExtractor(trunk, FIVE_SCALES, f.max_size, f.levels, device)),
    }
    own_name = None
    if run is not None and run.cfg.method == "spp":  # the run as trained (its network proposes, if it has one)
        own_name = f"spp-{len(run.extractor.scales)}scale-{run.cfg.proposals.method}"
        methods[own_name] = run
    n_r = len(images) if rcnn_images is None else max(1, min(rcnn_images, len(images)))
    result = {"images": [str(p) for p in image_paths], "device": str(device),
              "threads": torch.get_num_threads(), "methods": {}}
    for name, det in methods.items():
        k = n_r if name == "rcnn" else len(images)
        own = det is run and run.proposer.needs_maps  # its network proposes from the maps
        result["methods"][name] = time_method(det, images[:k], [None] * k if own else proposals[:k],
                                              [0.0] * k if own else ptimes[:k], name)
        result["methods"][name]["images_timed"] = k
        result["methods"][name]["proposals"] = (f"{det.cfg.proposals.method} on the conv map" if own else
                                                f"selective search ({cfg.proposals.mode})")
    if own_name is not None:  # the same run on onnxruntime: same images, windows and threads
        engine = _onnx_engine(run)
        if isinstance(engine, str):
            result["onnxruntime"] = f"no onnxruntime row: {engine}"
            log.info(f"bench: {result['onnxruntime']}")
        else:
            own = run.proposer.needs_maps
            k = len(images)
            row = time_engine(engine, images, [None] * k if own else proposals, [0.0] * k if own else ptimes,
                              "onnxruntime")
            row.update(images_timed=k, proposals=result["methods"][own_name]["proposals"],
                       windows_per_image=result["methods"][own_name]["windows_per_image"],
                       conv_pixels_per_image=result["methods"][own_name]["conv_pixels_per_image"])
            result["methods"]["onnxruntime"] = row
            ts, to = (result["methods"][n]["seconds_per_image"]["total_with_proposals"] for n in (own_name, "onnxruntime"))
            result["onnxruntime"] = {"vs": own_name, "threads": engine.threads, "speedup_all_in": ts / to}
    r = result["methods"]["rcnn"]["seconds_per_image"]["total"]
    result["speedup_vs_rcnn"] = {m: r / result["methods"][m]["seconds_per_image"]["total"]
                                 for m in result["methods"] if m != "rcnn"}
    # all in: what a user waits for per image, proposals included (R-CNN and SPP-net with
    # selective search, SPP-net with its proposal network)
    ra = result["methods"]["rcnn"]["seconds_per_image"]["total_with_proposals"]
    result["speedup_all_in_vs_rcnn"] = {m: ra / result["methods"][m]["seconds_per_image"]["total_with_proposals"]
                                        for m in result["methods"] if m != "rcnn"}
    # What the speedup would be if each method's time were its conv pixels alone (per-pixel conv
    # cost equal): near the ceiling on a CPU, where conv dominates and costs the same per pixel.
    rp = result["methods"]["rcnn"]["conv_pixels_per_image"]
    result["conv_pixel_ratio"] = {m: rp / result["methods"][m]["conv_pixels_per_image"]
                                  for m in result["methods"] if m != "rcnn"}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "bench.json", result)
    atomic_write(out_dir / "bench.md", markdown_table(result))
    plot_bench(result, out_dir / "bench.png")
    return result


def markdown_table(result: dict) -> str:
    cols = STAGES + ["total"]
    lines = ["| method | " + " | ".join(cols) + " | speedup vs R-CNN (excl. proposals) "
             "| conv pixels (M) | pixel ratio |",
             "|---" * (len(cols) + 4) + "|"]
    for name, m in result["methods"].items():
        s = m["seconds_per_image"]
        sp = result["speedup_vs_rcnn"].get(name)
        px = result["conv_pixel_ratio"].get(name)
        lines.append(f"| {name} | " + " | ".join(f"{s[c]:.3f}" for c in cols)
                     + f" | {'1.0×' if sp is None else f'{sp:.1f}×'}"
                     + f" | {m['conv_pixels_per_image'] / 1e6:.2f} | {'1.0×' if px is None else f'{px:.1f}×'} |")
    noise = "; ".join(f"{n}: {m['total_min_median_max'][0]:.3f}/{m['total_min_median_max'][1]:.3f}/"
                      f"{m['total_min_median_max'][2]:.3f}" for n, m in result["methods"].items())
    lines.append("")
    lines.append(f"Median seconds per image on {result['device']} ({result['threads']} threads); "
                 f"total excludes proposals, as in the paper. min/median/max total: {noise}. "
                 f"Windows per image (median): {result['methods']['spp-1scale']['windows_per_image']:g}. "
                 "Pixel ratio: R-CNN's conv input pixels over the method's, the speedup if conv "
                 "cost the same per pixel and nothing else cost anything.")
    lines += ["", "All in (proposals included), seconds per image:", "",
              "| method | proposals | proposals s | total s | speedup vs R-CNN + selective search |", "|---|---|---|---|---|"]
    for name, m in result["methods"].items():
        s = m["seconds_per_image"]
        sp = result.get("speedup_all_in_vs_rcnn", {}).get(name)
        lines.append(f"| {name} | {m.get('proposals', '')} | {s['proposals']:.3f} | {s['total_with_proposals']:.3f} | "
                     f"{'1.0×' if sp is None else f'{sp:.1f}×'} |")
    onnx = result.get("onnxruntime")
    if isinstance(onnx, dict):
        lines += ["", f"onnxruntime ({onnx['threads']} threads) against the torch detector on the same run "
                  f"({onnx['vs']}), all in: {onnx['speedup_all_in']:.2f}× faster."]
    elif onnx:
        lines += ["", onnx + "."]
    return "\n".join(lines) + "\n"


def plot_bench(result: dict, path: Path) -> None:
    """Left: total seconds per image (log scale) with the speedup; right: each method's time
    split by stage (linear shares), so small stages stay visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["methods"])
    totals = np.array([result["methods"][n]["seconds_per_image"]["total"] for n in names])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2), gridspec_kw={"width_ratios": [1.2, 1]})
    ax1.barh(names, totals, color="#4363d8")
    ax1.set_xscale("log")
    ax1.set_xlabel("seconds per image, proposals excluded (log)")
    for i, (n, t) in enumerate(zip(names, totals)):
        sp = result["speedup_vs_rcnn"].get(n)
        ax1.text(t, i, f" {t:.3g} s" + (f"  ({sp:.0f}× faster)" if sp else ""), va="center", fontsize=8)
    ax1.set_xlim(totals.min() / 2, totals.max() * 20)
    left = np.zeros(len(names))
    for stage in STAGES[1:]:
        share = np.array([result["methods"][n]["seconds_per_image"][stage] for n in names]) / totals
        ax2.barh(names, share, left=left, label=stage)
        left += share
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("share of each method's time")
    ax2.set_yticks([])
    ax2.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
