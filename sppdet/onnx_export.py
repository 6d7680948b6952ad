"""A trained run as one ONNX graph (``sppdet export RUN --format onnx``), with what an engine
needs to feed it written into the model's ``metadata_props``.

The graph (:mod:`sppdet.onnx_graph`) runs from the resized RGB image to the final boxes, scores
and labels. The resize stays outside it: OpenCV's area interpolation, which the detector shrinks
images with, has no ONNX equivalent, and the engine (:mod:`sppdet.onnx_engine`) resizes exactly
as the torch detector does. Selective search also stays outside (OpenCV): for such runs the
windows are a second input, computed by the engine with the run's settings.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

from .version import __version__
from .errors import UserError

OPSET = 17
FORMAT = 1  # of the metadata below; an engine refuses a newer one
PREFIX = "sppdet."  # every metadata key sppdet writes

CONTRACT = """\
image: uint8 [H', W', 3], RGB, the original H x W image resized with OpenCV so that its shorter side is \
{scale} px and its longer side at most {max_size} px: f = min({scale} / min(H, W), {max_size} / max(H, W)), \
H' = round(H * f), W' = round(W * f), cv2.INTER_AREA when f < 1, else cv2.INTER_LINEAR; no normalisation \
(the graph divides by 255 and applies ImageNet's mean and std)
image_size: int64 [2], (H, W) of the original image: boxes come back in its pixels
{windows}optional, with the run's values as defaults: score_threshold float64 [] (least score kept, default \
{score_thresh}), nms_threshold float32 [] (per-class NMS IoU, default {nms}), max_detections int64 [] \
(default {max_det}), box_regression bool [] (default {bbox})
outputs: boxes float64 [N, 4] (x1, y1, x2, y2) in 0-based inclusive pixels of the original image, \
scores float64 [N] in [0, 1] (calibrated: the probability a detection is right), labels int64 [N] \
(indices into the classes), margins float32 [N] (the SVM margins the scores calibrate); best first"""

WINDOWS_LINE = ("windows (runs without a proposal network): float64 [K, 4] (x1, y1, x2, y2) in 0-based inclusive pixels of the original image, "
                "the run's {method} proposals (sppdet's engine computes them)\n")

# The input contract for `sppdet export --help`, with the default recipe's numbers.
HELP_CONTRACT = CONTRACT.format(scale="S", max_size="M", windows=WINDOWS_LINE.format(method="selective-search (or external)"),
                                score_thresh="test.score_thresh", nms="test.nms", max_det="test.max_per_image",
                                bbox="bbox_reg.enabled")


def require_onnx():
    """``(onnx, onnxruntime)``, or a UserError saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise UserError(f"ONNX export and the onnxruntime engine need the onnx and onnxruntime packages "
                        f"({exc.name} is missing): pip install 'sppdet[onnx]'") from None
    return onnx, onnxruntime


def check_exportable(det) -> None:
    """A UserError naming what keeps a detector out of one graph, if anything does."""
    from .onnx_graph import HEAD_BUILDERS, head_kind

    where = f"{det.run_dir}: " if det.run_dir is not None else ""
    if det.cfg.method != "spp":
        raise UserError(f"{where}method={det.cfg.method} convolves every window separately; only SPP-net runs "
                        "(method=spp) export to ONNX")
    if len(det.extractor.scales) != 1:
        raise UserError(f"{where}features.scales {det.extractor.scales} computes {len(det.extractor.scales)} conv "
                        "maps per image; ONNX export supports single-scale runs only (train one with one scale, "
                        "e.g. --set features.scales=[688])")
    if det.platt is None:
        raise UserError(f"{where}the run was trained before sppdet 0.4 and has no score calibration; the ONNX "
                        "graph gives calibrated scores: train it again to export it")
    if head_kind(det) not in HEAD_BUILDERS:
        raise UserError(f"{where}no ONNX graph for a {head_kind(det)!r} head (known: {', '.join(HEAD_BUILDERS)})")


def metadata(det) -> dict[str, str]:
    """The ``metadata_props`` of the exported model (keys without :data:`PREFIX`)."""
    from .journal import model_digest
    from .run_checks import config_sha256

    cfg = det.cfg.to_dict()
    t = det.cfg.test
    rpn = det.rpn is not None
    contract = CONTRACT.format(
        scale=det.extractor.scales[0], max_size=det.extractor.max_size,
        windows="" if rpn else WINDOWS_LINE.format(method=det.cfg.proposals.method.replace("_", "-")),
        score_thresh=t.score_thresh, nms=t.nms, max_det=t.max_per_image,
        bbox=str(bool(det.cfg.bbox_reg.enabled and det.bbox is not None)).lower())
    return {"format": str(FORMAT), "version": __version__, "opset": str(OPSET),
            "classes": json.dumps(det.classes), "config": json.dumps(cfg), "config_sha256": config_sha256(cfg),
            "model_digest": model_digest(det), "windows": "graph" if rpn else "input",
            "input_contract": contract}


def _defaults(det) -> dict:
    import numpy as np

    from .onnx_graph import BOX_REGRESSION, MAX_DETECTIONS, NMS_THRESHOLD, SCORE_THRESHOLD

    t = det.cfg.test
    return {SCORE_THRESHOLD: np.array(t.score_thresh, dtype=np.float64),
            NMS_THRESHOLD: np.array(t.nms, dtype=np.float32),
            MAX_DETECTIONS: np.array(t.max_per_image, dtype=np.int64),
            BOX_REGRESSION: np.array(bool(det.cfg.bbox_reg.enabled), dtype=np.bool_)}


def onnx_bytes(det) -> bytes:
    """The serialised ONNX model of a trained detector (see :func:`export_onnx`)."""
    import copy

    import torch

    onnx, _ = require_onnx()
    from onnx import numpy_helper

    from .onnx_graph import IMAGE, IMAGE_SIZE, OUTPUTS, SETTINGS, WINDOWS, DetectionGraph

    check_exportable(det)
    graph = copy.deepcopy(DetectionGraph(det)).cpu().eval()
    defaults = _defaults(det)
    h, w = 96, 128  # any size: the trace keeps every size dynamic
    args = [torch.zeros((h, w, 3), dtype=torch.uint8), torch.tensor([h, w], dtype=torch.int64),
            *(torch.from_numpy(defaults[k]) for k in SETTINGS)]
    names = [IMAGE, IMAGE_SIZE, *SETTINGS]
    dynamic = {IMAGE: {0: "height", 1: "width"}, **{o: {0: "detections"} for o in OUTPUTS}}
    if graph.rpn is None:
        args.append(torch.tensor([[0.0, 0.0, w - 1.0, h - 1.0], [8.0, 8.0, 40.0, 50.0]], dtype=torch.float64))
        names.append(WINDOWS)
        dynamic[WINDOWS] = {0: "windows"}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # a value the trace would freeze is a bug of the graph, not a warning
        warnings.simplefilter("error", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "torch.tensor results are registered as constants",
                                torch.jit.TracerWarning)  # the graph's constants, as meant
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        with torch.no_grad():
            torch.onnx.export(graph, tuple(args), buf, dynamo=False, opset_version=OPSET, input_names=names,
                              output_names=list(OUTPUTS), dynamic_axes=dynamic, do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    # the settings become inputs with the run's values as defaults (overridable initializers)
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in defaults.items())
    for k, v in metadata(det).items():
        model.metadata_props.add(key=PREFIX + k, value=v)
    model.producer_name, model.producer_version = "sppdet", __version__
    model.doc_string = f"sppdet {__version__} detector, classes {', '.join(det.classes)}"
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export_onnx(det, out: str | Path) -> Path:
    """Write ``det`` as one ONNX graph to ``out`` (atomically; no writing through a link)."""
    from .fileio import atomic_write, describe_os_error
    from .locking import check_plain_file

    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give the model's file name, e.g. {out / 'model.onnx'}")
    if out.suffix.lower() != ".onnx":
        raise UserError(f"--out {out}: name the model file *.onnx (what sppdet detect and sppdet.load recognise)")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: the folder {out.parent} does not exist")
    check_plain_file(out, "--out")
    blob = onnx_bytes(det)
    try:
        atomic_write(out, blob)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {describe_os_error(exc)}") from None
    return out
