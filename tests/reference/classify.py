#!/usr/bin/env python3
"""Independent reference classifier for streamclassd's integration tests.

Usage::

    classify.py --model M.onnx --video clip.mp4 --out ref.json
                [--preset torchvision|caffe|tf-efficientnet-lite] [--resampler pil|opencv]
                [--top-k 5] [--regions regions.json]

It shares no code with the daemon: it decodes ``--video`` with OpenCV
(``cv2.VideoCapture``), prepares every decoded frame (index 0, 1, 2, ... in decode
order) with Pillow and numpy, classifies it with ONNX Runtime, and writes the results as
JSON for the Rust tests to compare against.

Presets (what each model family was evaluated with):

``torchvision``
    ``Resize(256)`` with Pillow's antialiased BILINEAR, the longer side
    ``int(256 * long / short)``; ``CenterCrop(224)`` at
    ``int(round((size - 224) / 2.0))`` (Python's round: half to even); RGB;
    ``x / 255``; ``(x - mean) / std`` with ImageNet mean and std.
``caffe``
    Same geometry; BGR; ``x - [103.939, 116.779, 123.68]`` on 0..255 values.
``tf-efficientnet-lite``
    Center crop of side ``int(0.875 * min(h, w))`` at offsets ``(size - side + 1) // 2``
    (TensorFlow's EfficientNet eval), Pillow BICUBIC resize of that crop to 224x224;
    RGB; ``(x - 127) / 128``.

``--resampler opencv`` replaces every Pillow resize with ``cv2.resize`` (INTER_LINEAR for
bilinear, INTER_CUBIC for bicubic): what a pipeline built on OpenCV's plain resize gets.

``--regions`` (a JSON list of ``{"name", "rect": [x, y, w, h], "fit": "crop"|"pad"|
"stretch", "pad_rgb": [r, g, b], "fps": f or null}``) also classifies those regions of
every frame: cut from the RGB frame, then fit with Pillow as
``tests/support/region_reference.py`` does (the preset's geometry, filter and
normalization; Pillow only). A region with an ``fps`` is classified on the frames its
schedule admits on the video's timeline (frame i at i / video fps: due at 0, 1/fps,
2/fps, ...).

The model's first input decides the layout (``[N,3,H,W]`` NCHW or ``[N,H,W,3]`` NHWC)
and the element type (float32 or float16). Inference: ONNX Runtime,
``CPUExecutionProvider``, ``intra_op_num_threads=1``. If an output row is already a
probability distribution (all values in [0, 1], sum 1 within 1e-3) it is used as is,
otherwise a max-subtracted softmax (float64) turns it into probabilities.

Output JSON::

    {"model": "<--model>", "preset": "...", "resampler": "...",
     "frames": [{"frame": 0,
                 "top": [top_k indices, by descending probability, ties: lower index],
                 "scores": [their probabilities],
                 "probs": [every class probability],
                 "logits": [the raw output row],
                 "regions": {"<name>": {"top": [...], "scores": [...], "probs": [...],
                                        "input_rect": [x, y, w, h]}, ...}}, ...]}
    ("regions" only with --regions; a region not due in a frame is absent from it.)
"""

from __future__ import annotations

import argparse
import json
import sys

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "support"))
from region_reference import fit_region  # noqa: E402

PRESETS = {
    "torchvision": dict(mode="resize-crop", resize_shorter=256, crop=224, filter="bilinear",
                        order="rgb", scale=1.0 / 255.0,
                        mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    "caffe": dict(mode="resize-crop", resize_shorter=256, crop=224, filter="bilinear",
                  order="bgr", scale=1.0, mean=[103.939, 116.779, 123.68], std=[1.0, 1.0, 1.0]),
    "tf-efficientnet-lite": dict(mode="crop-resize", crop_fraction=0.875, crop=224,
                                 filter="bicubic", order="rgb", scale=1.0,
                                 mean=[127.0, 127.0, 127.0], std=[128.0, 128.0, 128.0]),
}

PIL_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
CV_FILTERS = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


def resize(rgb: np.ndarray, size: tuple[int, int], filt: str, resampler: str) -> np.ndarray:
    """Resize an HxWx3 uint8 RGB array to (w, h)."""
    if resampler == "pil":
        return np.asarray(Image.fromarray(rgb).resize(size, PIL_FILTERS[filt]))
    return cv2.resize(rgb, size, interpolation=CV_FILTERS[filt])


def prepare(frame_bgr: np.ndarray, p: dict, resampler: str) -> np.ndarray:
    """One frame -> HxWx3 float32 in the model's channel order, normalized."""
    rgb = frame_bgr[:, :, ::-1].copy()
    h, w = rgb.shape[:2]
    crop = p["crop"]
    if p["mode"] == "resize-crop":
        s = p["resize_shorter"]
        new_w, new_h = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
        img = resize(rgb, (new_w, new_h), p["filter"], resampler)
        top = int(round((new_h - crop) / 2.0))
        left = int(round((new_w - crop) / 2.0))
        img = img[top:top + crop, left:left + crop]
    else:
        side = int(p["crop_fraction"] * min(h, w))
        top = (h - side + 1) // 2
        left = (w - side + 1) // 2
        img = resize(np.ascontiguousarray(rgb[top:top + side, left:left + side]),
                     (crop, crop), p["filter"], resampler)
    return normalize(img, p)


def normalize(img: np.ndarray, p: dict) -> np.ndarray:
    """HxWx3 uint8 RGB -> float32 in the model's channel order, normalized."""
    if p["order"] == "bgr":
        img = img[:, :, ::-1]
    x = img.astype(np.float32) * np.float32(p["scale"])
    mean = np.array(p["mean"], dtype=np.float32)
    std = np.array(p["std"], dtype=np.float32)
    return (x - mean) / std


def to_probs(row: np.ndarray) -> np.ndarray:
    """Return `row` if it is a probability distribution, else its softmax."""
    z = row.astype(np.float64)
    if np.all(z >= 0) and np.all(z <= 1) and abs(float(z.sum()) - 1.0) <= 1e-3:
        return z
    e = np.exp(z - z.max())
    return e / e.sum()


def top_k(probs: np.ndarray, k: int) -> list[int]:
    """Indices of the k largest probabilities; equal values: lower index first."""
    return sorted(range(len(probs)), key=lambda i: (-float(probs[i]), i))[:k]


def main() -> int:
    ap = argparse.ArgumentParser(description="Reference per-frame classifier (Pillow + ONNX Runtime).")
    ap.add_argument("--model", required=True)
    ap.add_argument("--video", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="torchvision")
    ap.add_argument("--resampler", choices=["pil", "opencv"], default="pil")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--regions", help="JSON list of regions to classify as well")
    args = ap.parse_args()
    p = PRESETS[args.preset]
    regions = json.loads(Path(args.regions).read_text()) if args.regions else []

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    nhwc = len(inp.shape) == 4 and inp.shape[3] == 3 and inp.shape[1] != 3
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    output_name = sess.get_outputs()[0].name

    def classify(x: np.ndarray, k: int) -> dict:
        x = x[None] if nhwc else x.transpose(2, 0, 1)[None]
        (out,) = sess.run([output_name], {inp.name: np.ascontiguousarray(x, dtype=dtype)})
        row = np.asarray(out, dtype=np.float32).reshape(1, -1)[0]
        probs = to_probs(row)
        top = top_k(probs, k)
        return {"top": top, "scores": [float(probs[i]) for i in top],
                "probs": [float(v) for v in probs], "logits": [float(v) for v in row]}

    cap = cv2.VideoCapture(args.video)
    if not cap.isOpened():
        raise SystemExit(f"error: cannot open video {args.video}")
    video_fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    due = [0.0 for _ in regions]
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        entry = {"frame": len(frames)}
        entry.update(classify(prepare(frame, p, args.resampler), args.top_k))
        if regions:
            t = len(frames) / video_fps
            rgb = Image.fromarray(np.ascontiguousarray(frame[:, :, ::-1]))
            entry["regions"] = {}
            for i, r in enumerate(regions):
                if r.get("fps"):
                    if t + 1e-6 < due[i]:
                        continue
                    due[i] += 1.0 / r["fps"]
                case = dict(r, geometry=p["mode"], resize_shorter=p.get("resize_shorter"),
                            crop_fraction=p.get("crop_fraction"), crop=p["crop"],
                            interpolation=p["filter"])
                img, input_rect = fit_region(rgb, case)
                result = classify(normalize(np.asarray(img), p), args.top_k)
                del result["logits"]
                result["input_rect"] = input_rect
                entry["regions"][r["name"]] = result
        frames.append(entry)
    cap.release()
    if not frames:
        raise SystemExit(f"error: no frame decoded from {args.video}")
    with open(args.out, "w") as fh:
        json.dump({"model": args.model, "preset": args.preset, "resampler": args.resampler,
                   "frames": frames}, fh)
    print(f"{len(frames)} frames, preset {args.preset}, resampler {args.resampler}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
