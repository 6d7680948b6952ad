"""tools/finetune_conv.py: the trunk's last blocks trained through the SPP layer."""
import numpy as np
import torch


def test_spp_pool_passes_the_gradient_to_each_bins_maximum():
    """Hand-worked: a 1-level pyramid over a 3x3 window sends d(loss)/d(bin) to the bin's
    argmax cell and nothing elsewhere (what conv fine-tuning relies on)."""
    from sppdet.ops import spp_pool

    fmap = torch.zeros(2, 5, 5)
    fmap[0, 2, 3] = 5.0  # channel 0's maximum inside the window x 1..3, y 1..3
    fmap[1, 1, 1] = 2.0
    fmap[0, 0, 0] = 9.0  # outside the window: must get no gradient
    fmap.requires_grad_(True)
    out = spp_pool(fmap, torch.tensor([[1, 1, 3, 3]]), [1], impl="roi_pool")
    assert out.tolist() == [[5.0, 2.0]]
    (out * torch.tensor([[3.0, 7.0]])).sum().backward()
    expected = torch.zeros(2, 5, 5)
    expected[0, 2, 3], expected[1, 1, 1] = 3.0, 7.0
    assert torch.equal(fmap.grad, expected)


def test_only_the_tail_learns_and_the_file_is_a_trunk(tmp_path, random_weights, load_tool):
    from sppdet.backbones import build_trunk
    from sppdet.datasets.synth import write_synthetic

    write_synthetic(tmp_path / "syn", 6, seed=2)
    out = tmp_path / "ft"
    rc = load_tool("finetune_conv").main(["--data", str(tmp_path / "syn"), "--split", "trainval", "--out", str(out),
                       "--cache", str(tmp_path / "cache"), "--blocks", "2", "--iterations", "4", "--lr", "0.05",
                       "--workers", "1", "--set", f"backbone.weights={random_weights}", "--set", "device=cpu",
                       "--set", "proposals.max_boxes=40", "--set", "proposals.work_size=200",
                       "--set", "features.scales=[160]", "--set", "finetune.hidden=32"])
    assert rc == 0
    base = build_trunk("mobilenet_v2", str(random_weights)).body.state_dict()
    tuned_trunk = build_trunk("mobilenet_v2", str(out / "trunk.pth"))
    tuned = tuned_trunk.body.state_dict()
    assert tuned.keys() == base.keys()
    changed = {k.split(".")[0] for k in base if not torch.equal(base[k], tuned[k])}
    assert changed == {"12", "13"}  # features[:14]: the last two blocks, and only they
    running = [k for k in base if "running_" in k or "num_batches" in k]
    assert running and all(torch.equal(base[k], tuned[k]) for k in running)  # BatchNorm statistics kept
    assert tuned_trunk.weights_id != build_trunk("mobilenet_v2", str(random_weights)).weights_id  # new cache key
    log = __import__("json").loads((out / "finetune_conv.json").read_text())
    assert log["blocks"] == 2 and log["iterations"] == 4 and len(log["loss_per_50_steps"]) == 1
    assert np.isfinite(log["loss_per_50_steps"][0])


def test_several_scales_are_refused(tmp_path, random_weights, capsys, load_tool):
    from sppdet.datasets.synth import write_synthetic

    write_synthetic(tmp_path / "syn", 2, seed=1)
    rc = load_tool("finetune_conv").main(["--data", str(tmp_path / "syn"), "--out", str(tmp_path / "ft"),
                       "--set", f"backbone.weights={random_weights}", "--set", "features.scales=[160,200]"])
    assert rc == 2 and "one scale" in capsys.readouterr().err


def test_an_unwritable_out_is_one_line_before_any_work(tmp_path, random_weights, capsys, load_tool):
    (tmp_path / "file").write_text("x")
    rc = load_tool("finetune_conv").main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "file"),
                                          "--set", f"backbone.weights={random_weights}", "--iterations", "0"])
    assert rc == 2 and "--iterations" in capsys.readouterr().err
    rc = load_tool("finetune_conv").main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "file"),
                                          "--set", f"backbone.weights={random_weights}"])
    err = capsys.readouterr().err
    assert rc == 2 and "--out" in err and "Traceback" not in err
