#!/usr/bin/env python3
"""Soak test: run streamclassd for a set time against real servers and report over time.

Usage (after scripts/setup and scripts/fixtures)::

    . scripts/env && .venv/bin/python bench/soak.py --minutes 30 [--fps 10] [--chaos] [--model resnet50]

It starts a private mosquitto and two GStreamer RTSP servers (looping the photo clip) on
loopback, runs the daemon with two RTSP cameras and the model (EfficientNet-Lite0 unless
``--model`` names another), and every
``--every`` seconds prints the daemon's resident memory (VmRSS), the label messages
received by a subscriber, and the cameras' retained status counters (frames, dropped,
reconnects). With ``--chaos`` one RTSP server is killed and restarted every 5 minutes and
the broker every 7 minutes, so reconnects and the outbox are exercised too. At the end the
daemon is stopped with SIGTERM and its exit code and per-camera summary are printed; the
RSS samples are summarized (first, last, max after warm-up, slope per 10 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port: int, timeout: float = 20.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


class Rtsp:
    def __init__(self, clip: pathlib.Path, port: int) -> None:
        self.clip, self.port, self.proc = clip, port, None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", str(ROOT / "tests/support/rtsp_server.py"), "--file", str(self.clip),
             "--port", str(self.port), "--loop"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("LISTENING"):
            raise SystemExit(f"RTSP server failed: {line!r}")

    def stop(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class Subscriber:
    """Counts label messages and keeps the latest retained camera status."""

    def __init__(self, port: int, prefix: str) -> None:
        self.labels = 0
        self.status: dict[str, dict] = {}
        self.proc = subprocess.Popen(["mosquitto_sub", "-p", str(port), "-v", "-t", f"{prefix}/#"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            topic, _, payload = line.rstrip("\n").partition(" ")
            if topic.endswith("/labels"):
                self.labels += 1
            elif topic.count("/") == 2 and topic.endswith("/status"):
                try:
                    self.status[topic.split("/")[1]] = json.loads(payload)
                except json.JSONDecodeError:
                    pass

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--fps", type=float, default=10.0, help="classified frames/s per camera")
    ap.add_argument("--chaos", action="store_true", help="restart an RTSP server and the broker periodically")
    ap.add_argument("--model", default="efficientnet-lite0",
                    help="a model under models/ (without .onnx); resnet* use the torchvision preset")
    args = ap.parse_args()

    fixtures = pathlib.Path(os.environ.get("STREAMCLASSD_FIXTURES", ROOT / "target/test-fixtures"))
    clip = fixtures / "photos.mp4"
    model = ROOT / "models" / f"{args.model}.onnx"
    preset = "tf-efficientnet-lite" if args.model.startswith("efficientnet") else "torchvision"
    binary = ROOT / "target/release/streamclassd"
    for f in (clip, model, binary):
        if not f.exists():
            raise SystemExit(f"{f} missing: run scripts/test first")

    work = pathlib.Path(tempfile.mkdtemp(prefix="soak-"))
    bport = free_port()
    (work / "m.conf").write_text(
        f"listener {bport} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n")

    def start_broker():
        p = subprocess.Popen(["mosquitto", "-c", str(work / "m.conf")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(bport)
        return p

    broker = start_broker()
    servers = [Rtsp(clip, free_port()), Rtsp(clip, free_port())]
    cfg = work / "soak.toml"
    cams = "".join(
        f'\n[[camera]]\nid = "cam{i}"\nsource = "rtsp://127.0.0.1:{s.port}/stream"\nfps = {args.fps}\n'
        f"stall_timeout_s = 3\nreconnect_max_s = 5\n" for i, s in enumerate(servers))
    cfg.write_text(f'[mqtt]\nport = {bport}\ntopic_prefix = "soak"\nspool_dir = "{work}/spool"\n'
                   f'[model]\npath = "{model}"\nthreads = 2\n[model.preprocess]\npreset = "{preset}"\n'
                   + cams)
    sub = Subscriber(bport, "soak")
    log = open(work / "daemon.log", "w")
    daemon = subprocess.Popen([str(binary), "run", "--config", str(cfg)], stderr=log, stdout=subprocess.DEVNULL)

    start = time.time()
    end = start + args.minutes * 60
    samples = []
    next_rtsp, next_broker = start + 300, start + 420
    print(f"soak: {args.minutes:g} min, 2 RTSP cameras at {args.fps:g} fps, {model.name}, "
          f"chaos {'on' if args.chaos else 'off'}; work dir {work}", flush=True)
    print("   t(s)  RSS(MB)  labels  cam0 frames/dropped/reconnects  cam1 frames/dropped/reconnects", flush=True)
    try:
        while time.time() < end:
            time.sleep(min(args.every, max(0.0, end - time.time())))
            now = time.time()
            if daemon.poll() is not None:
                print(f"daemon exited early with {daemon.returncode}", flush=True)
                break
            if args.chaos and now >= next_rtsp:
                servers[1].stop(); time.sleep(3); servers[1].start(); next_rtsp += 300
            if args.chaos and now >= next_broker:
                broker.terminate(); broker.wait(); time.sleep(3); broker = start_broker(); next_broker += 420
            r = rss_mb(daemon.pid)
            samples.append((now - start, r))
            cols = []
            for cam in ("cam0", "cam1"):
                s = sub.status.get(cam, {})
                cols.append(f"{s.get('frames', 0):>8}/{s.get('dropped', 0)}/{s.get('reconnects', 0)}")
            print(f"{now - start:7.0f}  {r:7.1f}  {sub.labels:6d}  {cols[0]:>30}  {cols[1]:>30}", flush=True)
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
        sub.stop()
        for s in servers:
            s.stop()
        broker.terminate()
        log.close()
    print(f"daemon exit code {daemon.returncode}")
    for line in open(work / "daemon.log"):
        if "camera summary" in line or "pipeline stopped" in line:
            print(line.rstrip()[line.find("INFO"):])
    warm = [(t, r) for t, r in samples if t >= 60] or samples
    if len(samples) >= 2:
        (tw, rw), (t1, r1) = warm[0], samples[-1]
        span = (t1 - tw) / 600.0
        slope = f"{(r1 - rw) / span:+.2f}" if span > 0 else "n/a"
        print(f"RSS MB: first {samples[0][1]:.1f}, after warm-up {rw:.1f}, last {r1:.1f}, "
              f"max {max(r for _, r in warm):.1f}, change per 10 min after warm-up {slope}")
    print(f"labels received: {sub.labels}")
    return 0 if daemon.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
