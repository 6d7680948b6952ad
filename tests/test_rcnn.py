"""R-CNN warping: the box fills the inner (224 - 2*16)² of the crop, context the 16-pixel margin."""
import numpy as np
import pytest
import torch

from sppdet.backbones import build_trunk
from sppdet.rcnn import RCNNExtractor


def test_warp_puts_16_pixels_of_context_around_the_box():
    img = np.zeros((300, 400, 3), dtype=np.uint8)
    x1, y1, x2, y2 = 100, 80, 195, 239  # a 96 x 160 white box
    img[y1:y2 + 1, x1:x2 + 1] = 255
    ext = RCNNExtractor(build_trunk("mobilenet_v2", pretrained=False))
    crop = ext.warp(ext.compute(img)[0].fmap, np.array([[x1, y1, x2, y2]]))[0].mean(0).numpy()
    assert crop.shape == (224, 224)
    inner = crop[18:206, 18:206]
    assert inner.min() > 0.95  # the box, stretched to the inner 192 x 192
    margin = np.concatenate([crop[:14].ravel(), crop[-14:].ravel(), crop[:, :14].ravel(), crop[:, -14:].ravel()])
    assert margin.max() < 0.05  # 16 px of (black) context around it


def test_rcnn_features_have_the_spp_length():
    ext = RCNNExtractor(build_trunk("mobilenet_v2", pretrained=False), levels=[2, 1], batch_size=3)
    img = np.random.default_rng(0).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    f = ext.pool(ext.compute(img), np.array([[0, 0, 50, 50], [10, 10, 119, 99], [5, 5, 6, 6], [0, 0, 119, 99]]))
    assert f.shape == (4, 96 * 5) and torch.isfinite(f).all()


# -- the fp16 window-vector cache ------------------------------------------------------------
def _ext():
    torch.manual_seed(0)
    return RCNNExtractor(build_trunk("mobilenet_v2", pretrained=False), levels=[2, 1], batch_size=4)


BOXES = np.array([[0, 0, 50, 50], [10, 10, 119, 99], [5, 5, 6, 6], [0, 0, 119, 99], [30.5, 20, 80, 70.25]],
                 dtype=np.float32)


def test_cached_vectors_are_the_fresh_ones_rounded_to_fp16(tmp_path):
    from sppdet.rcnn import WindowVectorCache

    ext = _ext()
    img = np.random.default_rng(0).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    fresh = ext.pool(ext.compute(img), BOXES)  # the reference: one warp + conv per window
    assert torch.equal(fresh, fresh.half().float())  # kept at fp16 precision, cached or not
    cache = WindowVectorCache(tmp_path, ext)
    cache.get("img", lambda: img, BOXES)
    loaded = cache.get("img", lambda: pytest.fail("a cached image must not be read again"), BOXES)
    assert loaded.vectors.dtype == np.float16
    order = [3, 0, 4, 1, 2]  # any order, and a repeat, are read back by value
    got = ext.pool(loaded, BOXES[order + [0]])
    assert torch.equal(got, fresh[order + [0]])


def test_windows_the_file_lacks_are_convolved_alone_and_added(tmp_path, monkeypatch):
    from sppdet.rcnn import WindowVectorCache

    ext = _ext()
    img = np.random.default_rng(1).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    fresh = ext.pool(ext.compute(img), BOXES)
    cache = WindowVectorCache(tmp_path, ext)
    cache.get("img", lambda: img, BOXES[:3])
    assert cache.has("img", BOXES[:3]) and cache.has("img", BOXES[[2, 0]]) and not cache.has("img", BOXES)
    seen = []
    real = RCNNExtractor._pool_image
    monkeypatch.setattr(RCNNExtractor, "_pool_image", lambda self, im, b: seen.append(len(b)) or real(self, im, b))
    # a window asked of a cached image without being cached (e.g. an edited annotation)
    assert torch.equal(ext.pool(cache.get("img", lambda: img, BOXES[:3]), BOXES[3:4]), fresh[3:4])
    assert seen == [1]
    got = cache.get("img", lambda: img, BOXES)  # the file grows by the two missing windows only
    assert seen == [1, 2] and len(got.boxes) == 5
    assert torch.equal(ext.pool(cache.get("img", lambda: img, BOXES), BOXES), fresh) and seen == [1, 2]


def test_a_damaged_window_file_is_recomputed(tmp_path, caplog):
    from sppdet.rcnn import WindowVectorCache

    ext = _ext()
    img = np.random.default_rng(2).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    cache = WindowVectorCache(tmp_path, ext)
    cache.get("img", lambda: img, BOXES)
    p = cache.path("img")
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    p.write_bytes(bytes(raw))
    got = cache.get("img", lambda: img, BOXES)
    assert "damaged window cache file" in caplog.text
    assert torch.equal(ext.pool(got, BOXES), ext.pool(ext.compute(img), BOXES))
    # vectors of another pyramid are refused, not misread
    other = RCNNExtractor(ext.trunk, levels=[1])
    assert WindowVectorCache(tmp_path, other).load("img") is None


def test_rcnn_training_convolves_each_window_once(tmp_path, random_weights, monkeypatch):
    """The whole R-CNN recipe (statistics, positives, fine-tuning, mining, box regression,
    evaluation) reads the cache: a second run with the trunk forbidden trains the same model."""
    import sppdet
    from sppdet.datasets.synth import write_synthetic

    write_synthetic(tmp_path / "syn", 6, seed=3)
    kw = dict(split="trainval", eval_split="test", cache=tmp_path / "cache", workers=1,
              overrides=["method=rcnn", f"backbone.weights={random_weights}", "device=cpu",
                         "proposals.max_boxes=40", "proposals.work_size=200", "features.levels=[2,1]",
                         "finetune.enabled=true", "finetune.iterations=20"])
    first = sppdet.train(tmp_path / "syn", tmp_path / "a", **kw)
    n_conv = []
    real = RCNNExtractor._pool_image

    def counted(self, image, boxes):
        n_conv.append(len(boxes))
        return real(self, image, boxes)

    monkeypatch.setattr(RCNNExtractor, "_pool_image", counted)
    second = sppdet.train(tmp_path / "syn", tmp_path / "b", **kw)
    assert n_conv == []
    assert torch.equal(first.svm_W, second.svm_W) and torch.equal(first.svm_b, second.svm_b)
    assert np.array_equal(first.bbox.W, second.bbox.W)
    assert first.train_log["positives"] == second.train_log["positives"] and sum(first.train_log["positives"].values())
    assert first.metrics["mAP"] == second.metrics["mAP"]


def test_workers_cache_vectors_in_the_drivers_order(tmp_path, random_weights):
    """A run saved by sppdet 0.1 pools channel-major; the pool's workers build their own
    extractor and must write its vectors in that order too, not in the default one."""
    from sppdet.backbones import build_trunk
    from sppdet.cache import CachedData
    from sppdet.extractors import extractor_from_config
    from sppdet.config import BackboneConfig, Config, FeatureConfig, ProposalConfig
    from sppdet.datasets import load_dataset
    from sppdet.datasets.synth import write_synthetic
    from sppdet.parallel import make_executor

    write_synthetic(tmp_path / "syn", 4, seed=5)
    cfg = Config(method="rcnn", device="cpu", features=FeatureConfig(levels=[2, 1]),
                 backbone=BackboneConfig(weights=str(random_weights)), proposals=ProposalConfig(max_boxes=12, work_size=200))
    ext = extractor_from_config(cfg, build_trunk("mobilenet_v2", cfg.backbone.weights), "cpu")
    ext.channels_last = False
    ds = load_dataset(tmp_path / "syn", "test")
    data = CachedData.from_config(cfg, ext, tmp_path / "cache")
    with make_executor(workers=2) as ex:
        recs = data.prepare(ds.records, ds.report, executor=ex)
    assert recs and data.last_stats["computed"] == len(recs)
    for r in recs:
        boxes = data.boxes(r)
        fresh = ext.pool(ext.compute(r.read()), boxes)  # the driver's own, channel-major
        assert torch.equal(ext.pool(data.maps(r), boxes), fresh)


def test_a_negative_zero_box_is_the_same_window(tmp_path, monkeypatch):
    """np.unique merges -0.0 and +0.0; the lookup must too, or such a window is never
    found in its file and is convolved again on every read."""
    from sppdet.rcnn import WindowVectorCache

    ext = _ext()
    img = np.random.default_rng(3).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    cache = WindowVectorCache(tmp_path, ext)
    neg = np.array([[-0.0, -0.0, 50, 50]], dtype=np.float32)
    assert np.signbit(neg[0, 0])
    cache.get("img", lambda: img, np.concatenate([neg, BOXES]))
    assert cache.has("img", BOXES[:1]) and cache.has("img", neg)
    monkeypatch.setattr(RCNNExtractor, "_pool_image", lambda *a: pytest.fail("a cached window was convolved"))
    got = cache.get("img", lambda: pytest.fail("image read"), neg)
    assert torch.equal(ext.pool(got, neg), ext.pool(got, BOXES[:1]))


def test_has_reads_the_window_list_and_get_checks_the_vectors(tmp_path, caplog):
    """``has`` looks only at the file's boxes (cheap); damage in the vectors is found by
    ``get``, which recomputes them."""
    from sppdet.fileio import load_checked_arrays
    from sppdet.rcnn import WindowVectorCache

    ext = _ext()
    img = np.random.default_rng(4).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    cache = WindowVectorCache(tmp_path, ext)
    cache.get("img", lambda: img, BOXES)
    z = load_checked_arrays(cache.path("img"), ("boxes", "vectors"))
    vectors = z["vectors"].copy()
    vectors[0, 0] += 1
    raw = bytearray(cache.path("img").read_bytes())
    at = raw.find(z["vectors"][:4].tobytes())
    assert at > 0
    raw[at:at + 8] = vectors[0, :4].tobytes()  # same size, zip CRC of 'vectors' now wrong
    cache.path("img").write_bytes(bytes(raw))
    assert cache.has("img", BOXES)  # the window list is intact
    got = cache.get("img", lambda: img, BOXES)
    assert "damaged window cache file" in caplog.text
    assert torch.equal(ext.pool(got, BOXES), ext.pool(ext.compute(img), BOXES))


def test_task_extractor_keeps_one_extractor_per_vector_order(random_weights):
    """A process that serves runs of both vector orders (0.1's channel-major runs) must not
    hand one order's extractor to the other."""
    from sppdet.cache import task_extractor
    from sppdet.extractors import ExtractorSettings
    from sppdet.config import BackboneConfig, Config, FeatureConfig

    cfg = Config(backbone=BackboneConfig(weights=str(random_weights)),
                 features=FeatureConfig(scales=[97]))  # a key no other test uses
    a = task_extractor(ExtractorSettings.from_config(cfg), _weights_id(random_weights), "cpu", channels_last=True)
    b = task_extractor(ExtractorSettings.from_config(cfg), _weights_id(random_weights), "cpu", channels_last=False)
    assert a.channels_last is True and b.channels_last is False
    assert task_extractor(ExtractorSettings.from_config(cfg), _weights_id(random_weights), "cpu", channels_last=True) is a


def _weights_id(path):
    from sppdet.backbones import build_trunk

    return build_trunk("mobilenet_v2", str(path)).weights_id
