#!/usr/bin/env python3
"""Independent reference classifier for streamclassd's integration tests.

Usage::

    classify.py --model M.onnx --video clip.mp4 --out ref.json
                [--top-k 5] [--resize-shorter 256] [--crop 224]
                [--mean 0.485 0.456 0.406] [--std 0.229 0.224 0.225]
                [--channel-order rgb|bgr]

It shares no code with the daemon: it decodes ``--video`` with OpenCV
(``cv2.VideoCapture``), classifies every decoded frame (index 0, 1, 2, ... in
decode order) with ONNX Runtime, and writes the results as JSON for the Rust tests
to compare against.

Preprocessing, per frame (torchvision eval-transform semantics, OpenCV resize):

a. Resize so the shorter side is ``resize_shorter``; the longer side becomes
   ``int(resize_shorter * long / short)`` (truncation, as torchvision's
   ``Resize(int)`` computes it), with ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)``.
b. Center crop ``crop`` x ``crop`` at ``top = int(round((h - crop) / 2.0))``,
   ``left = int(round((w - crop) / 2.0))`` (Python's round, i.e. round half to
   even, as torchvision's ``CenterCrop``).  A resized frame smaller than the crop
   is an error (torchvision would pad).
c. BGR -> RGB when ``--channel-order rgb`` (the default); ``bgr`` keeps OpenCV's order.
d. ``x = float32(u8) / float32(255.0)``, then ``(x - mean) / std`` with mean and std
   as float32 per-channel values, all arithmetic in float32.
e. HWC -> NCHW float32, batch of 1, fed to the model's first input.

Inference: ONNX Runtime, ``CPUExecutionProvider``, ``intra_op_num_threads=1``;
the first model output is reshaped to [1, classes].  If that row is already a
probability distribution (all values >= 0 and summing to 1 within 1e-3) it is
used as is; otherwise a numerically stable softmax (max-subtracted, in float64)
turns the logits into probabilities.

Output JSON::

    {"model": "<--model as given>",
     "frames": [{"frame": 0,
                 "top": [top_k class indices, by descending probability,
                         ties broken by the lower index],
                 "scores": [their probabilities],
                 "probs": [every class probability]}, ...]}

The number of frames is printed to stdout.  Exit status is non-zero if the video
cannot be opened or yields no frame.
"""

from __future__ import annotations

import argparse
import json
import sys

import cv2
import numpy as np
import onnxruntime as ort


def resized_size(w: int, h: int, shorter: int) -> tuple[int, int]:
    """(new_w, new_h) for torchvision Resize(int): shorter side -> `shorter`."""
    if w <= h:
        return shorter, int(shorter * h / w)
    return int(shorter * w / h), shorter


def preprocess(frame_bgr: np.ndarray, args: argparse.Namespace,
               mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    h, w = frame_bgr.shape[:2]
    new_w, new_h = resized_size(w, h, args.resize_shorter)
    img = cv2.resize(frame_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    crop = args.crop
    if new_h < crop or new_w < crop:
        raise SystemExit(f"error: resized frame {new_w}x{new_h} is smaller than crop {crop}")
    top = int(round((new_h - crop) / 2.0))
    left = int(round((new_w - crop) / 2.0))
    img = img[top:top + crop, left:left + crop]
    if args.channel_order == "rgb":
        img = img[:, :, ::-1]
    x = img.astype(np.float32) / np.float32(255.0)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def to_probs(row: np.ndarray) -> np.ndarray:
    """Return `row` if it is a probability distribution, else its softmax."""
    if np.all(row >= 0) and abs(float(row.astype(np.float64).sum()) - 1.0) <= 1e-3:
        return row
    z = row.astype(np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def top_k(probs: np.ndarray, k: int) -> list[int]:
    """Indices of the k largest probabilities; equal values: lower index first."""
    order = sorted(range(len(probs)), key=lambda i: (-float(probs[i]), i))
    return order[:k]


def main() -> None:
    ap = argparse.ArgumentParser(description="Reference per-frame classifier (OpenCV + ONNX Runtime).")
    ap.add_argument("--model", required=True)
    ap.add_argument("--video", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--resize-shorter", type=int, default=256)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--mean", type=float, nargs=3, default=[0.485, 0.456, 0.406])
    ap.add_argument("--std", type=float, nargs=3, default=[0.229, 0.224, 0.225])
    ap.add_argument("--channel-order", choices=["rgb", "bgr"], default="rgb")
    args = ap.parse_args()

    mean = np.array(args.mean, dtype=np.float32)
    std = np.array(args.std, dtype=np.float32)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    output_name = sess.get_outputs()[0].name

    cap = cv2.VideoCapture(args.video)
    if not cap.isOpened():
        raise SystemExit(f"error: cannot open video {args.video}")

    frames = []
    index = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        x = preprocess(frame, args, mean, std)
        (out,) = sess.run([output_name], {input_name: x})
        row = np.asarray(out).reshape(1, -1)[0]
        probs = to_probs(row)
        top = top_k(probs, args.top_k)
        frames.append({
            "frame": index,
            "top": top,
            "scores": [float(probs[i]) for i in top],
            "probs": [float(p) for p in probs],
        })
        index += 1
    cap.release()
    if not frames:
        raise SystemExit(f"error: no frame decoded from {args.video}")

    with open(args.out, "w") as fh:
        json.dump({"model": args.model, "frames": frames}, fh)
    print(f"{len(frames)} frames")


if __name__ == "__main__":
    sys.exit(main())
