"""The run folder: the only module that knows which files a trained run holds.

A run folder ``RUN/`` holds

- ``config.yaml``: the full configuration it was trained with (:class:`sppdet.config.Config`);
- ``meta.json``: what a person (or a tool) wants to know without torch: version, classes,
  backbone and its weights' sha256, feature size, method;
- ``model.pt``: the learned tensors (``torch.save`` of plain values, loaded ``weights_only``);
- ``train_log.json``: timings, data problems, SVM statistics (and the evaluation, when asked);
- ``rpn.pt``: with ``proposals.method=rpn``, the proposal network (its settings and weights;
  ``model.pt`` records its digest, so a network from another training is refused);
- ``eval_SPLIT/``: one folder per evaluated split (written by ``sppdet eval``).

Every file is written atomically, ``model.pt`` last, and ``model.pt`` and ``meta.json`` carry one
``run_id``: a loader can tell a whole run from one interrupted while it was being replaced.

Adding a file (say the proposal network's weights): name it with a constant below, pass its
writer in ``extra`` of :func:`write_run` (it is then written atomically, before ``model.pt``),
and read it back with :func:`optional_file` (absent in older runs) or list it in
``REQUIRED_FILES`` if every run must have it. Nothing outside this module spells a file name.
"""
from __future__ import annotations

import json
import pickle
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import yaml

from .config import Config, config_from_dict
from .errors import UserError
from .fileio import atomic_save, atomic_write, atomic_write_json
from .run_checks import check_finite, check_trained_config, read_run_config

MODEL_FILE, CONFIG_FILE, META_FILE = "model.pt", "config.yaml", "meta.json"
TRAIN_LOG_FILE = "train_log.json"
CLASSIFIER_FILE = "classifier.pt"  # a classifier run (``sppdet train-cls``): this + train_log.json
RPN_FILE = "rpn.pt"  # proposals.method=rpn: the proposal network (proposals/rpn.py)
EVAL_PREFIX = "eval_"
# files only some runs have: a rewrite that does not provide one removes the old training's
OPTIONAL_FILES = (RPN_FILE,)
REQUIRED_FILES = (MODEL_FILE, CONFIG_FILE, META_FILE)
MODEL_FORMAT = 1
# what every model.pt holds (0.2 and 0.3 runs included; "run_id" and "channels_last" came later)
MODEL_KEYS = frozenset({"classes", "backbone", "weights_sha256", "head", "svm_W", "svm_b", "feat_scale",
                        "pool5_scale", "bbox_W", "bbox_b", "bbox_trained"})

FileWriter = Callable[[Path], None]  # writes one file at the (temporary) path it is given


@dataclass
class RunFiles:
    """A run folder's files, read and checked against each other (not yet turned into models)."""

    path: Path
    cfg: Config
    meta: dict
    blob: dict  # model.pt's contents

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE


def model_path(run: str | Path) -> Path:
    return Path(run) / MODEL_FILE


def is_trained_run(run: str | Path) -> bool:
    """Whether ``run`` already holds a trained model (so training there would replace it)."""
    return model_path(run).exists()


def eval_dir(run: str | Path, split: str) -> Path:
    """Where the evaluation of ``split`` (a name or a list file) goes inside ``run``."""
    return Path(run) / f"{EVAL_PREFIX}{Path(split).stem}"


def remove_evals(run: str | Path) -> None:
    """Remove the ``eval_*`` folders (they describe a model being replaced)."""
    for p in sorted(Path(run).glob(f"{EVAL_PREFIX}*")):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def optional_file(run: str | Path, name: str) -> Path | None:
    """The path of an optional file of the run, or ``None`` when the run (an older one) lacks it."""
    p = Path(run) / name
    return p if p.is_file() else None


def write_train_log(run: str | Path, train_log: dict) -> None:
    atomic_write_json(Path(run) / TRAIN_LOG_FILE, train_log)


def write_run(run: str | Path, cfg: Config, meta: dict, blob: dict, train_log: dict | None = None,
              extra: Mapping[str, FileWriter] | None = None) -> str:
    """Write a run folder: ``config.yaml``, ``meta.json``, ``train_log.json`` (when given), the
    ``extra`` files, then ``model.pt``; ``meta`` and ``blob`` get one new ``run_id`` (returned)."""
    import torch  # here, not at the top: `import sppdet` stays quick

    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex
    blob = {"format": MODEL_FORMAT, "run_id": run_id, **blob}
    meta = {**meta, "run_id": run_id}
    atomic_write(run / CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    atomic_write_json(run / META_FILE, meta)
    if train_log is not None:
        write_train_log(run, train_log)
    for name, writer in (extra or {}).items():
        atomic_save(run / name, writer)
    for name in OPTIONAL_FILES:
        if name not in (extra or {}) and (run / name).exists():
            (run / name).unlink()
    atomic_save(run / MODEL_FILE, lambda tmp: torch.save(blob, tmp))
    return run_id


def read_run(run_dir: str | Path) -> RunFiles:
    """Read and cross-check a run folder's files; any problem is one :class:`UserError`."""
    import torch

    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"run directory not found: {run}")
    from .locking import held_elsewhere

    if held_elsewhere(run):
        raise UserError(f"{run} is being written by another sppdet command right now (a training into it, or "
                        "an evaluation writing there); wait for it to finish, then run this again")
    for f in REQUIRED_FILES:
        if not (run / f).is_file():
            raise UserError(f"{run} is not a complete sppdet run: {f} is missing (was training interrupted?)")
    model_path = run / MODEL_FILE
    if model_path.stat().st_size == 0:
        raise UserError(f"{model_path} is empty (0 bytes): the run was not saved completely; train it again")
    raw_cfg = read_run_config(run / CONFIG_FILE)  # one line naming config.yaml for any YAML problem
    if isinstance(raw_cfg, dict) and "head" not in raw_cfg:  # runs before 0.5 scored with SVMs
        raw_cfg["head"] = {"type": "svm"}
    try:
        cfg = config_from_dict(raw_cfg)
    except UserError as exc:
        raise UserError(f"{run / CONFIG_FILE}: {exc}") from None
    try:
        meta = json.loads((run / META_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{run / META_FILE} is damaged and cannot be loaded: {exc}") from None
    try:
        blob = torch.load(model_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"{model_path} holds objects other than tensors and plain values, which sppdet "
                        "refuses to unpickle (it is not a file sppdet wrote, or it was altered)") from None
    except Exception as exc:  # noqa: BLE001 - zip/pickle damage of any kind: a damaged file
        raise UserError(f"{model_path} is damaged and cannot be loaded ({type(exc).__name__}: "
                        f"{exc or 'no detail'})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{run / META_FILE} must hold a JSON object, not a {type(meta).__name__}")
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        raise UserError(f"{model_path} is not an sppdet model file")
    missing = sorted(MODEL_KEYS - blob.keys())
    if missing:
        raise UserError(f"{model_path} lacks {', '.join(missing)}: it is damaged or not an sppdet model")
    check_finite(model_path, blob)
    # config.yaml as trained (model.pt's record; runs of 0.3 have none), not as edited since
    check_trained_config(run, blob.get("config"), cfg.to_dict(), meta.get("config_sha256"))
    if "run_id" in blob and blob["run_id"] != meta.get("run_id"):
        raise UserError(f"{run}: {MODEL_FILE} and {META_FILE} come from different trainings (the run was "
                        "interrupted while being replaced); train it again")
    if blob["classes"] != meta.get("classes") or blob["backbone"] != cfg.backbone.name:
        raise UserError(f"{run}: {MODEL_FILE}, {META_FILE} and {CONFIG_FILE} disagree "
                        "(classes or backbone); the run directory was mixed up")
    return RunFiles(run, cfg, meta, blob)
