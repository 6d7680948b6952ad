"""What every public function shares: configs, loading runs and data, executors, the output and cache
folders (``_out_dir``, ``_tidy_outs``: an interrupted call removes the folders it created)."""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from ..config import Config, load_config, override_config
from ..arguments import (CFG, CLASSES, CONFIG, DATA, DEVICE, ENGINE, OVERRIDES, PATH, RAY, SPLIT, WORKERS, checked)
from ..errors import UserError
from ..parallel import make_executor as _make_executor
from ..run_dir import TRAIN_LOG_FILE, optional_file

log = logging.getLogger("sppdet")


@checked(workers=WORKERS.or_none(), ray=RAY.or_none())
def make_executor(workers: Any = None, ray: Any = None):
    """:func:`sppdet.parallel.make_executor` after checking the arguments by name."""
    return _make_executor(workers, ray)


def shipped_configs() -> dict[str, Path]:
    """The configs that come with sppdet, by name (``custom_small`` → its YAML file)."""
    here = Path(__file__).resolve().parents[1]  # the sppdet package (this module is in sppdet/api/)
    found: dict[str, Path] = {}
    for d in (here / "configs", here.parent / "configs"):
        for f in sorted(d.glob("*.yaml")) if d.is_dir() else []:
            found.setdefault(f.stem, f)
    return found


@checked(config=CONFIG.or_none(), overrides=OVERRIDES)
def make_config(config: str | Path | Config | dict | None = None, overrides: Sequence[str] = (),
                **settings: Any) -> Config:
    """A validated :class:`~sppdet.config.Config`: defaults, then ``config`` (a YAML file, the
    name of a shipped config such as ``"custom_small"``, a nested ``dict`` or a ``Config``),
    then ``settings`` (``svm={"C": 0.01}``, ``seed=1``), then ``"key=value"`` ``overrides``."""
    overrides = list(overrides)
    if isinstance(config, Config):
        if settings:
            raise UserError("give settings either in a Config object or as keyword arguments, not both")
        return override_config(config, overrides, allowed=None)
    if isinstance(config, dict):
        tree = copy.deepcopy(config)
        for key, value in settings.items():  # keyword settings win, section by section
            if isinstance(value, dict) and isinstance(tree.get(key), dict):
                tree[key] = {**tree[key], **value}
            else:
                tree[key] = value
        return load_config(None, overrides, tree)
    if config is not None and not Path(config).exists():
        shipped = shipped_configs()
        name = Path(config).stem if Path(config).suffix in (".yaml", ".yml") else str(config)
        if name in shipped and Path(config).parent == Path("."):
            config = shipped[name]
        else:
            raise UserError(f"config file not found: {config} (shipped configs: {', '.join(shipped) or 'none'})")
    return load_config(config, overrides, settings or None)


@checked(run=PATH, device=DEVICE.or_none(), weights=PATH.or_none(), engine=ENGINE.or_none())
def load(run: str | Path, device: str | None = None, weights: str | Path | None = None, engine: str | None = None):
    """A trained detector: a :class:`~sppdet.detector.Detector` from its run directory, or an
    exported ``model.onnx`` run by onnxruntime (:class:`~sppdet.onnx_engine.OnnxDetector`).
    Both are called the same way and return the same :class:`~sppdet.detector.Detections`.

    ``engine``: ``"torch"`` or ``"onnxruntime"``; default torch for a run directory, onnxruntime
    for a model file. A run directory with ``engine="onnxruntime"`` is exported in memory."""
    from ..detector import Detector

    path = Path(run)
    engine = _engine(path, engine)
    if engine == "onnxruntime":
        from ..onnx_engine import OnnxDetector, from_detector

        if device not in (None, "auto", "cpu"):
            raise UserError(f"the onnxruntime engine runs on the CPU; leave out device {device!r} (--device) or "
                            "use the torch engine on the run folder")
        if path.is_dir():
            return from_detector(Detector.load(path, device="cpu",
                                               weights=None if weights is None else str(weights)))
        if weights is not None:
            raise UserError(f"{path} holds its trunk's weights; weights= (--weights) applies to run folders only")
        return OnnxDetector(path)
    return Detector.load(path, device=device, weights=None if weights is None else str(weights))


def is_detector(run) -> bool:
    """A loaded detector of either engine (the onnxruntime one only if its module is loaded)."""
    from ..detector import Detector

    mod = sys.modules.get("sppdet.onnx_engine")
    return isinstance(run, Detector) or (mod is not None and isinstance(run, mod.OnnxDetector))


def _engine(path: Path, engine: str | None) -> str:
    """The engine for ``path``: a model file runs on onnxruntime, a run folder on torch unless told."""
    if path.is_file() or (not path.exists() and path.suffix.lower() == ".onnx"):
        if engine == "torch":
            raise UserError(f"{path} is a file (an exported model?); the torch engine runs run folders: use "
                            "--engine onnxruntime, or give the run folder")
        return "onnxruntime"
    return engine or "torch"


@checked(data=DATA, split=SPLIT, cfg=CFG.or_none(), classes=CLASSES.or_none())
def load_data(data, split: str, cfg: Config | None = None, classes: Sequence[str] | None = None):
    """A data set in any supported layout (VOC devkit, labelImg folders, COCO JSON, YOLO), with
    its repairs summarised once on the ``sppdet`` logger. ``data`` may already be a data set."""
    from ..datasets import DetectionDataset, load_dataset

    if isinstance(data, DetectionDataset):
        return data
    cfg = cfg or Config()
    ds = load_dataset(data, split, classes=list(classes) if classes else cfg.data.classes,
                      seed=cfg.data.split_seed, test_fraction=cfg.data.test_fraction,
                      min_box_size=cfg.data.min_box_size, exif_transpose=cfg.data.exif_transpose)
    if ds.report.counts:
        log.warning(ds.report.summary())
    log.info(f"split {split}: {len(ds)} images from {ds.source}")
    return ds


_CREATED: list[list[tuple[Path, Path]]] = []  # per public call: (--out folder, its first new ancestor)


_LOCKS: list[contextlib.ExitStack] = []  # per public call: the output folders' locks it holds


def _out_dir(path: str | Path, what: str = "--out", lock: bool = False) -> Path:
    """:func:`~sppdet.fileio.ensure_writable_dir`, remembering what it created so that a
    command that fails leaves no empty folder behind (see :func:`_tidy_outs`). With ``lock``,
    the folder's lock (:func:`~sppdet.locking.folder_lock`) is held until the call returns:
    a second command writing there is refused."""
    from ..fileio import ensure_writable_dir
    from ..locking import folder_lock

    top, q = None, Path(os.path.abspath(path))
    while not q.exists() and q != q.parent:
        top, q = q, q.parent
    out = ensure_writable_dir(path, what)
    if top is not None and _CREATED:
        _CREATED[-1].append((Path(os.path.abspath(out)), top))
    if lock and _LOCKS:
        _LOCKS[-1].enter_context(folder_lock(out, what))
    return out


def _tidy_outs(fn):
    """On failure, remove the output folders the call created while they are still empty;
    release the folders' locks the call took (:func:`_out_dir`) when it returns."""
    import functools

    from ..locking import LOCK_NAME

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _CREATED.append([])
        _LOCKS.append(contextlib.ExitStack())
        try:
            return fn(*args, **kwargs)
        except BaseException:
            _LOCKS[-1].close()  # released first: an unused lock file is then tidied away too
            for leaf, top in reversed(_CREATED[-1]):
                d = leaf
                while True:
                    try:
                        lock = d / LOCK_NAME  # this call's own lock file does not make a folder worth keeping
                        if lock.is_file() and not lock.is_symlink() and [p.name for p in d.iterdir()] == [LOCK_NAME]:
                            lock.unlink()
                        d.rmdir()  # only an empty folder goes
                    except OSError:
                        break
                    if d == top:
                        break
                    d = d.parent
            raise
        finally:
            _CREATED.pop()
            _LOCKS.pop().close()
    return wrapper


def is_other_data(split: str | Path) -> bool:
    """Whether an evaluation ``split`` names another data set (a folder, a COCO .json or a YOLO
    data.yaml) rather than a split of the training data (a name or a .txt/.csv list file)."""
    p = Path(split)
    return p.is_dir() or (p.is_file() and p.suffix.lower() in (".json", ".yaml", ".yml"))


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_.") or "data"


def default_cache() -> Path:
    from ..cache import default_cache_root

    return default_cache_root()


@checked(cache=PATH.or_none())
def cache_dir(cache: str | Path | None = None) -> Path:
    """The cache folder to use (``cache``, else :func:`default_cache`), created and checked writable."""
    from ..fileio import ensure_writable_dir

    return ensure_writable_dir(cache if cache is not None else default_cache(), "cache folder")


class UserInterrupt(UserError):
    """Ctrl-C during long work: the message says what was kept and how to resume."""

    exit_code = 130


def _run_cache(det) -> Path | None:
    """The cache folder a run was trained with (train_log.json's ``cache_dir``) while it
    exists: its proposals and conv maps serve the evaluation too. None: the default cache."""
    d = _run_log(det).get("cache_dir")
    return Path(d) if isinstance(d, str) and Path(d).is_dir() else None


def _run_data(det) -> str | None:
    """The data a run was trained on, as its train_log.json records it."""
    return _run_log(det).get("data")


def _run_log(det) -> dict:
    log_ = det.train_log
    if log_ is None and det.run_dir is not None:
        f = optional_file(det.run_dir, TRAIN_LOG_FILE)
        try:
            log_ = json.loads(f.read_text()) if f is not None else {}
        except (OSError, ValueError):
            return {}
    return log_ if isinstance(log_, dict) else {}
