"""tools/repeated_splits.py: paired differences and their t interval, checked by hand."""
import json
from pathlib import Path
from types import SimpleNamespace


def test_summary_pairs_each_split_and_reuses_finished_runs(tmp_path, monkeypatch, load_tool):
    tool = load_tool("repeated_splits")
    maps = {("base", 0): 0.5, ("base", 1): 0.6, ("base", 2): 0.7,
            ("other", 0): 0.55, ("other", 1): 0.62, ("other", 2): 0.78}
    calls = []

    def fake_train(data, run, **kw):
        name, seed = Path(run).name.split("-seed")
        assert f"data.split_seed={seed}" in kw["overrides"] and kw["eval_split"] == "test"
        calls.append((name, int(seed)))
        return SimpleNamespace(metrics={"mAP": maps[name, int(seed)], "AP": {}})

    monkeypatch.setattr(tool.sppdet, "train", fake_train)
    argv = ["--data", "d", "--seeds", "0", "1", "2", "--setting", "base=proposals.mode=fast",
            "--setting", "other=proposals.mode=quality,svm.C=0.01", "--out", str(tmp_path)]
    assert tool.main(argv) == 0
    s = json.loads((tmp_path / "summary.json").read_text())["settings"]
    # diffs 0.05, 0.02, 0.08: mean 0.05, sd 0.03, t(0.975, 2 df) = 4.302653 -> half-width 0.074524
    o = s["other"]
    assert abs(o["paired_diff_mean"] - 0.05) < 1e-12 and abs(o["paired_diff_sd"] - 0.03) < 1e-12
    assert abs(o["paired_diff_ci95"][0] - (0.05 - 0.074524)) < 1e-5
    assert abs(o["paired_diff_ci95"][1] - (0.05 + 0.074524)) < 1e-5
    assert o["overrides"] == ["proposals.mode=quality", "svm.C=0.01"]
    assert s["base"]["paired_diff_mean"] == 0.0
    assert "[-0.025, +0.125]" in (tmp_path / "summary.md").read_text()
    assert len(calls) == 6
    assert tool.main(argv) == 0 and len(calls) == 6  # finished runs are read back, not retrained


def test_bad_settings_and_stale_runs_are_one_line_errors(tmp_path, monkeypatch, capsys, load_tool):
    import pytest

    tool = load_tool("repeated_splits")
    monkeypatch.setattr(tool.sppdet, "train", lambda data, run, **kw: SimpleNamespace(metrics={"mAP": 0.5, "AP": {}}))
    base = ["--data", "d", "--seeds", "0", "1", "--out", str(tmp_path / "o")]
    for bad in (["--setting", "../x=seed=1"], ["--setting", "a=seed=1", "--setting", "a=seed=2"],
                ["--setting", "noequals"]):
        with pytest.raises(SystemExit) as exc:
            tool.main(base + bad)
        assert exc.value.code == 2
    assert tool.main(base + ["--setting", "a=seed=1"]) == 0
    capsys.readouterr()
    # the same name with other overrides would silently reuse the old runs: refused
    assert tool.main(base + ["--setting", "a=seed=2"]) == 2
    assert "was trained with ['seed=1']" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert tool.main(["--data", "d", "--setting", "a=seed=1", "--out", str(tmp_path / "file")]) == 2
    assert "--out" in capsys.readouterr().err
