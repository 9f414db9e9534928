#!/usr/bin/env python3
"""Static INT8 quantization (QDQ) of a float32 ONNX classifier, calibrated on video frames.

Usage::

    quantize_int8.py SRC.onnx OUT.onnx --video CLIP.mp4
                     --preset tf-efficientnet-lite|torchvision|caffe
                     [--frames 64] [--calib-every 2] [--calib-offset 0]
                     [--resampler pil|opencv] [--activation-type quint8|qint8]
                     [--method minmax|entropy|percentile] [--full-range]
                     [--no-preprocess] [--bench]

What it does

1. Calibration data: ``--video`` is decoded with OpenCV (``cv2.VideoCapture``, decode
   order, frame index 0, 1, 2, ...).  Only frames with ``index % calib_every ==
   calib_offset`` are eligible (default: the even frames, so that the odd frames of the
   same clip stay unseen for evaluation); from those, ``--frames`` are taken evenly
   spaced (all of them when fewer are eligible).  Every chosen frame is prepared by
   ``prepare(frame, PRESETS[preset], resampler)`` imported from
   tests/reference/classify.py (not a copy: the same code that makes the reference
   JSON), then laid out like classify.py does for the model's input (``[1,3,H,W]``
   NCHW, or ``[1,H,W,3]`` when the first input is NHWC), float32.
2. ``onnxruntime.quantization.shape_inference.quant_pre_process`` on SRC (ORT basic
   graph optimizations, then ONNX shape inference), unless ``--no-preprocess``.  Its
   symbolic shape inference is skipped: it needs sympy (not a project dependency) and
   only matters for dynamic spatial dimensions.  Pre-processing gives every tensor a
   shape (the quantizer uses them) and folds constants; on an already-clean graph such
   as models/efficientnet-lite0.onnx it changes nothing that matters (same QDQ graph,
   same predictions).
3. ``onnxruntime.quantization.quantize_static``: ``QuantFormat.QDQ``, weights
   ``QInt8`` per channel (symmetric), activations ``QUInt8`` (asymmetric) by default,
   ``CalibrationMethod.MinMax`` by default, all quantizable operators (Conv, Gemm,
   MatMul, Add, pooling, ...).

Why QUInt8 activations x QInt8 weights (U8S8) by default: ONNX Runtime's x86-64 integer
GEMM/conv kernels (MLAS) are built around u8 x s8 products (``VPMADDUBSW`` on AVX2,
``VPDPBUSD`` on AVX-512 VNNI / AVX-VNNI, both of which take an *unsigned* and a
*signed* operand), and ``quantize_static``'s own guidance for x86 CPUs is
``activation_type=QUInt8, weight_type=QInt8``.  With QInt8 activations (S8S8) ORT on
x86 has to re-bias the int8 activations to reach the same kernels or take a slower
path.  Measured on this project's machine (AMD EPYC, AVX-512 VNNI, ORT 1.32,
efficientnet-lite0, one 224x224 image, 1 thread): FP32 4.7 ms, U8S8 2.0 ms, S8S8
3.5 ms; U8S8 and S8S8 agree with FP32 equally well.

Why 7-bit weights (``reduce_range``) by default: on x86 CPUs without VNNI (AVX2 only)
``VPMADDUBSW`` adds two u8 x s8 products into a saturating 16-bit sum, which overflows
with full-range weights.  A quantized model is a file that travels, so the default is the
one that is right on every x86 CPU.  Measured on an AVX2-only AMD EPYC (ORT 1.32, same
model, 20 frames of photos.mp4): full-range U8S8 top-1 = FP32 on 13/20 frames, 7-bit
U8S8 on 18/20, S8S8 on 17/20; 7-bit U8S8 1.57x faster than FP32 on one thread, S8S8
1.08x.  ``--full-range`` keeps 8-bit weights, for models that only run on VNNI CPUs
(AVX-512 VNNI, AVX-VNNI) or ARM.

Output: OUT.onnx, and one summary line: calibration frames used, sizes FP32 -> INT8,
the number of QuantizeLinear / DequantizeLinear nodes.  With ``--bench`` the line also
gives ONNX Runtime CPU latency for one image (median of 20 runs after 3 warm-ups,
``intra_op_num_threads`` 1 and 2, ``ORT_ENABLE_ALL``) for SRC and OUT.

Deterministic: same inputs, same options -> same OUT (decode, Pillow, MinMax
calibration and the quantizer are deterministic).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

ROOT = pathlib.Path(__file__).resolve().parents[2]  # the repository root, two folders up
sys.path.insert(0, str(ROOT / "tests" / "reference"))
sys.dont_write_bytecode = True  # no tests/reference/__pycache__ in the tree
from classify import PRESETS, prepare  # noqa: E402  (the reference preprocessing itself)

METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}
ACT_TYPES = {"quint8": QuantType.QUInt8, "qint8": QuantType.QInt8}


def model_input(path: str):
    """(name, nhwc) of the model's first input; float32 required (same rule as classify.py)."""
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    if inp.type != "tensor(float)":
        raise SystemExit(f"error: {path}: input {inp.name!r} is {inp.type}; only float32 "
                         "models can be quantized")
    nhwc = len(inp.shape) == 4 and inp.shape[3] == 3 and inp.shape[1] != 3
    return inp.name, nhwc


def calibration_tensors(video: str, preset: str, resampler: str, frames: int, every: int,
                        offset: int, nhwc: bool):
    """Decode `video`, keep eligible frames, prepare them; returns (tensors, indices, total)."""
    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        raise SystemExit(f"error: cannot open video {video}")
    eligible = []  # (index, BGR frame)
    total = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if total % every == offset:
            eligible.append((total, frame))
        total += 1
    cap.release()
    if not eligible:
        raise SystemExit(f"error: no eligible frame in {video} ({total} decoded, "
                         f"every {every} from {offset})")
    if len(eligible) > frames:
        pick = np.linspace(0, len(eligible) - 1, frames).round().astype(int)
        eligible = [eligible[i] for i in sorted(set(pick.tolist()))]
    p = PRESETS[preset]
    tensors = []
    for _, frame in eligible:
        x = prepare(frame, p, resampler)  # HxWx3 float32, normalized
        x = x[None] if nhwc else x.transpose(2, 0, 1)[None]
        tensors.append(np.ascontiguousarray(x, dtype=np.float32))
    return tensors, [i for i, _ in eligible], total


class FrameReader(CalibrationDataReader):
    def __init__(self, input_name: str, tensors: list[np.ndarray]):
        self.input_name = input_name
        self.tensors = tensors
        self.pos = 0

    def get_next(self):
        if self.pos >= len(self.tensors):
            return None
        self.pos += 1
        return {self.input_name: self.tensors[self.pos - 1]}

    def rewind(self):
        self.pos = 0


def latency_ms(path: str, x: np.ndarray, threads: int, runs: int = 20) -> float:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(3):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def count_ops(path: str, *ops: str) -> dict:
    m = onnx.load(path, load_external_data=False)
    return {op: sum(n.op_type == op for n in m.graph.node) for op in ops}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="float32 ONNX classifier")
    ap.add_argument("out", help="where to write the INT8 QDQ model")
    ap.add_argument("--video", required=True, help="calibration clip (decoded with OpenCV)")
    ap.add_argument("--preset", required=True, choices=sorted(PRESETS),
                    help="preprocessing preset of tests/reference/classify.py")
    ap.add_argument("--resampler", choices=["pil", "opencv"], default="pil",
                    help="as classify.py --resampler (default pil)")
    ap.add_argument("--frames", type=int, default=64,
                    help="calibration frames, evenly spaced among the eligible ones")
    ap.add_argument("--calib-every", type=int, default=2,
                    help="only frames with index %% EVERY == OFFSET are eligible (default 2)")
    ap.add_argument("--calib-offset", type=int, default=0)
    ap.add_argument("--activation-type", choices=sorted(ACT_TYPES), default="quint8")
    ap.add_argument("--method", choices=sorted(METHODS), default="minmax")
    ap.add_argument("--full-range", dest="reduce_range", action="store_false",
                    help="8-bit weights (only for CPUs with VNNI, or ARM); default 7-bit")
    ap.add_argument("--no-preprocess", action="store_true",
                    help="skip quant_pre_process")
    ap.add_argument("--bench", action="store_true",
                    help="also measure 1-image latency of SRC and OUT (1 and 2 threads)")
    args = ap.parse_args()
    if args.frames < 1 or args.calib_every < 1 or not 0 <= args.calib_offset < args.calib_every:
        raise SystemExit("error: need --frames >= 1, --calib-every >= 1, "
                         "0 <= --calib-offset < --calib-every")

    input_name, nhwc = model_input(args.src)
    tensors, indices, total = calibration_tensors(args.video, args.preset, args.resampler,
                                                  args.frames, args.calib_every,
                                                  args.calib_offset, nhwc)

    with tempfile.TemporaryDirectory() as tmp:
        model = args.src
        if not args.no_preprocess:
            model = os.path.join(tmp, "pre.onnx")
            # Symbolic shape inference needs sympy (not a project dependency) and is only
            # useful for dynamic spatial dims; ONNX shape inference covers image CNNs.
            quant_pre_process(args.src, model, skip_symbolic_shape=True)
        quantize_static(
            model, args.out, FrameReader(input_name, tensors),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=args.reduce_range,
            activation_type=ACT_TYPES[args.activation_type],
            weight_type=QuantType.QInt8,
            calibrate_method=METHODS[args.method],
        )
    onnx.checker.check_model(args.out)

    act = "U8" if args.activation_type == "quint8" else "S8"
    rr = " reduce-range" if args.reduce_range else ""
    pre = "" if args.no_preprocess else ", pre-processed"
    mb = lambda p: os.path.getsize(p) / 1e6  # noqa: E731
    ops = count_ops(args.out, "QuantizeLinear", "DequantizeLinear")
    summary = (f"wrote {args.out}: INT8 QDQ {act}S8 per-channel{rr}, {args.method}, "
               f"calibrated on {len(tensors)} of {total} frames of {args.video} "
               f"(index % {args.calib_every} == {args.calib_offset}, "
               f"{indices[0]}..{indices[-1]}), preset {args.preset}/{args.resampler}{pre}; "
               f"size {mb(args.src):.2f} MB -> {mb(args.out):.2f} MB; "
               f"{ops['QuantizeLinear']} Q / {ops['DequantizeLinear']} DQ nodes")
    if args.bench:
        x = tensors[0]
        lat = {(n, t): latency_ms(p, x, t) for n, p in (("fp32", args.src), ("int8", args.out))
               for t in (1, 2)}
        summary += ("; latency median of 20 (ms) 1 thread fp32 {:.2f} int8 {:.2f}, "
                    "2 threads fp32 {:.2f} int8 {:.2f}").format(
                        lat["fp32", 1], lat["int8", 1], lat["fp32", 2], lat["int8", 2])
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
