"""An exported model (:mod:`sppdet.onnx_export`) run by onnxruntime, called as the torch
:class:`~sppdet.detector.Detector` is and returning the same :class:`~sppdet.detector.Detections`.

The engine does what the graph leaves out: reading the image (EXIF orientation as the torch
detector applies it), the resize to the run's scale (OpenCV, exactly as
:func:`sppdet.features.resized_pyramid` makes the torch detector's), and, for selective-search
runs, the windows (the run's own settings, from the model's metadata). The run folder is not
needed: everything comes from the model file.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .errors import UserError
from .onnx_export import FORMAT, PREFIX, require_onnx
from .proposals.base import Proposer

ENGINES = ("torch", "onnxruntime")


class _InGraph(Proposer):
    """The windows of a model whose proposal network is part of its graph: nothing to compute
    outside it (``needs_maps``: like the torch RPN, they come after the trunk)."""

    name = "rpn"
    needs_maps = True

    def propose(self, image_id, image, maps=None, size=None):
        raise ValueError("this model proposes its windows inside its graph")

    def cache_id(self) -> list:
        return ["onnx-graph"]


class OnnxDetector:
    """A detector that runs one ONNX graph on onnxruntime (CPU), ``threads`` intra-op threads
    (default: torch's thread count, which ``--threads`` sets)."""

    engine = "onnxruntime"
    calibrated = True

    def __init__(self, model: bytes | str | Path, source: str | None = None, threads: int | None = None):
        import torch

        _, ort = require_onnx()
        self.source = str(source if source is not None else model)
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads or torch.get_num_threads())
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # not the notes on the settings' defaults (initializers that are inputs)
        self.threads = so.intra_op_num_threads
        blob = model if isinstance(model, bytes) else _read(Path(model))
        try:
            self.session = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors have no common base class
            detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{self.source} is not a readable ONNX model (truncated or damaged?): {detail}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if PREFIX + "format" not in meta:
            raise UserError(f"{self.source} is an ONNX model that sppdet did not export (it has no sppdet metadata); "
                            "export a run with `sppdet export RUN --format onnx --out model.onnx`")
        self.metadata = {k[len(PREFIX):]: v for k, v in meta.items() if k.startswith(PREFIX)}
        try:
            fmt = int(self.metadata["format"])
            if fmt > FORMAT:
                raise UserError(f"{self.source} was exported by sppdet {self.metadata.get('version', '?')} in a newer "
                                f"format ({fmt}) than this sppdet reads ({FORMAT}): upgrade sppdet")
            from .config import config_from_dict

            self.classes = list(json.loads(self.metadata["classes"]))
            self.cfg = config_from_dict(json.loads(self.metadata["config"]))
            self.windows_input = self.metadata["windows"] == "input"
            self._digest = self.metadata["model_digest"]
        except UserError:
            raise
        except (KeyError, ValueError, TypeError) as exc:
            raise UserError(f"{self.source}: its sppdet metadata is damaged ({type(exc).__name__}: {exc})") from None
        self._check_io()
        self.run_dir = None
        self.train_log = self.metrics = None

    def _check_io(self) -> None:
        from .onnx_graph import IMAGE, IMAGE_SIZE, OUTPUTS, SETTINGS, WINDOWS

        inputs = {i.name for i in self.session.get_inputs()}
        inputs |= {i.name for i in self.session.get_overridable_initializers()}
        wanted = {IMAGE, IMAGE_SIZE, *SETTINGS} | ({WINDOWS} if self.windows_input else set())
        outputs = [o.name for o in self.session.get_outputs()]
        if not wanted <= inputs or outputs != list(OUTPUTS):
            raise UserError(f"{self.source}: its inputs ({', '.join(sorted(inputs))}) or outputs "
                            f"({', '.join(outputs)}) are not those of an sppdet export; export the run again")

    # -- what the torch Detector offers that detection and the CLI use ------------------------
    @property
    def device(self):
        import torch

        return torch.device("cpu")

    @property
    def proposer(self) -> Proposer:
        """The method computing the windows outside the graph (selective search), or a stand-in
        saying the graph computes them."""
        p = getattr(self, "_proposer", None)
        if p is None or p[0] is not self.cfg.proposals:
            from .proposals import make_proposer

            p = (self.cfg.proposals, _InGraph() if not self.windows_input else
                 make_proposer(self.cfg.proposals, self.cfg.features.scales).for_new_images())
            self._proposer = p
        return p[1]

    def journal_digest(self) -> str:
        """What ``detect``'s journal is keyed by: the exported model's own, marked as this
        engine's (its numbers differ from torch's in the last digits)."""
        return f"onnxruntime:{self._digest}"

    def thresholds(self, threshold=None) -> np.ndarray:
        """As :meth:`Detector.thresholds`: the least score kept per class, ``[C]``."""
        from .detector import Detector

        return Detector.thresholds(self, threshold)

    def tiling(self, tile, overlap: float = 0.25, **options):
        """Tiles are not run on this engine yet (the graph takes one whole image)."""
        if tile is None:
            return None
        raise UserError("tile= (--tile) runs on the torch engine only; leave it out or use the run folder "
                        "with --engine torch")

    def detect(self, image: np.ndarray, proposals: np.ndarray | None = None, threshold=None):
        """As :meth:`Detector.detect`: an RGB uint8 ``[H, W, 3]`` image → :class:`Detections`."""
        from .detections import Detections
        from .detector import check_proposals
        from .features import resized_pyramid
        from .onnx_graph import (BOX_REGRESSION, IMAGE, IMAGE_SIZE, MAX_DETECTIONS, NMS_THRESHOLD,
                                 SCORE_THRESHOLD, WINDOWS)

        h, w = image.shape[:2]
        t = self.cfg.test
        thr = self.thresholds(threshold)  # [C]: the graph keeps the lowest, the others are applied after it
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        feeds = {}
        if self.windows_input:
            windows = check_proposals(proposals) if proposals is not None else self.proposer.propose(
                "", lambda: image, None, (w, h))
            feeds[WINDOWS] = np.ascontiguousarray(np.asarray(windows, dtype=np.float64).reshape(-1, 4))
        elif proposals is not None:
            raise UserError(f"{self.source} computes its windows with the proposal network inside its graph; "
                            "proposals= cannot replace them (use the run folder with the torch engine)")
        t1 = time.perf_counter()
        (_, resized), = resized_pyramid(image, self.cfg.features.scales, self.cfg.features.max_size)
        feeds.update({IMAGE: np.ascontiguousarray(resized, dtype=np.uint8),
                      IMAGE_SIZE: np.array([h, w], dtype=np.int64),
                      SCORE_THRESHOLD: np.array(float(np.min(thr)), dtype=np.float64),
                      NMS_THRESHOLD: np.array(t.nms, dtype=np.float32),
                      MAX_DETECTIONS: np.array(t.max_per_image, dtype=np.int64),
                      BOX_REGRESSION: np.array(bool(self.cfg.bbox_reg.enabled), dtype=np.bool_)})
        t2 = time.perf_counter()
        boxes, scores, labels, margins = self.session.run(None, feeds)
        t3 = time.perf_counter()
        timings.update(proposals=t1 - t0, resize=t2 - t1, graph=t3 - t2)
        boxes, labels = boxes.reshape(-1, 4), labels.astype(np.int64)
        keep = scores > thr[labels]
        return Detections(boxes[keep], scores[keep], labels[keep], timings=timings,
                          names=self.classes, margins=margins[keep], calibrated=True)

    def __call__(self, source, proposals=None, exif_transpose: bool = True, threshold=None, tile=None,
                 overlap: float = 0.25):
        from .detector import Detector

        return Detector.__call__(self, source, proposals, exif_transpose, threshold, tile, overlap)

    __call__.__doc__ = "As :meth:`Detector.__call__` (files, PIL images, arrays, tensors or a list of them)."


def _read(path: Path) -> bytes:
    if path.is_dir():
        raise UserError(f"{path} is a folder, not an ONNX model file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"model file not found: {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def from_detector(det, threads: int | None = None) -> OnnxDetector:
    """A torch detector's graph, exported in memory and run by onnxruntime (``--engine onnxruntime``
    on a run folder); test-time settings as ``det.cfg`` has them."""
    from .onnx_export import onnx_bytes

    where = det.run_dir if det.run_dir is not None else "the detector"
    out = OnnxDetector(onnx_bytes(det), source=f"{where} (exported in memory)", threads=threads)
    out.cfg = det.cfg
    out.run_dir = det.run_dir
    return out
