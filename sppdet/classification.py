"""SPP-net image classification: the SPP layer removes the fixed input size, so one network
classifies images of any size and aspect ratio (mixed sizes in one batch), trains on several
sizes (the paper alternates 224 and 180 per epoch), and is tested on the standard 10 views, on
the full image (shorter side resized to 256 for 224 views, no crop), or on both."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from .backbones import build_trunk
from .config import Rule, check_fields, rules_of, ruled
from .errors import UserError
from .fileio import atomic_save
from .images import is_image_file, read_image
from .ops import spp_pool
from .progress import progress
from .run_dir import CLASSIFIER_FILE, write_train_log

MODES = ("1view", "10view", "full", "10view+full")


@dataclass(frozen=True)
class ClsConfig:
    backbone: str = ruled(Rule("str"), "mobilenet_v2")
    weights: str | None = ruled(Rule("str", optional=True), None)
    levels: list[int] = ruled(Rule("ints", "[1, 64]"), factory=lambda: [4, 3, 2, 1])
    hidden: int = ruled(Rule("int", "[1, 65536]"), 512)
    # one per epoch, cycled (multi-size: [224, 180])
    sizes: list[int] = ruled(Rule("ints", "[16, 4096]"), factory=lambda: [224])
    epochs: int = ruled(Rule("int", "[1, 100000]"), 6)
    batch_size: int = ruled(Rule("int", "[1, 100000]"), 32)
    lr: float = ruled(Rule("float", "(0, inf)"), 0.01)
    momentum: float = ruled(Rule("float", "[0, 1)"), 0.9)
    weight_decay: float = ruled(Rule("float", "[0, inf)"), 0.0005)
    dropout: float = ruled(Rule("float", "[0, 1)"), 0.5)
    train_blocks: int = ruled(Rule("int", "[0, 1000]"), 0)  # also fine-tune this many of the trunk's last blocks
    seed: int = ruled(Rule("int", "[0, 4294967295]"), 0)
    device: str = ruled(Rule("choice", choices=("auto", "cpu", "cuda")), "auto")

    def __post_init__(self) -> None:
        check_fields(self, CLS_RULES, "classifier config")


CLS_RULES: dict[str, Rule] = rules_of(ClsConfig)


class SPPClassifier(nn.Module):
    def __init__(self, cfg: ClsConfig, num_classes: int, pretrained: bool = True):
        super().__init__()
        self.cfg = cfg
        self.trunk = build_trunk(cfg.backbone, cfg.weights, pretrained=pretrained)
        dim = self.trunk.channels * sum(n * n for n in cfg.levels)
        self.fc = nn.Sequential(nn.Linear(dim, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
                                nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
                                nn.Linear(cfg.hidden, num_classes))
        for p in self.trunk.parameters():
            p.requires_grad = False
        body = list(self.trunk.body.children())
        if cfg.train_blocks > len(body):
            raise UserError(f"classifier config: train_blocks is {cfg.train_blocks} but the {cfg.backbone} "
                            f"trunk has {len(body)} blocks")
        for block in body[len(body) - cfg.train_blocks:] if cfg.train_blocks else []:
            for p in block.parameters():
                p.requires_grad = True

    def forward(self, images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """``images``: a ``[N, 3, H, W]`` batch or a list of ``[3, H_i, W_i]`` of any sizes."""
        if isinstance(images, torch.Tensor):
            feats = spp_pool(self.trunk(images), None, self.cfg.levels)
        else:
            feats = torch.cat([spp_pool(self.trunk(x[None]), None, self.cfg.levels) for x in images])
        return self.fc(feats)


# -- data -----------------------------------------------------------------------------------
@dataclass
class ClsSample:
    path: Path
    label: int
    box: tuple[int, int, int, int] | None = None  # crop (x1, y1, x2, y2) inclusive, or whole image


def load_cls_data(path: str | Path, split: str = "all", classes: list[str] | None = None,
                  max_per_class: int | None = None, seed: int = 0) -> tuple[list[ClsSample], list[str]]:
    """An ImageFolder (one sub-folder per class) or object crops from a detection data set."""
    p = Path(path)
    if p.is_dir() and not any(p.glob("*.xml")) and not (p / "Annotations").is_dir() and \
            any(d.is_dir() and any(is_image_file(f) for f in d.iterdir()) for d in p.iterdir()):
        root = p / split if (p / split).is_dir() else p
        classes = classes or sorted(d.name for d in root.iterdir() if d.is_dir())
        samples = [ClsSample(f, i, None) for i, c in enumerate(classes) if (root / c).is_dir()
                   for f in sorted((root / c).iterdir()) if is_image_file(f)]
    else:
        from .datasets import load_dataset

        ds = load_dataset(p, split, classes=classes)
        classes = classes or ds.classes
        idx = {c: i for i, c in enumerate(classes)}
        samples = [ClsSample(r.path, idx[lab], tuple(int(round(v)) for v in b))
                   for r in ds.records for b, lab, d in zip(r.boxes, r.labels, r.difficult)
                   if lab in idx and not d and (b[2] - b[0]) >= 3 and (b[3] - b[1]) >= 3]
    if max_per_class:
        rng = np.random.default_rng(seed)
        keep = []
        for c in range(len(classes)):
            s = [x for x in samples if x.label == c]
            keep += [s[i] for i in sorted(rng.permutation(len(s))[:max_per_class])]
        samples = keep
    if not samples:
        raise UserError(f"no classification samples found in {p} (split {split!r})")
    return samples, list(classes)


class ImageCache:
    """Decoded source images (crops share them), bounded by count."""

    def __init__(self, limit: int = 64):
        self.limit, self.store = limit, {}

    def get(self, path: Path) -> np.ndarray:
        if path not in self.store:
            if len(self.store) >= self.limit:
                self.store.pop(next(iter(self.store)))
            self.store[path] = read_image(path)
        return self.store[path]


def sample_image(s: ClsSample, cache: ImageCache) -> np.ndarray:
    img = cache.get(s.path)
    if s.box is None:
        return img
    x1, y1, x2, y2 = s.box
    return img[y1:y2 + 1, x1:x2 + 1]


def _tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)


def resize_short(img: np.ndarray, short: int) -> np.ndarray:
    h, w = img.shape[:2]
    f = short / min(h, w)
    return cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_LINEAR)


def train_view(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Random size×size crop of the image resized to shorter side size·256/224, random flip."""
    r = resize_short(img, int(round(size * 256 / 224)))
    h, w = r.shape[:2]
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    crop = r[y:y + size, x:x + size]
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def ten_views(img: np.ndarray, size: int) -> list[np.ndarray]:
    """4 corners + centre of the image resized to shorter side size·256/224, and their flips."""
    r = resize_short(img, int(round(size * 256 / 224)))
    h, w = r.shape[:2]
    spots = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size), ((h - size) // 2, (w - size) // 2)]
    views = [r[y:y + size, x:x + size] for y, x in spots]
    return views + [v[:, ::-1] for v in views]


# -- training and testing -------------------------------------------------------------------
def _device(name: str) -> torch.device:
    from .features import resolve_device

    return resolve_device(name)


def train_classifier(samples: list[ClsSample], classes: list[str], cfg: ClsConfig, out: Path) -> SPPClassifier:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    dev = _device(cfg.device)
    model = SPPClassifier(cfg, len(classes)).to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))
    cache = ImageCache()
    log = []
    for epoch in range(cfg.epochs):
        size = cfg.sizes[epoch % len(cfg.sizes)]
        model.train()
        model.trunk.eval()  # frozen BatchNorm statistics
        order = rng.permutation(len(samples))
        losses = []
        bar = progress(range(0, len(order), cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs} @{size}px",
                       unit="batch")
        for i in bar:
            batch = [samples[j] for j in order[i:i + cfg.batch_size]]
            x = torch.stack([_tensor(train_view(sample_image(s, cache), size, rng)) for s in batch]).to(dev)
            y = torch.tensor([s.label for s in batch], device=dev)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        sched.step()
        log.append({"epoch": epoch + 1, "size": size, "loss": float(np.mean(losses))})
    save_classifier(model, classes, out, log)
    return model


@torch.inference_mode()
def predict_all(model: SPPClassifier, img: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Class probabilities under every test mode, each view computed once: the centre view
    (1 view), the mean softmax of the 10 views, of the full image, and of all 11."""
    dev = next(model.parameters()).device
    model.eval()
    views = torch.softmax(model(torch.stack([_tensor(v) for v in ten_views(img, size)]).to(dev)), 1)
    # The full image at the scale the views are cut from (shorter side size·256/224, the
    # paper's 256 for 224 views), uncropped: objects appear at the size training showed them.
    full = torch.softmax(model([_tensor(resize_short(img, int(round(size * 256 / 224)))).to(dev)]), 1)
    out = {"1view": views[4], "10view": views.mean(0), "full": full[0],
           "10view+full": torch.cat([views, full]).mean(0)}
    return {k: v.cpu().numpy() for k, v in out.items()}


def predict(model: SPPClassifier, img: np.ndarray, mode: str, size: int) -> np.ndarray:
    return predict_all(model, img, size)[mode]


def evaluate_classifier(model: SPPClassifier, samples: list[ClsSample], modes: Sequence[str] = MODES,
                        size: int = 224) -> dict:
    cache = ImageCache()
    correct = {m: [0, 0] for m in modes}
    for s in progress(samples, desc="eval-cls", unit="img"):
        probs = predict_all(model, sample_image(s, cache), size)
        for m in modes:
            top = np.argsort(-probs[m])
            correct[m][0] += int(top[0] == s.label)
            correct[m][1] += int(s.label in top[:5])
    n = len(samples)
    return {m: {"top1_error": 1 - c1 / n, "top5_error": 1 - c5 / n} for m, (c1, c5) in correct.items()}


def save_classifier(model: SPPClassifier, classes: list[str], out: Path, log: list) -> None:
    out.mkdir(parents=True, exist_ok=True)
    blob = {"format": "sppdet-cls-1", "classes": classes, "config": asdict(model.cfg),
            "trunk_weights": model.trunk.weights_id,
            "state": {k: v.cpu() for k, v in model.state_dict().items()}}
    atomic_save(out / CLASSIFIER_FILE, lambda tmp: torch.save(blob, tmp))
    write_train_log(out, {"classes": classes, "config": asdict(model.cfg), "epochs": log})


def load_classifier(run: str | Path, device: str | None = None) -> tuple[SPPClassifier, list[str]]:
    p = Path(run) / CLASSIFIER_FILE
    if not p.is_file():
        raise UserError(f"{run} is not a classifier run ({CLASSIFIER_FILE} missing)")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling/zip failure means a damaged file
        raise UserError(f"{p} is damaged or not a classifier ({type(exc).__name__}: {exc})") from None
    if not isinstance(blob, dict):
        raise UserError(f"{p} is damaged: it holds a {type(blob).__name__}, not a classifier record")
    missing = [k for k in ("classes", "config", "state") if k not in blob]
    if missing:
        raise UserError(f"{p} is damaged: missing {', '.join(missing)}")
    classes, conf, state = blob["classes"], blob["config"], blob["state"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise UserError(f"{p} is damaged: 'classes' must be a non-empty list of names")
    if not isinstance(conf, dict):
        raise UserError(f"{p} is damaged: 'config' is a {type(conf).__name__}, not a mapping")
    if not isinstance(state, dict):
        raise UserError(f"{p} is damaged: 'state' is a {type(state).__name__}, not a state dict")
    known = {f.name for f in fields(ClsConfig)}
    unknown = sorted(set(conf) - known)
    if unknown:
        raise UserError(f"{p} is damaged or from a newer sppdet: unknown config keys {', '.join(unknown)}")
    cfg = ClsConfig(**conf)  # validates every field (UserError naming it)
    if device:
        cfg = replace(cfg, device=device)  # checked again by __post_init__
    model = SPPClassifier(cfg, len(classes), pretrained=False)
    out_w = state.get("fc.6.weight")
    if out_w is None or not hasattr(out_w, "shape") or out_w.shape[0] != len(classes):
        raise UserError(f"{p} is damaged: {len(classes)} classes but the output layer has "
                        f"{'no weights' if out_w is None else tuple(getattr(out_w, 'shape', ()))}")
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{p} does not match its own config (levels/hidden/backbone): {first}") from None
    return model.to(_device(cfg.device)).eval(), classes
