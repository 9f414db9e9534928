#!/usr/bin/env python3
"""The baseline a user would otherwise write: OpenCV decode, preprocessing, ONNX Runtime,
paho-mqtt publish, one frame after the other.

Usage::

    bench/baseline.py --model M.onnx --video clip.mp4 [--preset torchvision|tf-efficientnet-lite]
                      [--threads 2] [--host 127.0.0.1 --port 1883] [--topic bench/baseline]
                      [--realtime] [--json out.json]

It reads every frame of ``--video`` (``--realtime``: paced at the clip's frame rate, like
a camera whose frames queue up while the loop is busy, as OpenCV's capture buffers do),
prepares it the usual way for the preset with ``cv2.resize`` (what most
hand-written pipelines do), runs the model with ``intra_op_num_threads = --threads``,
publishes the top-5 as JSON at QoS 1 and waits for the broker's acknowledgements at the
end. Prints classified frames/s and capture→publish latency percentiles; ``--json``
writes them too, for the benchmark to put beside streamclassd's figures.

Latency runs from the moment a frame exists to its ``publish()`` call: with
``--realtime`` that is the frame's time on the camera's clock (``start + index / fps``),
so a loop slower than the camera shows its growing backlog; otherwise it is the moment
``cap.read()`` returned it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import cv2
import numpy as np
import onnxruntime as ort
import paho.mqtt.client as mqtt

PRESETS = {
    "torchvision": dict(mode="resize-crop", short=256, crop=224, interp=cv2.INTER_LINEAR, rgb=True,
                        scale=1 / 255.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    "tf-efficientnet-lite": dict(mode="crop-resize", fraction=0.875, crop=224, interp=cv2.INTER_CUBIC,
                                 rgb=True, scale=1.0, mean=(127.0,) * 3, std=(128.0,) * 3),
}


def prepare(frame: np.ndarray, p: dict) -> np.ndarray:
    h, w = frame.shape[:2]
    c = p["crop"]
    if p["mode"] == "resize-crop":
        s = p["short"]
        nw, nh = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
        img = cv2.resize(frame, (nw, nh), interpolation=p["interp"])
        top, left = (nh - c) // 2, (nw - c) // 2
        img = img[top:top + c, left:left + c]
    else:
        side = int(p["fraction"] * min(h, w))
        top, left = (h - side + 1) // 2, (w - side + 1) // 2
        img = cv2.resize(frame[top:top + side, left:left + side], (c, c), interpolation=p["interp"])
    if p["rgb"]:
        img = img[:, :, ::-1]
    x = (img.astype(np.float32) * np.float32(p["scale"]) - np.float32(p["mean"])) / np.float32(p["std"])
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--video", required=True)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="torchvision")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--topic", default="bench/baseline")
    ap.add_argument("--realtime", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    p = PRESETS[args.preset]

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="streamclassd-baseline")
    client.connect(args.host, args.port)
    client.loop_start()

    cap = cv2.VideoCapture(args.video)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    latencies, infos = [], []
    start = time.monotonic()
    index = 0
    while True:
        if args.realtime:
            time.sleep(max(0.0, start + index / fps - time.monotonic()))
        ok, frame = cap.read()
        if not ok:
            break
        # A live frame exists from its time on the camera's clock, however late it is read.
        captured = start + index / fps if args.realtime else time.monotonic()
        (out,) = sess.run(None, {name: prepare(frame, p)})
        row = out.reshape(-1).astype(np.float64)
        e = np.exp(row - row.max())
        probs = e / e.sum()
        top = np.argsort(-probs)[:5]
        payload = json.dumps({"frame": index, "top5": [{"index": int(i), "score": float(probs[i])} for i in top]})
        infos.append(client.publish(args.topic, payload, qos=1))
        latencies.append((time.monotonic() - captured) * 1e3)
        index += 1
    for info in infos:
        info.wait_for_publish(timeout=30)
    elapsed = time.monotonic() - start
    client.loop_stop()
    client.disconnect()

    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else latencies * 99
    third = max(1, len(latencies) // 3)
    result = {"frames": index, "elapsed_s": elapsed, "frames_per_s": index / elapsed,
              "latency_ms": {"p50": q[49], "p90": q[89], "p99": q[98],
                             "first_third_p50": statistics.median(latencies[:third]),
                             "last_third_p50": statistics.median(latencies[-third:])}}
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
