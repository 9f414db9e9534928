#!/usr/bin/env python3
"""Independent reference for regions of interest: cuts each region out of a frame and fits
it to the model's square input with Pillow, step by step as the geometry is specified.

Usage: region_reference.py CASES.json
CASES.json: {"frame": "frame.rgb", "width": W, "height": H, "cases": [
  {"rect": [x, y, w, h], "fit": "crop"|"pad"|"stretch", "geometry": "resize-crop"|"crop-resize",
   "resize_shorter": 256, "crop_fraction": 0.875, "crop": 224,
   "interpolation": "bilinear"|"bicubic", "pad_rgb": [r, g, b], "out": "case0.rgb"}, ...]}
Writes each case's S×S RGB bytes to its "out" and prints one JSON line per case with the
input_rect (the part of the frame the model sees, in frame pixels).
"""
import json
import math
import sys
from pathlib import Path

from PIL import Image

FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def crop_fit(img, case):
    """The preset's geometry on the region as if it were the whole frame."""
    w, h = img.size
    s = case["crop"]
    f = FILTERS[case["interpolation"]]
    if case["geometry"] == "resize-crop":
        # torchvision Resize(int): shorter side to n, longer int(n * long / short)
        n = case["resize_shorter"]
        if w <= h:
            size = (n, int(n * h / w))
        else:
            size = (int(n * w / h), n)
        resized = img.resize(size, f)
        # torchvision CenterCrop: int(round((size - crop) / 2.0))
        x = int(round((size[0] - s) / 2.0))
        y = int(round((size[1] - s) / 2.0))
        out = resized.crop((x, y, x + s, y + s))
        # the kept window back in region pixels, rounded to the nearest (halves up)
        def back(v, src, dst):
            return (2 * v * src + dst) // (2 * dst)
        x0, x1 = back(x, w, size[0]), back(x + s, w, size[0])
        y0, y1 = back(y, h, size[1]), back(y + s, h, size[1])
        return out, (x0, y0, x1 - x0, y1 - y0)
    # TensorFlow EfficientNet eval: center square of int(fraction * shorter), then resize
    side = max(1, int(case["crop_fraction"] * min(w, h)))
    x, y = (w - side + 1) // 2, (h - side + 1) // 2
    out = img.crop((x, y, x + side, y + side)).resize((s, s), f)
    return out, (x, y, side, side)


def pad_fit(img, case):
    w, h = img.size
    s = case["crop"]
    long, short = max(w, h), min(w, h)
    scaled = max(1, int(short * s / long + 0.5))
    size = (s, scaled) if w >= h else (scaled, s)
    resized = img.resize(size, FILTERS[case["interpolation"]])
    canvas = Image.new("RGB", (s, s), tuple(case["pad_rgb"]))
    canvas.paste(resized, ((s - size[0]) // 2, (s - size[1]) // 2))
    return canvas, (0, 0, w, h)


def resolve_fraction(fraction, width, height):
    """[x, y, w, h] fractions of a width×height frame -> pixels: each edge at
    floor(f * size + 0.5), clamped to the frame, at least one pixel wide and high."""
    def edges(f0, f1, size):
        def at(f):
            return min(max(math.floor(f * size + 0.5), 0), size)
        start = min(at(f0), size - 1)
        return start, max(at(f1), start + 1) - start
    fx, fy, fw, fh = fraction
    x, w = edges(fx, fx + fw, width)
    y, h = edges(fy, fy + fh, height)
    return [x, y, w, h]


def fit_region(frame, case):
    """Cuts case["rect"] (or case["rect_fraction"] of the frame) out of the RGB image
    `frame` and fits it: returns the S×S image and the input_rect (what the model sees, in
    frame pixels)."""
    if "rect_fraction" in case:
        x, y, w, h = resolve_fraction(case["rect_fraction"], *frame.size)
    else:
        x, y, w, h = case["rect"]
    region = frame.crop((x, y, x + w, y + h))
    if case["fit"] == "crop":
        out, (ix, iy, iw, ih) = crop_fit(region, case)
    elif case["fit"] == "pad":
        out, (ix, iy, iw, ih) = pad_fit(region, case)
    else:
        out = region.resize((case["crop"], case["crop"]), FILTERS[case["interpolation"]])
        ix, iy, iw, ih = 0, 0, w, h
    return out, [x + ix, y + iy, iw, ih]


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    base = Path(sys.argv[1]).parent
    frame = Image.frombytes("RGB", (spec["width"], spec["height"]),
                            (base / spec["frame"]).read_bytes())
    for case in spec["cases"]:
        out, input_rect = fit_region(frame, case)
        (base / case["out"]).write_bytes(out.tobytes())
        print(json.dumps({"input_rect": input_rect}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
