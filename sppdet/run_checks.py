"""Checks that a run folder is what was trained, not what was edited or damaged since.

``model.pt`` records the configuration the run was trained with; the ``config.yaml`` beside it
is only believed where it agrees. Keys that only matter at test time (and paths that may move)
may differ, with a warning; any other difference changes the recipe the SVMs were trained for
and is refused. Runs of sppdet 0.3 have no record and load as before.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

import yaml

from .config import TEST_TIME_KEYS
from .errors import UserError

log = logging.getLogger("sppdet")

# May differ from the trained configuration: they change what a trained model does at test time
# only, or name a file that may have moved (its content is checked by its sha256).
EDITABLE = TEST_TIME_KEYS + ("device", "backbone.weights", "proposals.external_dir")


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: what and where (PyYAML's own text spans several lines)."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or "not valid YAML"
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def read_run_config(path: Path) -> dict:
    """A run's ``config.yaml`` as a mapping; anything else is one error line naming the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML ({yaml_problem(exc)}); restore it or train the run "
                        "again") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} cannot be read ({exc}); restore it or train the run again") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping of settings, not a {type(data).__name__}")
    return data


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def config_digest(tree: dict) -> str:
    """sha256 of the configuration as canonical JSON (recorded in meta.json)."""
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()


def check_trained_config(run: Path, trained: Any, current: dict, recorded_digest: Any = None) -> None:
    """Refuse a ``config.yaml`` edited after training (warn for test-time keys)."""
    if trained is None:
        return  # sppdet 0.3: no record
    if not isinstance(trained, dict):
        raise UserError(f"{run / 'model.pt'} is damaged: its record of the trained configuration is not a mapping")
    if recorded_digest is not None and recorded_digest != config_digest(trained):
        raise UserError(f"{run}: model.pt and meta.json disagree on the configuration it was trained with "
                        "(config_sha256); the run directory was mixed up or altered")
    a, b = _flat(trained), _flat(current)
    # a key the record lacks did not exist when the run was trained (read_run gives it the value
    # that run behaved with)
    changed = sorted(k for k in a if a.get(k) != b.get(k))
    hard = [k for k in changed if not k.startswith(EDITABLE)]
    show = ", ".join(f"{k} {a.get(k)!r} → {b.get(k)!r}" for k in (hard or changed)[:4])
    if hard:
        raise UserError(f"{run / 'config.yaml'} differs from the configuration this run was trained with "
                        f"({show}{', …' if len(hard) > 4 else ''}); the SVMs only fit the trained recipe: "
                        "restore those values (only test.*, bbox_reg.enabled, device and paths may change), "
                        "or train again")
    if changed:
        log.warning(f"{run / 'config.yaml'} was edited after training ({show}); using the edited test-time "
                    "settings")


def check_finite(model_path: Path, blob: dict) -> None:
    """Weights with NaN or infinite values make silent nonsense (no detections, NaN boxes)."""
    import torch

    items = [(k, blob.get(k)) for k in ("svm_W", "svm_b", "bbox_W", "bbox_b", "feat_scale", "pool5_scale")]
    items += [(f"head.{k}", v) for k, v in (blob.get("head") or {}).items()]
    upper = blob.get("upper_head")
    if isinstance(upper, dict) and isinstance(upper.get("state"), dict):
        items += [(f"upper_head.{k}", v) for k, v in upper["state"].items()]
    for name, v in items:
        if isinstance(v, torch.Tensor):
            ok = v.is_floating_point() is False or bool(torch.isfinite(v).all())
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            ok = math.isfinite(v)
        else:
            continue
        if not ok:
            raise UserError(f"{model_path} is damaged: {name} holds NaN or infinite values; train the run again")
