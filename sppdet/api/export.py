"""``sppdet export``: a trained run as one ONNX graph (:mod:`sppdet.onnx_export`)."""
from __future__ import annotations

from pathlib import Path

from ..arguments import FORMAT, PATH, RUN, checked
from ..errors import UserError
from .setup import load


@checked(run=RUN, out=PATH, format=FORMAT, weights=PATH.or_none())
def export(run, out: str | Path, *, format: str = "onnx", weights: str | Path | None = None) -> Path:
    """Write a trained run (or :class:`~sppdet.detector.Detector`) as one ONNX graph, from the
    resized image to the calibrated detections (:mod:`sppdet.onnx_export`; the input contract
    is in the model's metadata and in ``sppdet export --help``). Returns the file's path."""
    from ..detector import Detector
    from ..onnx_export import export_onnx, require_onnx

    require_onnx()
    if not isinstance(run, Detector) and Path(run).is_file():
        raise UserError(f"{run} is a file; sppdet export takes a trained run folder")
    det = run if isinstance(run, Detector) else load(run, device="cpu", weights=weights, engine="torch")
    return export_onnx(det, Path(out))
