"""The README cannot go stale: every ``sppdet …`` command in it parses with today's CLI, every
file it names exists, and its Python example runs against a real (tiny) run."""
import re
import shlex
from pathlib import Path

import pytest

from sppdet.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _commands(prefix: str) -> list[str]:
    """Commands in ```bash blocks, and whole commands quoted inline (`sppdet train --data …`)."""
    cmds = [m for m in re.findall(r"`(?:/usr/bin/time -v )?(sppdet [a-z][^`]*)`", README)
            if len(m.split()) >= 3]
    for block in _blocks("bash"):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            for part in re.split(r"&&|;", line):
                part = part.strip()
                if part.startswith(prefix):
                    cmds.append(part)
    return cmds


def test_readme_has_commands():
    assert len(_commands("sppdet ")) >= 10


@pytest.mark.parametrize("cmd", _commands("sppdet "))
def test_every_sppdet_command_in_the_readme_parses(cmd):
    argv = shlex.split(cmd, comments=True)[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: unknown option or bad value
        pytest.fail(f"README command does not parse (exit {exc.code}): {cmd}")
    assert getattr(args, "func", None) is not None, cmd


@pytest.mark.parametrize("path", sorted(set(re.findall(r"\b((?:tools|configs|tests|sppdet)/[\w./-]+\.(?:py|sh|yaml))",
                                                       README))))
def test_every_file_the_readme_names_exists(path):
    assert (ROOT / path).is_file(), path


def test_the_python_example_runs(tmp_path):
    """The README's first Python block, on a run trained here and one of its images."""
    import torch
    import torchvision

    import sppdet
    from sppdet.datasets.synth import write_synthetic

    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v2().state_dict(), tmp_path / "w.pth")
    write_synthetic(tmp_path / "data", 8, 5)
    sppdet.train(tmp_path / "data", tmp_path / "run", cache=tmp_path / "cache",
                 backbone={"weights": str(tmp_path / "w.pth")}, proposals={"max_boxes": 100, "work_size": 250},
                 features={"scales": [256]})
    image = sorted((tmp_path / "data" / "JPEGImages").glob("*.jpg"))[0]
    code = _blocks("python")[0]
    assert "sppdet.load(" in code and "sppdet.evaluate(" in code
    code = (code.replace('"runs/bccd"', repr(str(tmp_path / "run"))).replace('"photo.jpg"', repr(str(image)))
            .replace('"../shared/data/bccd/BCCD"', repr(str(tmp_path / "data"))))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["painted"].shape == namespace["r"].image.shape
    assert set(namespace["tv"]) == {"boxes", "scores", "labels"} and 0 <= namespace["metrics"]["mAP"] <= 1
