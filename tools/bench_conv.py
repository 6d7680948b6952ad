"""Benchmark: the trunk's conv time per image size, with glibc's default allocator and with
sppdet's setting (sppdet/runtime.py), in NCHW and channels-last layout.

Why it exists: on CPU, conv time per pixel grew with image size until the allocator stopped
returning large blocks to the kernel; this prints the evidence. Each allocator setting runs in
its own process, since mallopt cannot be undone.
Usage: python tools/bench_conv.py [--threads 2] [--repeat 3] [--random-weights]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SIZES = [(480, 640), (576, 768), (688, 917), (864, 1152), (1200, 1600)]  # BCCD at the 5 scales
RCNN_BATCH = (64, 224, 224)  # R-CNN's batch of warped windows


def measure(threads: int, repeat: int, pretrained: bool) -> dict:
    import torch

    from sppdet.backbones import build_trunk

    torch.set_num_threads(threads)
    trunk = build_trunk("mobilenet_v2", pretrained=pretrained).eval()
    out = {}
    shapes = [(1, 3, h, w) for h, w in SIZES] + [(RCNN_BATCH[0], 3) + RCNN_BATCH[1:]]
    with torch.inference_mode():
        for shape in shapes:
            x = (torch.rand(shape) - trunk.mean) / trunk.std
            for layout, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
                xi = x.clone(memory_format=fmt)
                trunk.body(xi)  # warm-up
                ts = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    trunk.body(xi)
                    ts.append(time.perf_counter() - t0)
                out[f"{'x'.join(map(str, shape))}/{layout}"] = min(ts)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--random-weights", action="store_true", help="skip loading ImageNet weights")
    ap.add_argument("--child", choices=["default", "tuned"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.child == "tuned":
            from sppdet.runtime import tune_cpu_allocator

            assert tune_cpu_allocator(), "mallopt is unavailable here"
        print(json.dumps(measure(args.threads, args.repeat, not args.random_weights)))
        return
    res = {}
    for mode in ("default", "tuned"):
        cmd = [sys.executable, __file__, "--child", mode, "--threads", str(args.threads),
               "--repeat", str(args.repeat)] + (["--random-weights"] if args.random_weights else [])
        env = {k: v for k, v in os.environ.items() if k != "SPPDET_NO_MALLOC_TUNING"}
        res[mode] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)
    print(f"min seconds of {args.repeat}, {args.threads} threads; µs per input pixel in brackets\n")
    print("| input | default, NCHW | default, channels-last | tuned, NCHW | tuned, channels-last |")
    print("|---|---|---|---|---|")
    for key in dict.fromkeys(k.split("/")[0] for k in res["default"]):
        n, _, h, w = map(int, key.split("x"))
        cells = []
        for mode in ("default", "tuned"):
            for layout in ("nchw", "channels_last"):
                t = res[mode][f"{key}/{layout}"]
                cells.append(f"{t:.3f} ({t / (n * h * w) * 1e6:.3f})")
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
