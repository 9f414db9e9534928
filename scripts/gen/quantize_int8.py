#!/usr/bin/env python3
"""Static INT8 quantization (QDQ) of a float32 ONNX classifier, calibrated on your footage,
with its agreement with FP32 measured on frames it was not calibrated on.

Usage::

    quantize_int8.py SRC.onnx OUT.onnx --video CLIP.mp4 [--video CLIP2.mp4 ...]
                     [--images DIR ...] --preset tf-efficientnet-lite|torchvision|caffe
                     [--frames 150] [--calib-every 2] [--calib-offset 0]
                     [--eval-video CLIP ...] [--eval-images DIR ...] [--eval-frames 300]
                     [--method minmax|entropy|percentile] [--percentile 99.999]
                     [--reduce-range auto|on|off] [--full-range]
                     [--keep-float first,last,head,depthwise,NODE,...]
                     [--bias-correction on|off]
                     [--resampler pil|opencv] [--activation-type quint8|qint8]
                     [--weight-type qint8|qint16]
                     [--no-preprocess] [--no-report] [--report-json PATH]

What it does

1. Frames: every ``--video`` is decoded with OpenCV (decode order, frame index 0, 1, 2,
   ...), every ``--images`` folder read in name order (``.jpg``, ``.jpeg``, ``.png``,
   ``.bmp``; index = position). A frame is eligible for calibration when ``index %
   calib_every == calib_offset`` (default: the even frames, so the odd frames of the
   same footage stay unseen); ``--frames`` are taken evenly spaced over all eligible
   frames of all sources, in the order the sources were given (all of them when fewer).
   Each is prepared by ``prepare(frame, PRESETS[preset], resampler)`` of
   tests/reference/classify.py (the code that makes the reference JSON), laid out for
   the model's input (NCHW, or NHWC when the first input is), float32.
2. ``quant_pre_process`` on SRC (ORT basic graph optimizations, ONNX shape inference;
   symbolic shape inference skipped: it needs sympy), unless ``--no-preprocess``.
3. ``quantize_static``: ``QuantFormat.QDQ``, weights ``QInt8`` per channel (symmetric),
   activations ``QUInt8`` by default, calibration ``--method`` (MinMax by default;
   Percentile keeps ``--percentile`` of each activation's histogram, Entropy minimizes
   the KL divergence), every quantizable operator except the nodes ``--keep-float``
   names: ``first`` (the first Conv), ``last`` (the last Gemm/MatMul), ``head`` (the last
   Conv and the last Gemm/MatMul), ``depthwise`` (every grouped Conv), or node names;
   the ReLU6 right after a kept node stays float with it, and the kept nodes are
   protected from ONNX Runtime's load-time re-quantization of float weights
   (int8_passes.keep_float says how).
4. Bias correction (``--bias-correction on``, the default): a first quantization gives
   the 8-bit weights; each quantized Conv/Gemm's bias is lowered by the shift of its
   output mean that their rounding causes (the weight error times the per-channel mean
   of the layer's input, measured on the calibration frames with the float model:
   int8_passes.weight_bias_shift); the corrected float model is quantized again with the
   same activation ranges. Measured on this project's footage it is the largest gain
   after 8-bit weights (README, "INT8").
5. Unless ``--no-report``: agreement and speed of OUT against SRC. Agreement is measured
   on held-out frames: those of ``--eval-video`` / ``--eval-images`` when given (frames
   of the same file as a calibration frame are left out), otherwise the calibration
   sources' frames that were not eligible (``index % calib_every != calib_offset``); up
   to ``--eval-frames``, evenly spaced. The script refuses to report on a frame it
   calibrated on. For each frame: top-1 identical, and top-5 set identical (the same
   five classes, in any order); and top-1 identical on the frames FP32 is confident of
   (top-1 probability >= 50%). Speed: frames/s of one image (median of 20 runs after 3
   warm-ups, ``ORT_ENABLE_ALL``) on 1 and 2 intra-op threads, SRC and OUT side by side.
   ``--report-json`` writes all of it, with the (source, index) of every calibration and
   evaluation frame.

Why QUInt8 activations x QInt8 weights (U8S8) by default: ONNX Runtime's x86-64 integer
GEMM/conv kernels (MLAS) are built around u8 x s8 products (``VPMADDUBSW`` on AVX2,
``VPDPBUSD`` on AVX-512 VNNI / AVX-VNNI, both of which take an *unsigned* and a
*signed* operand), and ``quantize_static``'s own guidance for x86 CPUs is
``activation_type=QUInt8, weight_type=QInt8``.  Measured on this project's machine (AMD
EPYC, AVX-512 VNNI, ORT 1.32, efficientnet-lite0, one 224x224 image, 1 thread): FP32 4.7
ms, U8S8 2.0 ms, S8S8 3.5 ms; U8S8 and S8S8 agree with FP32 equally well.

7-bit weights (``reduce_range``): on x86 CPUs without VNNI (AVX2 only) ``VPMADDUBSW``
adds two u8 x s8 products into a saturating 16-bit sum, which overflows with full-range
weights; with VNNI the products are summed in 32 bits and 8-bit weights are exact.
``--reduce-range auto`` (the default) reads this machine's CPU flags: 7-bit weights
without ``avx512_vnni`` / ``avx_vnni`` on x86, 8-bit with them (and on other CPUs), and
says which it used. A quantized model is a file that travels: quantize on (or for) the
CPU it will run on, or pass ``--reduce-range on`` for a model that must run anywhere.
``--full-range`` is ``--reduce-range off``.

Output: OUT.onnx; one summary line (calibration frames, sizes FP32 -> INT8, Q / DQ node
counts, the weight range and why); then the report. ``--bench`` is accepted for old
command lines (speed is always part of the report).

Deterministic: same inputs, same options -> same OUT (decode, Pillow, MinMax calibration
and the quantizer are deterministic).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
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

import int8_passes  # noqa: E402  (beside this script)

ROOT = pathlib.Path(__file__).resolve().parents[2]  # the repository root, two folders up
sys.path.insert(0, str(ROOT / "tests" / "reference"))
sys.dont_write_bytecode = True  # no tests/reference/__pycache__ in the tree
from classify import PRESETS, prepare  # noqa: E402  (the reference preprocessing itself)

METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}
ACT_TYPES = {"quint8": QuantType.QUInt8, "qint8": QuantType.QInt8}
WEIGHT_TYPES = {"qint8": QuantType.QInt8, "qint16": QuantType.QInt16}
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp"}
CONFIDENT = 0.5  # FP32 top-1 probability from which a frame counts as confident


def model_input(path: str):
    """(name, nhwc) of the model's first input; float32 required (same rule as classify.py)."""
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    if inp.type != "tensor(float)":
        raise SystemExit(f"error: {path}: input {inp.name!r} is {inp.type}; only float32 "
                         "models can be quantized")
    nhwc = len(inp.shape) == 4 and inp.shape[3] == 3 and inp.shape[1] != 3
    return inp.name, nhwc


def image_files(folder: pathlib.Path) -> list[pathlib.Path]:
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXT)
    if not files:
        raise SystemExit(f"error: no image ({', '.join(sorted(IMAGE_EXT))}) in {folder}")
    return files


def open_video(source: str):
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise SystemExit(f"error: cannot open video {source}")
    return cap


def frame_count(source: str) -> int:
    """Frames of a video (counted by decoding it: the container's count is a guess), or
    images of a folder."""
    path = pathlib.Path(source)
    if path.is_dir():
        return len(image_files(path))
    cap, n = open_video(source), 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def source_frames(source: str, wanted: set[int]):
    """(index, BGR frame) of the frames of a video, or images of a folder, whose index is
    in `wanted`; the others are decoded but never converted or kept."""
    path = pathlib.Path(source)
    if path.is_dir():
        for i, f in enumerate(image_files(path)):
            if i in wanted:
                frame = cv2.imread(str(f), cv2.IMREAD_COLOR)
                if frame is None:
                    raise SystemExit(f"error: cannot read image {f}")
                yield i, frame
        return
    cap, i = open_video(source), 0
    while cap.grab():
        if i in wanted:
            ok, frame = cap.retrieve()
            if ok:
                yield i, frame
        i += 1
    cap.release()


def evenly(items: list, n: int) -> list:
    """`n` of `items`, evenly spaced (all of them when there are fewer)."""
    if len(items) <= n:
        return items
    pick = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in sorted(set(pick.tolist()))]


def gather(sources: list[str], keep, n: int) -> tuple[list, int]:
    """Up to `n` frames (source, index, BGR) evenly spaced over the frames of `sources`
    for which ``keep(source, index)`` holds; and how many frames the sources have. Only
    the frames picked are held in memory (a long clip is read twice instead)."""
    counts = {src: frame_count(src) for src in dict.fromkeys(sources)}
    ids = evenly([(src, i) for src in counts for i in range(counts[src]) if keep(src, i)], n)
    picked = []
    for src in counts:
        wanted = {i for s, i in ids if s == src}
        if wanted:
            picked += [(src, i, frame) for i, frame in source_frames(src, wanted)]
    return picked, sum(counts.values())


def tensor_of(frame, preset: str, resampler: str, nhwc: bool) -> np.ndarray:
    x = prepare(frame, PRESETS[preset], resampler)  # HxWx3 float32, normalized
    x = x[None] if nhwc else x.transpose(2, 0, 1)[None]
    return np.ascontiguousarray(x, dtype=np.float32)


def calibration_tensors(video: str, preset: str, resampler: str, frames: int, every: int,
                        offset: int, nhwc: bool):
    """One video's eligible frames, prepared: (tensors, indices, total frames)."""
    picked, total = gather([video], lambda _s, i: i % every == offset, frames)
    if not picked:
        raise SystemExit(f"error: no eligible frame in {video} ({total} decoded, "
                         f"every {every} from {offset})")
    return ([tensor_of(f, preset, resampler, nhwc) for _, _, f in picked],
            [i for _, i, _ in picked], total)


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


def cpu_has_vnni() -> bool | None:
    """Whether this x86 CPU has VNNI (AVX-512 VNNI or AVX-VNNI); None off x86."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return None
    try:
        flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo")
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    return "avx512_vnni" in flags or "avx_vnni" in flags


def weight_range(choice: str) -> tuple[bool, str]:
    """(reduce_range, why) for --reduce-range CHOICE on this machine."""
    if choice == "on":
        return True, "7-bit weights (asked for)"
    if choice == "off":
        return False, "8-bit weights (asked for)"
    vnni = cpu_has_vnni()
    if vnni is None:
        return False, f"8-bit weights ({platform.machine()}: no u8 x s8 saturation)"
    if vnni:
        return False, "8-bit weights (this CPU has VNNI)"
    return True, "7-bit weights (this CPU has no VNNI: AVX2's 16-bit sums would saturate)"


def kept_float(model_path: str, keep: list[str]) -> list[str]:
    """Node names that --keep-float names (groups or node names)."""
    nodes = onnx.load(model_path, load_external_data=False).graph.node
    convs = [n for n in nodes if n.op_type == "Conv"]
    fcs = [n for n in nodes if n.op_type in ("Gemm", "MatMul")]
    names = {n.name for n in nodes}
    out: list[str] = []
    for k in keep:
        if k == "first":
            out += [n.name for n in convs[:1]]
        elif k == "last":
            out += [n.name for n in fcs[-1:]]
        elif k == "head":
            out += [n.name for n in convs[-1:] + fcs[-1:]]
        elif k == "depthwise":
            out += [n.name for n in convs
                    if any(a.name == "group" and a.i > 1 for a in n.attribute)]
        elif k in names:
            out.append(k)
        else:
            raise SystemExit(f"error: --keep-float {k!r}: not first, last, head, depthwise "
                             "or a node of the model")
    # The activation right after a kept node stays float with it (quantizing it alone
    # would quantize the kept node's raw output, before its ReLU6 bounds it).
    kept = set(out)
    out += [n.name for n in nodes if n.op_type in ("Clip", "Relu")
            and any(p.name in kept and n.input[0] in p.output for p in nodes)]
    return sorted(set(out))


def session(path: str, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def frames_per_s(path: str, x: np.ndarray, threads: int, runs: int = 20) -> float:
    sess = session(path, threads)
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(3):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    return 1.0 / statistics.median(times)


def agreement(src: str, out: str, tensors: list[np.ndarray]) -> dict:
    """Top-1 identical and top-5 set identical, OUT against SRC, frame by frame."""
    outs = []
    for path in (src, out):
        sess = session(path, 1)
        name = sess.get_inputs()[0].name
        outs.append(np.concatenate([sess.run(None, {name: x})[0].reshape(1, -1)
                                    for x in tensors]))
    a, b = outs
    top1 = int((a.argmax(1) == b.argmax(1)).sum())
    top5 = int(sum(set(np.argsort(-x, kind="stable")[:5]) == set(np.argsort(-y, kind="stable")[:5])
                   for x, y in zip(a, b)))
    # Frames FP32 is sure of (top-1 softmax >= CONFIDENT): the labels a rule acts on.
    p = np.exp(a - a.max(1, keepdims=True))
    sure = (p.max(1) / p.sum(1)) >= CONFIDENT
    sure_same = int((a.argmax(1) == b.argmax(1))[sure].sum())
    return {"frames": len(tensors), "top1_same": top1, "top5_set_same": top5,
            "top1_agreement": top1 / len(tensors), "top5_set_agreement": top5 / len(tensors),
            "confident_frames": int(sure.sum()), "confident_top1_same": sure_same}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("src", help="float32 ONNX classifier")
    ap.add_argument("out", help="where to write the INT8 QDQ model")
    ap.add_argument("--video", action="append", default=[],
                    help="calibration clip (decoded with OpenCV); may be repeated")
    ap.add_argument("--images", action="append", default=[],
                    help="folder of calibration images; may be repeated")
    ap.add_argument("--preset", required=True, choices=sorted(PRESETS),
                    help="preprocessing preset of tests/reference/classify.py")
    ap.add_argument("--resampler", choices=["pil", "opencv"], default="pil",
                    help="as classify.py --resampler (default pil)")
    ap.add_argument("--frames", type=int, default=150,
                    help="calibration frames, evenly spaced over the eligible ones (default 150)")
    ap.add_argument("--calib-every", type=int, default=2,
                    help="only frames with index %% EVERY == OFFSET are eligible (default 2)")
    ap.add_argument("--calib-offset", type=int, default=0)
    ap.add_argument("--eval-video", action="append", default=[],
                    help="held-out clip for the agreement report; may be repeated")
    ap.add_argument("--eval-images", action="append", default=[],
                    help="held-out image folder for the agreement report; may be repeated")
    ap.add_argument("--eval-frames", type=int, default=300,
                    help="held-out frames in the report, evenly spaced (default 300)")
    ap.add_argument("--activation-type", choices=sorted(ACT_TYPES), default="quint8")
    ap.add_argument("--weight-type", choices=sorted(WEIGHT_TYPES), default="qint8",
                    help="qint16: a diagnostic (what 8-bit activations alone cost); ONNX "
                         "Runtime runs such layers in float, so no faster than FP32")
    ap.add_argument("--method", choices=sorted(METHODS), default="minmax")
    ap.add_argument("--percentile", type=float, default=99.999,
                    help="--method percentile: the part of each histogram kept (default 99.999)")
    ap.add_argument("--reduce-range", choices=["auto", "on", "off"], default="auto",
                    help="7-bit weights: auto (without VNNI on x86), on, off")
    ap.add_argument("--full-range", dest="reduce_range", action="store_const", const="off",
                    help="8-bit weights: --reduce-range off")
    ap.add_argument("--keep-float", default="",
                    help="nodes left in float: first, last, head, depthwise or node names, "
                         "comma-separated")
    ap.add_argument("--bias-correction", choices=["on", "off"], default="on",
                    help="lower each layer's bias by the output shift its weight rounding "
                         "causes, measured on the calibration frames (default on)")
    ap.add_argument("--no-preprocess", action="store_true", help="skip quant_pre_process")
    ap.add_argument("--no-report", action="store_true",
                    help="skip the agreement and speed report")
    ap.add_argument("--report-json", default=None, help="also write the report as JSON")
    ap.add_argument("--bench", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.video and not args.images:
        ap.error("give at least one --video or --images")
    if (args.frames < 1 or args.calib_every < 1 or args.eval_frames < 1
            or not 0 <= args.calib_offset < args.calib_every):
        ap.error("need --frames >= 1, --eval-frames >= 1, --calib-every >= 1, "
                 "0 <= --calib-offset < --calib-every")
    return args


def held_out(args, calibrated: set) -> tuple[list, str]:
    """The report's frames (source, index, BGR), and where they come from, in words."""
    every, offset = args.calib_every, args.calib_offset
    evals = args.eval_video + args.eval_images
    if evals:
        picked, _ = gather(evals, lambda s, i: (s, i) not in calibrated, args.eval_frames)
        where = f"{len(picked)} frames of {', '.join(evals)}"
    else:
        picked, _ = gather(args.video + args.images, lambda _s, i: i % every != offset,
                           args.eval_frames)
        where = (f"{len(picked)} frames of the calibration footage never eligible for "
                 f"calibration (index % {every} != {offset}; for other footage, "
                 "--eval-video / --eval-images)")
    if not picked:
        raise SystemExit("error: no held-out frame for the report (use --eval-video, "
                         "--eval-images or --no-report)")
    overlap = calibrated & {(s, i) for s, i, _ in picked}
    if overlap:  # never: the selection above excludes them
        raise SystemExit(f"error: held-out frames used for calibration: {sorted(overlap)}")
    return picked, where


def main() -> int:
    args = parse_args()
    input_name, nhwc = model_input(args.src)
    every, offset = args.calib_every, args.calib_offset
    sources = args.video + args.images
    picked, total = gather(sources, lambda _s, i: i % every == offset, args.frames)
    if not picked:
        raise SystemExit(f"error: no eligible frame in {', '.join(sources)} ({total} read, "
                         f"every {every} from {offset})")
    tensors = [tensor_of(f, args.preset, args.resampler, nhwc) for _, _, f in picked]
    calibrated = {(s, i) for s, i, _ in picked}
    reduce_range, why = weight_range(args.reduce_range)
    if args.weight_type == "qint16":
        reduce_range, why = False, "16-bit weights (diagnostic)"

    with tempfile.TemporaryDirectory() as tmp:
        model = args.src
        if not args.no_preprocess:
            model = os.path.join(tmp, "pre.onnx")
            quant_pre_process(args.src, model, skip_symbolic_shape=True)
        keep = kept_float(model, [k for k in args.keep_float.split(",") if k])

        def quantize(src: str, out: str):
            # One calibration for both passes: the cache holds the float model's ranges.
            quantize_static(
                src, out, FrameReader(input_name, tensors),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=reduce_range,
                activation_type=ACT_TYPES[args.activation_type],
                weight_type=WEIGHT_TYPES[args.weight_type],
                calibrate_method=METHODS[args.method],
                nodes_to_exclude=keep,
                extra_options={"CalibPercentile": args.percentile,
                               "UseQDQContribOps": args.weight_type == "qint16"},
                calibration_cache_path=os.path.join(tmp, "ranges.json"),
            )

        corrected = 0
        if args.bias_correction == "on":
            first_pass = os.path.join(tmp, "first.onnx")
            quantize(model, first_pass)
            shifted = os.path.join(tmp, "shifted.onnx")
            corrected = int8_passes.weight_bias_shift(model, first_pass, shifted, input_name,
                                                      tensors, set(keep))
            model = shifted
        quantize(model, args.out)
    protected = int8_passes.keep_float(args.out, set(keep))
    onnx.checker.check_model(args.out)

    act = "U8" if args.activation_type == "quint8" else "S8"
    pre = "" if args.no_preprocess else ", pre-processed"
    method = args.method + (f" {args.percentile}" if args.method == "percentile" else "")
    mb = lambda p: os.path.getsize(p) / 1e6  # noqa: E731
    ops = count_ops(args.out, "QuantizeLinear", "DequantizeLinear")
    first = picked[0]
    wt = "S16" if args.weight_type == "qint16" else "S8"
    print(f"wrote {args.out}: INT8 QDQ {act}{wt} per-channel, {why}, {method}, "
          f"{protected} layer(s) kept in float ({len(keep)} node(s)), bias correction "
          f"{args.bias_correction} ({corrected} layers), calibrated on {len(tensors)} of {total} frames "
          f"of {', '.join(sources)} (index % {every} == {offset}, from {first[0]} #{first[1]}), "
          f"preset {args.preset}/{args.resampler}{pre}; size {mb(args.src):.2f} MB -> "
          f"{mb(args.out):.2f} MB; {ops['QuantizeLinear']} Q / {ops['DequantizeLinear']} DQ nodes")
    if args.no_report:
        return 0
    frames, where = held_out(args, calibrated)
    agree = agreement(args.src, args.out,
                      [tensor_of(f, args.preset, args.resampler, nhwc) for _, _, f in frames])
    speed = {f"{name}_{t}": frames_per_s(path, tensors[0], t)
             for name, path in (("fp32", args.src), ("int8", args.out)) for t in (1, 2)}
    print(f"agreement with FP32 on {where}: top-1 identical {agree['top1_same']}/"
          f"{agree['frames']} ({agree['top1_agreement']:.1%}), top-5 set identical "
          f"{agree['top5_set_same']}/{agree['frames']} ({agree['top5_set_agreement']:.1%}); "
          f"top-1 identical on the {agree['confident_frames']} frames FP32 gives >= "
          f"{CONFIDENT:.0%}: {agree['confident_top1_same']}")
    for t in (1, 2):
        f, i = speed[f"fp32_{t}"], speed[f"int8_{t}"]
        print(f"speed, {t} thread(s), one image: FP32 {f:.1f} frames/s, INT8 {i:.1f} frames/s "
              f"({i / f:.2f}x)")
    if args.report_json:
        report = {"out": args.out, "weights": why, "reduce_range": reduce_range,
                  "method": method, "kept_float": keep,
                  "bias_correction": args.bias_correction, "bias_corrected_layers": corrected, "activation_type": args.activation_type,
                  "calibration": [[s, i] for s, i in sorted(calibrated)],
                  "held_out": [[s, i] for s, i, _ in frames], "held_out_from": where,
                  "agreement": agree, "frames_per_s": speed}
        pathlib.Path(args.report_json).write_text(json.dumps(report, indent=1))
    return 0


def count_ops(path: str, *ops: str) -> dict:
    m = onnx.load(path, load_external_data=False)
    return {op: sum(n.op_type == op for n in m.graph.node) for op in ops}


if __name__ == "__main__":
    sys.exit(main())
