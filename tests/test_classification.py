"""SPP classification: any input size with the same weights, mixed-size batches, test views."""
import numpy as np
import pytest
import torch
from PIL import Image

from sppdet.classification import (ClsConfig, SPPClassifier, evaluate_classifier, load_classifier,
                                   load_cls_data, ten_views, train_classifier)
from sppdet.cli import main


@pytest.fixture
def model():
    torch.manual_seed(0)
    return SPPClassifier(ClsConfig(levels=[4, 3, 2, 1], hidden=32), num_classes=3, pretrained=False).eval()


def test_any_size_same_output_length(model):
    with torch.no_grad():
        for h, w in [(64, 64), (37, 151), (224, 180), (16, 16)]:
            assert model(torch.rand(2, 3, h, w)).shape == (2, 3)


def test_mixed_size_batch_equals_one_by_one(model):
    imgs = [torch.rand(3, 50, 70), torch.rand(3, 90, 40), torch.rand(3, 64, 64)]
    with torch.no_grad():
        together = model(imgs)
        alone = torch.cat([model(x[None]) for x in imgs])
    torch.testing.assert_close(together, alone)


def test_ten_views_geometry():
    img = np.arange(300 * 400 * 3, dtype=np.uint8).reshape(300, 400, 3)
    views = ten_views(img, 224)
    assert len(views) == 10 and all(v.shape == (224, 224, 3) for v in views)
    np.testing.assert_array_equal(views[5], views[0][:, ::-1])  # flips follow the originals


def test_train_eval_on_imagefolder_and_detection_crops(tmp_path):
    rng = np.random.default_rng(0)
    for c, colour in [("red", (220, 30, 30)), ("blue", (30, 30, 220))]:
        (tmp_path / "folder" / c).mkdir(parents=True)
        for i in range(6):
            size = (int(rng.integers(40, 120)), int(rng.integers(40, 120)))
            arr = np.clip(np.array(colour) + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / "folder" / c / f"{i}.png")
    samples, classes = load_cls_data(tmp_path / "folder")
    assert classes == ["blue", "red"] and len(samples) == 12
    torch.manual_seed(0)
    wpath = tmp_path / "w.pth"
    import torchvision

    torch.save(torchvision.models.mobilenet_v2().state_dict(), wpath)
    cfg = ClsConfig(weights=str(wpath), sizes=[64, 48], epochs=2, batch_size=6, hidden=16, device="cpu")
    train_classifier(samples, classes, cfg, tmp_path / "run")
    model, cl = load_classifier(tmp_path / "run")
    res = evaluate_classifier(model, samples, size=64)
    assert set(res) == {"1view", "10view", "full", "10view+full"}
    assert all(r["top5_error"] == 0.0 for r in res.values())  # 2 classes: always in the top 5
    # CLI: classify prints top-k; a non-image is a clean error with exit code 2
    (tmp_path / "bad.jpg").write_text("no")
    assert main(["classify", str(tmp_path / "run"), str(tmp_path / "folder" / "red" / "0.png"), "--size", "64"]) == 0
    assert main(["classify", str(tmp_path / "run"), str(tmp_path / "bad.jpg")]) == 2


def test_detection_crops(tmp_path):
    from sppdet.datasets.synth import write_synthetic

    write_synthetic(tmp_path / "syn", 6, seed=2)
    samples, classes = load_cls_data(tmp_path / "syn", "all")
    assert classes == sorted(set(classes)) and all(s.box is not None for s in samples)
    assert all(s.box[2] >= s.box[0] + 3 for s in samples)
