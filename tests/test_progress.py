"""sppdet.progress: a live bar on a terminal, a line every 30 s otherwise; a caller's own
settings win."""
import io
import sys

from sppdet.progress import progress


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_not_a_terminal_updates_every_30_s(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    bar = progress(range(3), file=io.StringIO())
    assert bar.mininterval == 30.0 and bar.dynamic_ncols and list(bar) == [0, 1, 2]
    assert progress(range(3), mininterval=1.0, file=io.StringIO()).mininterval == 1.0


def test_a_terminal_keeps_tqdm_s_default(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Tty())
    from tqdm import tqdm

    default = tqdm(range(1), file=io.StringIO()).mininterval
    assert progress(range(3), file=io.StringIO()).mininterval == default != 30.0
