"""The fixture the bad-input tests share: one tiny trained run, trained once per session with
the root conftest's ``tiny_run`` factory. Its helpers (inputs, settings, detect's calls) are in
``makers.py``; ``__init__.py`` makes this folder the package ``bad_inputs``, so its module names
never clash with those of tests/."""
import pytest

from .makers import LATIN1, RUN_FAST, _latin1_names_and_bom


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory, tiny_run):
    """A run trained on 10 synthetic images, two of them renamed to non-UTF-8 names and every
    split file saved with a BOM, for the journal, run-folder, API and encoding cases (small
    images: quick detection): ``(folder, detector, images)``."""
    d = tmp_path_factory.mktemp("tiny")
    rename = {"000001": LATIN1, "000008": LATIN1 + b"-t"}
    det = tiny_run(d, 10, prepare=lambda data: _latin1_names_and_bom(data, rename), workers=1, **RUN_FAST)
    imgs = sorted((d / "data" / "JPEGImages").glob("*.jpg"))
    return d, det, imgs
