"""sppdet.inputs, beyond test_api.py's cases: list files (relative, absolute, comments, a BOM),
each file once whatever the path that names it, videos only when asked, Ultralytics' split
folders, and output names shortened with a hash of the whole name (recomputed here)."""
import hashlib
import os
from pathlib import Path

from PIL import Image

from sppdet.inputs import MAX_NAME_BYTES, expand_inputs, output_names


def images(folder: Path, names) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n in names:
        (folder / n).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 6)).save(folder / n)
        out.append(folder / n)
    return out


def test_a_list_file_names_images_relative_to_itself(tmp_path):
    a, b = images(tmp_path / "imgs", ["a.jpg", "b.png"])
    c, = images(tmp_path / "elsewhere", ["c.jpg"])
    lst = tmp_path / "lists" / "mine.txt"
    lst.parent.mkdir()
    lst.write_bytes(b"\xef\xbb\xbf../imgs/b.png\n# a comment\n\n  ../imgs/a.jpg  \n" + str(c).encode()
                    + b"\n../imgs/gone.jpg\n")
    paths, skipped = expand_inputs([lst])
    assert paths == [lst.parent / "../imgs/b.png", lst.parent / "../imgs/a.jpg", c]  # the list's order
    assert skipped == [f"{lst.parent / '../imgs/gone.jpg'}: not found"]


def test_each_file_once_whatever_names_it(tmp_path):
    a, b = images(tmp_path / "f", ["a.jpg", "b.jpg"])
    (tmp_path / "link.jpg").symlink_to(a)
    (tmp_path / "list.lst").write_text("f/b.jpg\nf/a.jpg\n")
    paths, skipped = expand_inputs([b, tmp_path / "link.jpg", tmp_path / "f", tmp_path / "list.lst",
                                    tmp_path / "f" / ".." / "f" / "a.jpg"])
    assert paths == [b, tmp_path / "link.jpg"] and skipped == []  # the link is a.jpg: a.jpg is not added again


def test_videos_only_when_asked(tmp_path):
    img, = images(tmp_path, ["a.jpg"])
    (tmp_path / "clip.MP4").write_bytes(b"\0")
    (tmp_path / "notes.txt").write_text("not a list given by name: ignored in a folder")
    assert expand_inputs([tmp_path]) == ([img], [])
    assert expand_inputs([tmp_path], videos=True) == ([img, tmp_path / "clip.MP4"], [])
    only_clips = tmp_path / "clips"
    only_clips.mkdir()
    (only_clips / "b.mkv").write_bytes(b"\0")
    assert expand_inputs([only_clips], videos=True) == ([only_clips / "b.mkv"], [])
    paths, skipped = expand_inputs([only_clips])
    assert paths == [] and skipped == [f"{only_clips}: no images in this folder"]


def test_ultralytics_split_folders_are_named_not_guessed(tmp_path):
    root = tmp_path / "yolo"
    images(root / "images" / "train", ["t0.jpg", "t1.jpg"])
    images(root / "images" / "val", ["v0.jpg"])
    paths, skipped = expand_inputs([root])
    assert paths == [] and len(skipped) == 1
    assert f"{root / 'images' / 'train'}: 2 images, {root / 'images' / 'val'}: 1 image; pass the one you want" \
        in skipped[0]
    val = expand_inputs([root / "images" / "val"])
    assert val == ([root / "images" / "val" / "v0.jpg"], [])


def test_more_than_six_folders_are_counted_not_listed(tmp_path):
    for i in range(8):
        images(tmp_path / "top" / f"d{i}", ["x.jpg"])
    _, (line,) = expand_inputs([tmp_path / "top"])
    assert line.count(": 1 image") == 6 and line.endswith("and 2 more folders: pass those folders")


def reference_fit(name: str, suffix: str) -> str:
    """The documented shortening: the longest UTF-8 prefix that leaves room for '-', 10 hex
    digits of the sha1 of the whole name, and the suffix, within 255 bytes."""
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    room = MAX_NAME_BYTES - len(suffix.encode()) - 11
    prefix = name.encode()[:room].decode("utf-8", errors="ignore")
    return f"{prefix}-{digest}{suffix}"


def test_long_names_are_shortened_with_a_hash_of_the_whole_name(tmp_path):
    a = tmp_path / ("é" * 130 + "a.jpg")  # 2-byte characters: the cut must not split one
    b = tmp_path / ("é" * 130 + "b.jpg")  # the same prefix, another end
    names = output_names([a, b])
    assert names[a] == Path(reference_fit("é" * 130 + "a", "_det.jpg"))
    assert names[a] != names[b] and all(len(os.fsencode(n.name)) <= 255 for n in names.values())
    assert names[a].name.startswith("é" * 118 + "-")  # 236 bytes of é, then the hash
    short = tmp_path / ("x" * 247 + ".jpg")  # 247 + len("_det.jpg") = 255: fits as it is
    assert output_names([short])[short] == Path("x" * 247 + "_det.jpg")


def test_output_names_keep_the_folders_below_the_common_one(tmp_path):
    a, b, c = images(tmp_path, ["in/2021/a.jpg", "in/2022/a.jpg", "in/b.png"])
    assert output_names([a, b, c], suffix=".json") == {a: Path("2021/a.json"), b: Path("2022/a.json"),
                                                        c: Path("b.json")}
    assert output_names([a]) == {a: Path("a_det.jpg")} and output_names([]) == {}
