"""Write a video (mp4v in .mp4, or MJPG in .avi) from images, one image per frame, to try
``sppdet detect`` on a video without finding one first.

    python tools/make_clip.py ../shared/data/bccd/BCCD/JPEGImages --frames 60 --fps 10 --out runs/bccd_clip.mp4
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    import cv2

    from sppdet.images import is_image_file

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("images", help="a folder of images (sorted by name)")
    p.add_argument("--out", required=True, help="the video to write: .mp4 (mp4v) or .avi (MJPG)")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--fps", type=float, default=10.0)
    a = p.parse_args(argv)
    files = sorted(f for f in Path(a.images).iterdir() if is_image_file(f))[: a.frames]
    if not files:
        print(f"make_clip: error: no images in {a.images}", file=sys.stderr)
        return 2
    first = cv2.imread(str(files[0]))
    size = (first.shape[1], first.shape[0])
    fourcc = "MJPG" if a.out.lower().endswith(".avi") else "mp4v"
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(a.out, cv2.VideoWriter_fourcc(*fourcc), a.fps, size)
    if not w.isOpened():
        print(f"make_clip: error: OpenCV cannot write {a.out} with {fourcc}", file=sys.stderr)
        return 2
    try:
        for f in files:
            img = cv2.imread(str(f))
            w.write(img if (img.shape[1], img.shape[0]) == size else cv2.resize(img, size))
    finally:
        w.release()
    print(f"{len(files)} frames of {size[0]}x{size[1]} at {a.fps:g} fps written to {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
