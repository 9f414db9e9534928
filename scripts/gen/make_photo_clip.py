#!/usr/bin/env python3
"""Write an H.264 clip made of real photos, with a slow zoom and pan on each.

Usage::

    make_photo_clip.py OUT.mp4 [--size 1280x720] [--frames-per-photo 25] [--fps 25]
                       [--photos NAME,NAME,...]

The photos are the labelled ones of ``tests/reference/photos.py`` (from the
``scikit-image`` wheel, no download): a cat, coffee, a rocket, a motorcycle, a camera on
a tripod, plus the astronaut (``--photos`` picks others among every photo the wheel
ships, ``photos.py``'s ``photo_names``: footage disjoint from another clip's). Each
photo is center-cut to the clip's aspect ratio, then
shown for ``--frames-per-photo`` frames while the view zooms in from 100% to 80% of the
photo and drifts sideways, so that consecutive frames differ as in real footage (OpenCV
INTER_AREA / INTER_CUBIC to the output size). Frames are piped to ffmpeg as raw video and
encoded with libx264 (yuv420p, CRF 18, one thread: the same input gives the same file).
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

import cv2
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]  # the repository root, two folders up
sys.path.insert(0, str(ROOT / "tests" / "reference"))
sys.dont_write_bytecode = True  # no tests/reference/__pycache__ in the tree
from photos import load_named, load_photos  # noqa: E402


def frames_for(rgb: np.ndarray, size: tuple[int, int], n: int, seq: int):
    out_w, out_h = size
    h, w = rgb.shape[:2]
    aspect = out_w / out_h
    # Largest region of the photo with the clip's aspect ratio.
    base_w, base_h = (w, int(w / aspect)) if w / h < aspect else (int(h * aspect), h)
    for i in range(n):
        t = i / max(n - 1, 1)
        zoom = 1.0 - 0.2 * t
        cw, ch = base_w * zoom, base_h * zoom
        # Drift left-to-right on even photos, right-to-left on odd ones.
        drift = (t if seq % 2 == 0 else 1 - t)
        x0 = (w - cw) * (0.3 + 0.4 * drift)
        y0 = (h - ch) * 0.5
        m = np.array([[out_w / cw, 0, -x0 * out_w / cw], [0, out_h / ch, -y0 * out_h / ch]])
        interp = cv2.INTER_AREA if cw > out_w else cv2.INTER_CUBIC
        yield cv2.warpAffine(rgb, m, (out_w, out_h), flags=interp, borderMode=cv2.BORDER_REFLECT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--frames-per-photo", type=int, default=25)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--photos", default=None,
                    help="comma-separated photo names (default: the labelled ones + astronaut)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    if args.photos:
        photos = [(n, rgb, ()) for n, rgb in load_named(args.photos.split(","))]
    else:
        photos = load_photos(include_unlabeled=True)
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(args.fps), "-i", "-",
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-threads", "1",
           "-pix_fmt", "yuv420p", "-g", str(args.fps * 2), args.out]
    enc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    count = 0
    assert enc.stdin is not None
    for seq, (_name, rgb, _expected) in enumerate(photos):
        for frame in frames_for(rgb, (w, h), args.frames_per_photo, seq):
            enc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
            count += 1
    enc.stdin.close()
    if enc.wait() != 0:
        raise SystemExit("ffmpeg failed")
    names = ", ".join(n for n, _, _ in photos)
    print(f"wrote {args.out}: {count} frames {w}x{h} @ {args.fps} fps ({names})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
