#!/usr/bin/env python3
"""streamclassd's benchmark: every figure side by side with its baseline, in one run.

Run it through ``scripts/bench`` (which builds everything and points at the project's
ONNX Runtime)::

    scripts/bench [--model resnet50] [--threads 2] [--repeats 3] [--quick]
                  [--sections bare,e2e,latency,baseline,threads,cameras,int8,workers]
                  [--json target/bench/bench.json]

Sections (all on the same model, clip and thread settings):

bare      ONNX Runtime alone: the daemon's own session settings, pre-made input tensors
          (``examples/ort_throughput``), frames/s.
e2e       streamclassd end to end on media/demo.mp4 (1280x720 H.264, every frame, as fast
          as it goes) through a private mosquitto: classified frames/s and the ratio to
          bare; mean time per frame in each stage (from the exit summary); peak and
          steady RSS (sampled from /proc every 0.25 s).
latency   capture→publish latency at 50% and 150% of the e2e capacity: the clip re-timed
          to that frame rate and served, looped, by a real RTSP server (GStreamer); the
          daemon's camera reads it live. Latency is measured where a user sees it: the
          MQTT message's arrival at a subscriber minus its ``captured_at``. p50/p90/p99,
          and p50 of the first and last third of the run (flat = no backlog).
baseline  bench/baseline.py (OpenCV, onnxruntime, paho-mqtt, one frame after the other):
          frames/s on the same clip, and its latency at 150% load (the same re-timed clip,
          paced at its frame rate; latency from each frame's time on the camera's clock).
threads   bare ONNX Runtime with 1 and 2 intra-op threads, alone and beside a decoder
          (ffmpeg decoding the clip on one thread, as a camera would), and e2e with 1 and 2.
decode    many live cameras at fps = 1 reading analytics streams (25 frames/s, a keyframe
          every 25, no B-frames) over RTSP into EfficientNet-Lite0, decode = all vs
          keyframes vs auto: classified frames/s per camera (min–max), cores per stage and
          the RTSP server's, RSS (``--decode-counts`` for 1080p, ``--decode-counts-360``,
          ``--decode-modes``).
cameras   1, 2, 4, 8, 16 live cameras (one RTSP server, 640x360 at 25 frames/s each) with
          ResNet-18 and ResNet-50, cross-camera batching on (max_batch 4) and off (1):
          total classified frames/s, each camera's share (fairness = largest deviation
          from the mean share), wall time per classified frame, and the cores each stage
          (and the RTSP server standing in for the cameras) keeps busy; counted over a window
          (``--cameras-s``, 30 s) that opens 3 s after every camera has published its
          first frame. ``--camera-counts``, ``--camera-models``, ``--camera-batches``
          pick a subset.
console   16 live cameras at capacity (keyframes only, 5/s each) with no viewer, a console open (bench/viewers.py
          asks what console.js asks) and one MJPEG client, alternating: classified frames/s
          and its ratio to no viewer, cores, JPEG encodes per second and ms per encode.
int8      EfficientNet-Lite0 (real ImageNet weights) FP32 vs static INT8 variants
          (scripts/gen/quantize_int8.py: bias correction, calibration methods, weight
          range, layers kept in float, 16-bit weights as a diagnostic), each calibrated
          on 150 frames of three photos and reported on 300 frames of fifteen others:
          top-1 and top-5 set identical to FP32 (and top-1 on the frames FP32 is sure
          of), frames/s on 1 and 2 threads, from the script's own report; FP16 on the
          same frames as the reference; ResNet-50 INT8 speed (random weights).
workers   frames in parallel against one frame across threads, on ResNet-18 and ResNet-50
          (``--worker-models``): 1 worker × 2 threads, 2 × 1 and, on a bigger box, one
          single-thread worker per CPU but one. Per layout: bare ONNX Runtime
          (``examples/ort_workers``, the daemon's shared weights) and e2e on the clip,
          in rounds that each start with bare 1 × 2 (each e2e run's ratio is to its own
          round's baseline: the machine's speed drifts), then a live camera's
          capture→publish latency at 50% and
          150% of that layout's own e2e capacity (one run each, with the frames/s it
          published and the bound 2 × inference + 1 frame interval), RSS.

Every timed figure is repeated (``--repeats``) and reported as the median with the range
(min–max) of the runs: this machine is shared and noisy. ``--quick`` shortens runs and
keeps fewer camera counts, for a smoke test. The JSON holds every run's raw numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = ROOT / "target/release/streamclassd"
ORT_BENCH = ROOT / "target/release/examples/ort_throughput"
ORT_WORKERS = ROOT / "target/release/examples/ort_workers"
PY = sys.executable
SYS_PY = "/usr/bin/python3"  # GStreamer's Python bindings (the RTSP server) live here


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def med(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "runs": xs}


def fmt(m: dict, digits: int = 1) -> str:
    if len(m["runs"]) == 1:
        return f"{m['median']:.{digits}f}"
    return f"{m['median']:.{digits}f} ({m['min']:.{digits}f}–{m['max']:.{digits}f})"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Broker:
    """A private mosquitto on a free loopback port."""

    def __init__(self, work: pathlib.Path):
        self.port = free_port()
        conf = work / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                        "max_queued_messages 1000000\nmax_inflight_messages 0\n")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("bench: mosquitto did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


class Rtsp:
    """tests/support/rtsp_server.py serving a clip, looped, at its own frame rate."""

    def __init__(self, clip: pathlib.Path):
        self.proc = subprocess.Popen(
            [SYS_PY, str(ROOT / "tests/support/rtsp_server.py"), "--file", str(clip),
             "--port", "0", "--loop"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("LISTENING "):
            raise SystemExit(f"bench: RTSP server did not start: {line!r}")
        self.url = f"rtsp://127.0.0.1:{int(line.split()[1])}/stream"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


class Collector:
    """An MQTT subscriber recording (arrival wall time, payload) of label messages."""

    def __init__(self, port: int, topic: str):
        import paho.mqtt.client as mqtt
        self.msgs: list[tuple[float, dict]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"bench-sub-{os.getpid()}-{free_port()}")
        ready = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p=None: (c.subscribe(topic, qos=1), ready.set())
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not ready.wait(10):
            raise SystemExit("bench: subscriber could not connect")
        time.sleep(0.2)

    def _on_message(self, client, userdata, msg) -> None:
        now = time.time()
        if msg.payload:
            try:
                payload = json.loads(msg.payload)
            except ValueError:
                return
            with self.lock:
                self.msgs.append((now, payload))

    def stop(self) -> list[tuple[float, dict]]:
        self.client.loop_stop()
        self.client.disconnect()
        with self.lock:
            return list(self.msgs)


def captured_at(p: dict) -> float:
    return dt.datetime.fromisoformat(p["captured_at"].replace("Z", "+00:00")).timestamp()


class RssSampler:
    """Samples a process's VmRSS and VmHWM (kB) every 0.25 s."""

    def __init__(self, pid: int):
        self.pid, self.samples, self.hwm = pid, [], 0
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        while not self.stop_flag.is_set():
            try:
                text = pathlib.Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            rss = re.search(r"VmRSS:\s+(\d+)", text)
            hwm = re.search(r"VmHWM:\s+(\d+)", text)
            if not rss or not hwm:
                return  # exiting: its memory is already gone
            self.hwm = max(self.hwm, int(hwm.group(1)))
            self.samples.append((time.monotonic() - start, int(rss.group(1))))
            self.stop_flag.wait(0.25)

    def result(self) -> dict:
        self.stop_flag.set()
        self.thread.join()
        if not self.samples:
            return {}
        tail = [r for _, r in self.samples[len(self.samples) // 2:]]
        return {"peak_mb": self.hwm / 1024, "steady_mb": statistics.median(tail) / 1024,
                "samples": len(self.samples)}


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time (user + system, s) a process has used so far, by the part of the pipeline
    its threads belong to (from thread names: cap-*, pre-*, inference and ONNX Runtime's
    pool, publish and mqtt-io); "total" for the whole process."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        used = (int(fields[11]) + int(fields[12])) / tick
        part = ("decode" if comm.startswith("cap-") else
                "preprocess" if comm.startswith("pre-") else
                "publish" if comm in ("publish", "mqtt-io") else "inference")
        out[part] = out.get(part, 0.0) + used
        out["total"] = out.get("total", 0.0) + used
    return out


def wakeups(pid: int) -> dict[str, int]:
    """Context switches (voluntary + involuntary) so far, by thread group: capture
    (cap-*), preprocess (pre-*) and the rest; "threads" counts each group's threads."""
    out: dict[str, int] = {}
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue
        name = re.search(r"Name:\s+(\S+)", text).group(1)
        part = "capture" if name.startswith("cap-") else "preprocess" if name.startswith("pre-") else "other"
        n = sum(int(v) for v in re.findall(r"ctxt_switches:\s+(\d+)", text))
        out[part] = out.get(part, 0) + n
        out[f"{part}_threads"] = out.get(f"{part}_threads", 0) + 1
    return out


def stack_rss_kb(pid: int) -> tuple[int, int]:
    """(thread stacks found, their resident KiB): anonymous read-write mappings right
    above a one-page guard (how glibc lays out a thread's stack)."""
    stacks, rss, prev, cur = 0, 0, None, None
    try:
        lines = pathlib.Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:
        return 0, 0
    for line in lines:
        m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)", line)
        if m:
            prev, cur = cur, (int(m.group(1), 16), int(m.group(2), 16), m.group(3), m.group(4))
            continue
        if line.startswith("Rss:") and cur and prev:
            guard = prev[2] == "---p" and prev[1] - prev[0] == 4096 and prev[1] == cur[0]
            if guard and cur[2] == "rw-p" and not cur[3]:
                stacks += 1
                rss += int(line.split()[1])
    return stacks, rss


def daemon_config(port: int, model: pathlib.Path, threads: int, preset: str,
                  cameras: list[tuple[str, str, dict]], max_batch: int | None = None,
                  admin: int | None = None, workers: int = 1) -> str:
    text = (f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ntopic_prefix = "bench"\nqos = 1\n'
            f'outbox_max = 1000000\n\n[model]\npath = "{model}"\nthreads = {threads}\n'
            f'workers = {workers}\n')
    if admin is not None:
        text = f'[admin]\nlisten = "127.0.0.1:{admin}"\n\n' + text
    if max_batch is not None:
        text += f"max_batch = {max_batch}\n"
    text += f'\n[model.preprocess]\npreset = "{preset}"\n'
    for cid, source, extra in cameras:
        text += f'\n[[camera]]\nid = "{cid}"\nsource = "{source}"\n'
        for k, v in extra.items():
            text += f"{k} = {json.dumps(v)}\n"
    return text


def run_daemon(work: pathlib.Path, config: str, duration: float | None = None,
               until=None) -> dict:
    """Runs the daemon on `config` until it ends (files), for `duration` seconds, or until
    `until(pid)` returns, then SIGTERM. Returns its exit summary (frames/s, per-camera lines)
    and RSS."""
    cfg = work / "daemon.toml"
    cfg.write_text(config)
    errlog = work / "daemon.log"
    with open(errlog, "w") as err:
        proc = subprocess.Popen([str(BIN), "run", "-c", str(cfg)], stdout=subprocess.DEVNULL,
                                stderr=err, env={**os.environ, "STREAMCLASSD_LOG": "info"})
        rss = RssSampler(proc.pid)
        try:
            if until is not None:
                until(proc.pid)
                raise subprocess.TimeoutExpired(str(BIN), 0)
            proc.wait(timeout=duration)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        mem = rss.result()
    text = errlog.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"bench: streamclassd exited {proc.returncode}:\n{text[-3000:]}")
    out = {"rss": mem, "cameras": {}}
    m = re.search(r'pipeline stopped .*elapsed_s="([0-9.]+)" frames_per_s="([0-9.]+)"', text)
    if m:
        out["elapsed_s"], out["frames_per_s"] = float(m.group(1)), float(m.group(2))
    for line in text.splitlines():
        if "camera summary" not in line:
            continue
        fields = dict(re.findall(r'(\w+)="?([0-9.]+|[\w-]+)"?', line.split("camera summary", 1)[1]))
        out["cameras"][fields.pop("camera")] = {k: float(v) for k, v in fields.items()
                                                if re.fullmatch(r"[0-9.]+", v)}
    return out


def retime(src: pathlib.Path, fps: float, dst: pathlib.Path) -> None:
    """Re-encodes `src` (every frame kept) to play at `fps` frames/s."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-vf",
                    f"setpts=N/({fps:.4f}*TB)", "-r", f"{fps:.4f}", "-c:v", "libx264",
                    "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-g", "25",
                    str(dst)], check=True)


def bare(model: pathlib.Path, threads: int, frames: int, repeats: int) -> dict:
    out = subprocess.run([str(ORT_BENCH), str(model), str(threads), str(frames), str(repeats)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "STREAMCLASSD_LOG": "warn"}).stdout
    runs = [float(x) for x in re.findall(r'"([0-9.]+)"', out.split("runs", 1)[1])]
    return med(runs)


def bare_parallel(model: pathlib.Path, workers: int, threads: int, frames: int,
                  repeats: int) -> dict:
    """Bare ONNX Runtime with `workers` sessions (the daemon's shared weights) each running
    whole frames on `threads` intra-op threads, all at once: total frames/s, and RSS with
    the sessions open."""
    out = subprocess.run([str(ORT_WORKERS), str(model), str(workers), str(threads), str(frames),
                          str(repeats), "shared"], capture_output=True, text=True, check=True,
                         env={**os.environ, "STREAMCLASSD_LOG": "warn"}).stdout
    runs = [float(x) for x in re.findall(r'"([0-9.]+)"', out)]
    rss = re.search(r"RSS ([0-9.]+) MB", out)
    return {"frames_per_s": med(runs), "rss_mb": float(rss.group(1)) if rss else None}


def latency_run(a, ctx, model: pathlib.Path, clip: pathlib.Path, threads: int,
                workers: int = 1) -> dict:
    """One live run: `clip` served by a real RTSP server, read by the daemon's camera
    for ``a.latency_s``; capture→publish latency as a subscriber sees it."""
    server = Rtsp(clip)
    sub = Collector(ctx["broker"].port, "bench/c/labels")
    try:
        cfg = daemon_config(ctx["broker"].port, model, threads, a.preset,
                            [("c", server.url, {"fps": 0})], workers=workers)
        r = run_daemon(ctx["work"], cfg, duration=a.latency_s)
    finally:
        time.sleep(0.5)
        msgs = sub.stop()
        server.stop()
    res = latency_from(msgs, skip_s=2.0)
    res["rss"] = r["rss"]
    res["dropped"] = r["cameras"]["c"]["dropped"]
    res["frames"] = r["cameras"]["c"]["frames"]
    return res


# ---- sections ---------------------------------------------------------------------------

def section_bare(a, ctx) -> dict:
    log(f"bare ONNX Runtime: {a.model.name}, {a.threads} thread(s)")
    return {"frames_per_s": bare(a.model, a.threads, a.bare_frames, a.repeats)}


def section_e2e(a, ctx) -> dict:
    runs, rss, stages = [], [], []
    for i in range(a.repeats):
        log(f"end to end on {a.clip.name} ({i + 1}/{a.repeats})")
        cfg = daemon_config(ctx["broker"].port, a.model, a.threads, a.preset,
                            [("c", str(a.clip), {"fps": 0})])
        r = run_daemon(ctx["work"], cfg)
        runs.append(r["frames_per_s"])
        rss.append(r["rss"])
        stages.append(r["cameras"]["c"])
    stage_ms = {k: statistics.median(s[f"{k}_ms"] for s in stages)
                for k in ("decode", "preprocess", "inference", "publish")}
    out = {"frames_per_s": med(runs), "stage_ms_per_frame": stage_ms,
           "rss_peak_mb": med([r["peak_mb"] for r in rss]),
           "rss_steady_mb": med([r["steady_mb"] for r in rss]),
           "model_mb": a.model.stat().st_size / 1e6}
    if "bare" in ctx["results"]:
        b = ctx["results"]["bare"]["frames_per_s"]["median"]
        out["ratio_to_bare"] = out["frames_per_s"]["median"] / b
    return out


def latency_from(msgs: list[tuple[float, dict]], skip_s: float) -> dict:
    if not msgs:
        return {}
    t0 = msgs[0][0]
    lat = [(arr - captured_at(p)) * 1e3 for arr, p in msgs if arr - t0 >= skip_s]
    inf = [p["latency_ms"]["inference"] for arr, p in msgs if arr - t0 >= skip_s]
    third = max(1, len(lat) // 3)
    counted = [arr for arr, _ in msgs if arr - t0 >= skip_s]
    span = counted[-1] - counted[0] if len(counted) > 1 else 0.0
    return {"messages": len(lat), "published_fps": (len(lat) - 1) / span if span else 0.0, "p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99),
            "first_third_p50": statistics.median(lat[:third]),
            "last_third_p50": statistics.median(lat[-third:]),
            "inference_ms_p50": statistics.median(inf)}


def section_latency(a, ctx) -> dict:
    cap = ctx["results"].get("e2e", {}).get("frames_per_s", {}).get("median")
    if not cap:
        raise SystemExit("bench: the latency section needs e2e (capacity) first")
    out = {"capacity_fps": cap}
    for load in (0.5, 1.5):
        rate = cap * load
        clip = ctx["work"] / f"paced-{int(load * 100)}.mp4"
        retime(a.clip, rate, clip)
        ctx.setdefault("paced", {})[load] = (clip, rate)
        runs = []
        for i in range(a.repeats):
            log(f"latency at {int(load * 100)}% load ({rate:.1f} frames/s), {a.latency_s:.0f} s "
                f"({i + 1}/{a.repeats})")
            runs.append(latency_run(a, ctx, a.model, clip, a.threads))
        key = f"load_{int(load * 100)}"
        out[key] = {"source_fps": rate, "runs": runs}
        for k in ("p50", "p90", "p99", "first_third_p50", "last_third_p50", "inference_ms_p50"):
            out[key][k] = med([r[k] for r in runs])
        inf = out[key]["inference_ms_p50"]["median"]
        out[key]["p99_bound_ms"] = 2 * inf + 1e3 / rate
    return out


def section_baseline(a, ctx) -> dict:
    runs = []
    for i in range(a.repeats):
        log(f"Python baseline on {a.clip.name} ({i + 1}/{a.repeats})")
        res = json.loads(subprocess.run(
            [PY, str(ROOT / "bench/baseline.py"), "--model", str(a.model), "--video",
             str(a.clip), "--preset", a.preset, "--threads", str(a.threads), "--port",
             str(ctx["broker"].port)], capture_output=True, text=True, check=True).stdout)
        runs.append(res)
    out = {"frames_per_s": med([r["frames_per_s"] for r in runs]), "runs": runs}
    if "e2e" in ctx["results"]:
        out["streamclassd_ratio"] = (ctx["results"]["e2e"]["frames_per_s"]["median"]
                                     / out["frames_per_s"]["median"])
    paced = ctx.get("paced", {}).get(1.5)
    if paced:
        clip, rate = paced
        log(f"Python baseline at 150% load ({rate:.1f} frames/s)")
        res = json.loads(subprocess.run(
            [PY, str(ROOT / "bench/baseline.py"), "--model", str(a.model), "--video", str(clip),
             "--preset", a.preset, "--threads", str(a.threads), "--port",
             str(ctx["broker"].port), "--realtime"], capture_output=True, text=True,
            check=True).stdout)
        out["load_150"] = res
    return out


def section_threads(a, ctx) -> dict:
    out = {}
    for threads in (1, 2):
        out[f"bare_{threads}"] = bare(a.model, threads, a.bare_frames, a.repeats)
        # Another process decoding the clip on one thread, as a camera's decoder would.
        load = subprocess.Popen(["ffmpeg", "-v", "error", "-threads", "1", "-stream_loop", "-1",
                                 "-i", str(a.clip), "-f", "null", "-"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            out[f"bare_{threads}_beside_decoder"] = bare(a.model, threads, a.bare_frames,
                                                         a.repeats)
        finally:
            load.terminate()
            load.wait()
        runs = []
        for i in range(a.repeats):
            log(f"end to end with {threads} inference thread(s) ({i + 1}/{a.repeats})")
            cfg = daemon_config(ctx["broker"].port, a.model, threads, a.preset,
                                [("c", str(a.clip), {"fps": 0})])
            runs.append(run_daemon(ctx["work"], cfg)["frames_per_s"])
        out[f"e2e_{threads}"] = med(runs)
    return out


def layouts(cpus: int) -> list[tuple[int, int]]:
    """(workers, threads) compared: one session across 2 threads, 2 single-thread workers,
    and on a bigger box one single-thread worker per CPU but one."""
    out = [(1, 2), (2, 1)]
    if cpus > 2:
        out.append((min(cpus - 1, 16), 1))
    return out


def section_workers(a, ctx) -> dict:
    """Frames in parallel (N workers × 1 thread) against one frame across threads (1 × 2),
    per model, in rounds (``--repeats``): each round measures bare ONNX Runtime 1 × 2, then
    every layout bare and end to end on the clip (every frame), so each e2e figure has a
    baseline taken minutes, not a quarter of an hour, apart (this machine's speed drifts
    by 10% and more over a run). Then a live camera's capture→publish latency at 50% and
    150% of each layout's own e2e capacity, and RSS."""
    out = {}
    for name in a.worker_models:
        model = ROOT / "models" / f"{name}.onnx"
        lays = {f"{w}x{t}": {"workers": w, "threads": t, "bare": [], "e2e": [], "ratio": [],
                             "rss": [], "stages": []}
                for w, t in layouts(os.cpu_count() or 1)}
        base_runs = []
        for i in range(a.repeats):
            log(f"workers: {name} round {i + 1}/{a.repeats}: bare 1 x 2")
            base = bare(model, 2, a.bare_frames, 1)["median"]
            base_runs.append(base)
            for key, lay in lays.items():
                log(f"workers: {name} round {i + 1}/{a.repeats}: {key} bare, end to end")
                lay["bare"].append(bare_parallel(model, lay["workers"], lay["threads"],
                                                 a.bare_frames, 1)["frames_per_s"]["median"])
                cfg = daemon_config(ctx["broker"].port, model, lay["threads"], a.preset,
                                    [("c", str(a.clip), {"fps": 0})], workers=lay["workers"])
                r = run_daemon(ctx["work"], cfg)
                lay["e2e"].append(r["frames_per_s"])
                lay["ratio"].append(r["frames_per_s"] / base)
                lay["rss"].append(r["rss"])
                lay["stages"].append(r["cameras"]["c"])
        res = {"bare_1x2": med(base_runs), "bare_1x2_runs": base_runs, "layouts": {}}
        for key, lay in lays.items():
            v = {"workers": lay["workers"], "threads": lay["threads"],
                 "bare": {"frames_per_s": med(lay["bare"])}, "e2e": med(lay["e2e"]),
                 "ratio_to_bare_1x2": med(lay["ratio"]),
                 "rss_peak_mb": med([r["peak_mb"] for r in lay["rss"]]),
                 "rss_steady_mb": med([r["steady_mb"] for r in lay["rss"]]),
                 "stage_ms_per_frame": {k: statistics.median(s[f"{k}_ms"] for s in lay["stages"])
                                        for k in ("decode", "preprocess", "inference")},
                 "runs": {"bare": lay["bare"], "e2e": lay["e2e"], "ratio": lay["ratio"]}}
            cap = v["e2e"]["median"]
            for load in (0.5, 1.5):
                rate = cap * load
                clip = ctx["work"] / f"paced-{name}-{key}-{int(load * 100)}.mp4"
                retime(a.clip, rate, clip)
                log(f"workers: {name} {key}, latency at {int(load * 100)}% "
                    f"({rate:.1f} frames/s), {a.latency_s:.0f} s")
                r = latency_run(a, ctx, model, clip, lay["threads"], lay["workers"])
                r["source_fps"] = rate
                r["p99_bound_ms"] = 2 * r["inference_ms_p50"] + 1e3 / rate
                v[f"load_{int(load * 100)}"] = r
            res["layouts"][key] = v
        out[name] = res
    return out


def metric_sums(port: int, name: str) -> tuple[float, float]:
    """(sum, count) of histogram `name` on the admin listener's /metrics."""
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    get = lambda suffix: float(re.search(rf"^{name}_{suffix}\S* (\S+)$", text, re.M).group(1))
    return get("sum"), get("count")


def camera_run(a, ctx, clip: pathlib.Path, model: pathlib.Path, cams_extra: list[dict],
               max_batch: int, preset: str = "torchvision", viewers: str | None = None) -> dict:
    """One run of live cameras, all reading `clip` from one RTSP server: classified
    frames/s per camera, cores per stage and the server's, RSS. The window (``--cameras-s``)
    opens 3 s after every camera has published once (one that never does within 120 s
    counts as 0). With `viewers` ("console" or "mjpeg", bench/viewers.py) the admin listener
    is on and they watch from the start of those 3 s to the end of the window; JPEG encodes
    in the window come from streamclassd_jpeg_encode_seconds."""
    admin = free_port() if viewers else None
    n = len(cams_extra)
    server = Rtsp(clip)
    sub = Collector(ctx["broker"].port, "bench/+/labels")
    cams = [(f"cam{i:02d}", server.url, extra) for i, extra in enumerate(cams_extra)]
    window: dict[str, float] = {}

    def measure(pid: int) -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            with sub.lock:
                seen = {p["camera"] for _, p in sub.msgs}
            if len(seen) == n:
                break
            time.sleep(0.2)
        window["all_started"] = len(seen) == n
        watching = (subprocess.Popen([PY, "-B", str(ROOT / "bench/viewers.py"), viewers, str(admin)]
                                     + [c for c, _, _ in cams], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
                    if viewers and viewers != "none" else None)
        window["start"] = time.time() + 3.0
        window["end"] = window["start"] + a.cameras_s
        time.sleep(window["start"] - time.time())
        enc = metric_sums(admin, "streamclassd_jpeg_encode_seconds") if admin else (0, 0)
        viewer_cpu = cpu_seconds(watching.pid)["total"] if watching else 0.0
        before = (cpu_seconds(pid), cpu_seconds(server.proc.pid)["total"], wakeups(pid))
        time.sleep(window["end"] - time.time())
        after = (cpu_seconds(pid), cpu_seconds(server.proc.pid)["total"], wakeups(pid))
        if watching:
            window["viewer_cores"] = (cpu_seconds(watching.pid)["total"] - viewer_cpu) / a.cameras_s
        enc_after = metric_sums(admin, "streamclassd_jpeg_encode_seconds") if admin else (0, 0)
        window["encodes"] = enc_after[1] - enc[1]
        window["encode_ms"] = ((enc_after[0] - enc[0]) * 1e3 / window["encodes"]
                               if window["encodes"] else None)
        window["viewers"] = (json.loads(watching.communicate(timeout=60)[0]) if watching
                             else {})
        window["wakeups_per_s"] = {k: (v - before[2].get(k, 0)) / a.cameras_s
                                   for k, v in after[2].items() if not k.endswith("_threads")}
        window["threads"] = {k[:-len("_threads")]: v for k, v in after[2].items()
                             if k.endswith("_threads")}
        window["stacks"], window["stack_rss_kb"] = stack_rss_kb(pid)
        window["cpu"] = {k: (v - before[0].get(k, 0.0)) / a.cameras_s
                         for k, v in after[0].items()}
        window["rtsp_server_cpu"] = (after[1] - before[1]) / a.cameras_s
        time.sleep(0.5)

    try:
        cfg = daemon_config(ctx["broker"].port, model, a.threads, preset, cams,
                            max_batch=max_batch, admin=admin)
        run = run_daemon(ctx["work"], cfg, until=measure)
    finally:
        time.sleep(0.5)
        msgs = sub.stop()
        server.stop()
    per = {c: 0 for c, _, _ in cams}
    for arr, p in msgs:
        if window["start"] <= arr < window["end"]:
            per[p["camera"]] += 1
    span = window["end"] - window["start"]
    rates = [v / span for v in per.values()]
    total = sum(rates)
    mean = total / n
    rss = run["rss"]
    return {"window_s": span, "all_started": window["all_started"], "cameras": n,
            "classified_fps": total, "per_camera_fps": rates,
            "per_camera_frames": list(per.values()),
            "fairness_max_dev": (max(abs(r - mean) / mean for r in rates) if mean > 0
                                 else float("nan")),
            "ms_per_frame": 1e3 / total if total else None,
            # cores busy during the window (CPU s per s), by stage, and the RTSP server's
            # (the test's cameras, not streamclassd)
            "cpu_cores": window["cpu"], "rtsp_server_cores": window["rtsp_server_cpu"],
            "rss_peak_mb": rss.get("peak_mb"), "rss_steady_mb": rss.get("steady_mb"),
            # threads by group, their context switches per second, and what the thread
            # stacks hold resident
            "threads": window.get("threads", {}), "wakeups_per_s": window.get("wakeups_per_s", {}),
            "stacks": window.get("stacks"), "stack_rss_kb": window.get("stack_rss_kb"),
            "skipped": sum(c.get("skipped", 0) for c in run["cameras"].values()),
            "jpeg_encodes": window["encodes"], "jpeg_encode_ms": window["encode_ms"],
            "viewers": window["viewers"], "viewer_cores": window.get("viewer_cores", 0.0)}


def log_run(r: dict) -> None:
    rates, cpu = r["per_camera_fps"], r["cpu_cores"]
    log(f"  {r['classified_fps']:.1f} frames/s, per camera {min(rates):.2f}–{max(rates):.2f}, "
        f"fairness ±{r['fairness_max_dev']:.1%}; cores: streamclassd {cpu['total']:.2f} "
        f"(decode {cpu.get('decode', 0):.2f}, preprocess {cpu.get('preprocess', 0):.2f}, "
        f"inference {cpu.get('inference', 0):.2f}, publish {cpu.get('publish', 0):.2f}), "
        f"RTSP server {r['rtsp_server_cores']:.2f}; RSS steady {r['rss_steady_mb'] or 0:.0f} MB, "
        f"peak {r['rss_peak_mb'] or 0:.0f} MB; threads {r['threads']}, wakeups/s "
        f"{ {k: round(v) for k, v in r['wakeups_per_s'].items()} }, {r['stacks']} stacks hold "
        f"{(r['stack_rss_kb'] or 0) / 1024:.1f} MB")


def section_cameras(a, ctx) -> dict:
    clip = ROOT / "target/test-fixtures/clip.mp4"
    out = {}
    for name in a.camera_models:
        model = ROOT / "models" / f"{name}.onnx"
        for batch in a.camera_batches:
            for n in a.camera_counts:
                log(f"{n} camera(s), {name}, max_batch {batch}, {a.cameras_s:.0f} s window")
                r = camera_run(a, ctx, clip, model, [{"fps": 0}] * n, batch)
                r.update({"model": name, "max_batch": batch, "demand_fps": 25.0 * n})
                out[f"{name}/batch{batch}/{n}"] = r
                log_run(r)
    return out


def analytics_clip(size: str) -> pathlib.Path:
    """An analytics stream as cameras are set up for it: 25 frames/s, a keyframe every
    25 frames, no B-frames, no audio (written once under target/bench/)."""
    out = ROOT / "target/bench" / f"analytics-{size}-gop25.mp4"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size={size}:rate=25", "-t", "30", "-c:v", "libx264",
                        "-preset", "veryfast", "-g", "25", "-keyint_min", "25",
                        "-sc_threshold", "0", "-bf", "0", "-pix_fmt", "yuv420p", str(out)],
                       check=True)
    return out


def section_decode(a, ctx) -> dict:
    """Many cameras classified at fps = 1, decode = all vs keyframes vs auto, side by
    side: 1080p (``--decode-counts``) and 360p (``--decode-counts-360``) analytics
    streams into EfficientNet-Lite0."""
    model = ROOT / "models/efficientnet-lite0.onnx"
    out = {}
    for size, counts in (("1920x1080", a.decode_counts), ("640x360", a.decode_counts_360)):
        clip = analytics_clip(size)
        for n in counts:
            for mode in a.decode_modes:
                log(f"{n} camera(s) {size} at fps 1, decode {mode}, {a.cameras_s:.0f} s window")
                r = camera_run(a, ctx, clip, model, [{"fps": 1, "decode": mode}] * n, 4,
                               preset="tf-efficientnet-lite")
                r.update({"size": size, "decode": mode, "demand_fps": float(n)})
                out[f"{size}/{mode}/{n}"] = r
                log_run(r)
    return out


REGIONS = [("left", [0, 0, 640, 720], "crop"), ("right", [640, 0, 640, 720], "pad"),
           ("middle", [320, 180, 640, 360], "stretch"), ("bottom", [0, 360, 1280, 360], "crop")]


def section_regions(a, ctx) -> dict:
    """One camera on the clip, unpaced, with the whole frame and 0, 1, 2, 4 regions (the
    fits alternate): wall time per frame and per inference, and what each added region
    costs, side by side in one run."""
    out = {}
    for k in a.region_counts:
        tables = "".join(f'\n[[camera.region]]\nname = "{n}"\nrect = {json.dumps(r)}\nfit = "{f}"\n'
                         for n, r, f in REGIONS[:k])
        runs = []
        for i in range(a.repeats):
            log(f"regions: whole frame + {k} region(s) on {a.clip.name} ({i + 1}/{a.repeats})")
            cfg = daemon_config(ctx["broker"].port, a.model, a.threads, a.preset,
                                [("c", str(a.clip), {"fps": 0})]) + tables
            r = run_daemon(ctx["work"], cfg)
            c = r["cameras"]["c"]
            runs.append({"frame_ms": r["elapsed_s"] * 1e3 / c["frames"],
                         "inputs_per_frame": c["published"] / c["frames"],
                         "preprocess_ms": c["preprocess_ms"], "inference_ms": c["inference_ms"],
                         "rss_peak_mb": r["rss"]["peak_mb"]})
        out[str(k)] = {key: med([x[key] for x in runs]) for key in runs[0]}
    base = out.get("0")
    if base:
        for k, x in out.items():
            if k != "0":
                n = int(k)
                x["added_ms_per_region"] = (x["frame_ms"]["median"] - base["frame_ms"]["median"]) / n
                x["ratio_to_whole_frame"] = x["frame_ms"]["median"] / base["frame_ms"]["median"]
    return out


def section_console(a, ctx) -> dict:
    """16 live 640x360 cameras at full rate (fps = 0, at capacity) on the benchmark's
    model, with no viewer, with a console open (a tile per camera, its poll and event
    stream) and with one MJPEG client, alternating runs: total classified frames/s and its
    ratio to no viewer, cores, JPEG encodes and ms per encode in the window."""
    clip = ROOT / "target/test-fixtures/clip.mp4"
    n = a.console_cameras
    runs: dict[str, list[dict]] = {"none": [], "console": [], "mjpeg": []}
    for i in range(a.repeats):
        for kind in runs:
            log(f"console: {n} cameras, {a.model.stem}, viewers {kind} ({i + 1}/{a.repeats}), "
                f"{a.cameras_s:.0f} s window")
            r = camera_run(a, ctx, clip, a.model, [{"fps": 0, "decode": "keyframes"}] * n, 4,
                           viewers=kind)
            log_run(r)
            log(f"  JPEG encodes {r['jpeg_encodes']:.0f} ({r['jpeg_encode_ms'] or 0:.2f} ms each), "
                f"viewers {r['viewers']}, their process {r['viewer_cores']:.2f} cores")
            runs[kind].append(r)
    out = {"cameras": n, "model": a.model.stem, "runs": runs}
    base = statistics.median(r["classified_fps"] for r in runs["none"])
    for kind, rs in runs.items():
        out[kind] = {"classified_fps": med([r["classified_fps"] for r in rs]),
                     "ratio_to_none": med([r["classified_fps"] / base for r in rs]),
                     "cores": med([r["cpu_cores"]["total"] for r in rs]),
                     "encodes_per_s": med([r["jpeg_encodes"] / r["window_s"] for r in rs]),
                     "encode_ms": med([r["jpeg_encode_ms"] for r in rs if r["jpeg_encode_ms"]])
                     if any(r["jpeg_encode_ms"] for r in rs) else None,
                     "rss_steady_mb": med([r["rss_steady_mb"] or 0 for r in rs]),
                     "viewer_cores": med([r["viewer_cores"] for r in rs])}
    return out


INT8_CALIBRATION = "chelsea,coffee,rocket"
INT8_HELD_OUT = ("stereo_motorcycle,camera,astronaut,motorcycle_right,hubble_deep_field,"
                 "immunohistochemistry,retina,coins,brick,moon,grass,gravel,clock,page,cell")
INT8_VARIANTS = [
    ("minmax, no bias correction (the first default)", ["--reduce-range", "on",
                                                         "--bias-correction", "off"]),
    ("minmax, no bias correction", ["--reduce-range", "off", "--bias-correction", "off"]),
    ("minmax + bias correction (default without VNNI)", ["--reduce-range", "on"]),
    ("minmax + bias correction (default with VNNI)", ["--reduce-range", "off"]),
    ("entropy + bias correction", ["--reduce-range", "off", "--method", "entropy"]),
    ("percentile 99.999 + bias correction", ["--reduce-range", "off", "--method", "percentile"]),
    ("+ first conv and last FC in float", ["--reduce-range", "off", "--keep-float", "first,last"]),
    ("+ head conv and FC in float", ["--reduce-range", "off", "--keep-float", "head"]),
    ("+ depthwise convs in float", ["--reduce-range", "off", "--keep-float", "depthwise"]),
    ("diagnostic: 16-bit weights, percentile (what 8-bit activations alone cost)",
     ["--weight-type", "qint16", "--method", "percentile"]),
]
INT8_QUICK = (1, 3)  # --quick: the first default and today's default


def int8_run(ctx, fp32: pathlib.Path, preset: str, clips: dict, extra: list) -> dict:
    """One quantize_int8.py run: its report (agreement, frames/s) and the model's size."""
    model = ctx["work"] / "int8.onnx"
    report = ctx["work"] / "int8.json"
    subprocess.run([PY, str(ROOT / "scripts/gen/quantize_int8.py"), str(fp32), str(model),
                    "--video", str(clips["calibration"]), "--calib-every", "1",
                    "--frames", "150", "--eval-video", str(clips["held_out"]),
                    "--eval-frames", "300", "--preset", preset,
                    "--report-json", str(report), *extra], check=True,
                   stdout=subprocess.DEVNULL)
    r = json.loads(report.read_text())
    r.pop("calibration"), r.pop("held_out")
    r["size_mb"] = model.stat().st_size / 1e6
    return r


def int8_fp16_reference(ctx, fp32: pathlib.Path, held_out: pathlib.Path) -> dict:
    """FP16 (weights and activations, float32 in and out) on the same held-out frames:
    how many answers a rounding far finer than 8 bits already moves."""
    sys.path.insert(0, str(ROOT / "scripts/gen"))
    import quantize_int8 as q8  # noqa: PLC0415  (the script's own report code)
    from onnxruntime.transformers.float16 import convert_float_to_float16  # noqa: PLC0415
    fp16 = ctx["work"] / "int8-reference-fp16.onnx"
    import onnx  # noqa: PLC0415
    onnx.save(convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True), str(fp16))
    frames, _ = q8.gather([str(held_out)], lambda _s, _i: True, 300)
    tensors = [q8.tensor_of(f, "tf-efficientnet-lite", "pil", False) for _, _, f in frames]
    return {"agreement": q8.agreement(str(fp32), str(fp16), tensors),
            "frames_per_s": {f"{name}_{t}": q8.frames_per_s(str(path), tensors[0], t)
                             for name, path in (("fp32", fp32), ("int8", fp16)) for t in (1, 2)},
            "weights": "FP16", "size_mb": fp16.stat().st_size / 1e6}


def section_int8(a, ctx) -> dict:
    """EfficientNet-Lite0 INT8 variants (scripts/gen/quantize_int8.py), each calibrated on
    150 frames of three photos and reported on 300 frames of fifteen others (zoomed and
    panned like the demo clip): top-1 / top-5 set identical to FP32, frames/s on 1 and 2
    threads against FP32, from the script's own report; FP16 on the same frames as the
    reference; then the ResNet-50 (seeded random weights: its agreement means nothing,
    its speed does) with the default options."""
    fp32 = ROOT / "models/efficientnet-lite0.onnx"
    clips = {}
    for key, photos, per in (("calibration", INT8_CALIBRATION, 50),
                             ("held_out", INT8_HELD_OUT, 20)):
        clips[key] = ctx["work"] / f"int8-{key}.mp4"
        subprocess.run([PY, str(ROOT / "scripts/gen/make_photo_clip.py"), str(clips[key]),
                        "--size", "640x360", "--frames-per-photo", str(per), "--photos", photos],
                       check=True, stdout=subprocess.DEVNULL)
    out = {"calibration_photos": INT8_CALIBRATION, "held_out_photos": INT8_HELD_OUT,
           "variants": {}}
    variants = [INT8_VARIANTS[i] for i in INT8_QUICK] if a.quick else INT8_VARIANTS
    for label, extra in variants:
        log(f"INT8: {label}")
        out["variants"][label] = int8_run(ctx, fp32, "tf-efficientnet-lite", clips, extra)
    log("INT8: FP16 reference")
    out["fp16"] = int8_fp16_reference(ctx, fp32, clips["held_out"])
    log("INT8: ResNet-50 (random weights), default options")
    out["resnet50"] = int8_run(ctx, ROOT / "models/resnet50.onnx", "torchvision", clips, [])
    return out


SECTIONS = {"bare": section_bare, "e2e": section_e2e, "latency": section_latency,
            "baseline": section_baseline, "threads": section_threads,
            "cameras": section_cameras, "decode": section_decode, "regions": section_regions,
            "console": section_console, "int8": section_int8, "workers": section_workers}


# ---- report -----------------------------------------------------------------------------

def report(r: dict) -> str:
    lines = [f"## streamclassd benchmark — {r['date']}, {r['cpu']} ({r['cores']} cores), "
             f"ONNX Runtime {r['onnxruntime']}",
             f"model {r['model']}, {r['threads']} inference thread(s), clip {r['clip']}, "
             f"{r['repeats']} run(s) each: median (min–max)", ""]
    s = r["results"]
    rows = []
    if "bare" in s:
        rows.append(("bare ONNX Runtime, frames/s", fmt(s["bare"]["frames_per_s"])))
    if "e2e" in s:
        e = s["e2e"]
        rows.append(("streamclassd end to end, frames/s", fmt(e["frames_per_s"])))
        if "ratio_to_bare" in e:
            rows.append(("  ratio to bare ONNX Runtime (target ≥ 0.95)", f"{e['ratio_to_bare']:.2f}"))
        st = e["stage_ms_per_frame"]
        rows.append(("  ms per frame: decode / preprocess / inference / publish",
                     f"{st['decode']:.2f} / {st['preprocess']:.2f} / {st['inference']:.2f} / "
                     f"{st['publish']:.3f}"))
        rows.append(("  RSS peak / steady, MB (model file MB)",
                     f"{fmt(e['rss_peak_mb'], 0)} / {fmt(e['rss_steady_mb'], 0)} "
                     f"({e['model_mb']:.0f})"))
    if "baseline" in s:
        b = s["baseline"]
        rows.append(("Python baseline, frames/s", fmt(b["frames_per_s"])))
        if "streamclassd_ratio" in b:
            rows.append(("  streamclassd / baseline", f"{b['streamclassd_ratio']:.2f}"))
    if "latency" in s:
        lt = s["latency"]
        for key, name in (("load_50", "50%"), ("load_150", "150%")):
            x = lt[key]
            rows.append((f"capture→publish at {name} load ({x['source_fps']:.1f} frames/s), ms "
                         "p50 / p90 / p99",
                         f"{x['p50']['median']:.0f} / {x['p90']['median']:.0f} / "
                         f"{fmt(x['p99'], 0)}"))
            rows.append(("  first third → last third p50, ms",
                         f"{x['first_third_p50']['median']:.0f} → "
                         f"{x['last_third_p50']['median']:.0f}"))
        x = lt["load_150"]
        rows.append(("  p99 bound at 150%: 2 × inference + 1 frame interval, ms",
                     f"{x['p99_bound_ms']:.0f}"))
        if "baseline" in s and "load_150" in s["baseline"]:
            bl = s["baseline"]["load_150"]["latency_ms"]
            rows.append(("Python baseline at 150% load, ms p50 / p90 / p99",
                         f"{bl['p50']:.0f} / {bl['p90']:.0f} / {bl['p99']:.0f}"))
            rows.append(("  first third → last third p50, ms",
                         f"{bl['first_third_p50']:.0f} → {bl['last_third_p50']:.0f}"))
    if "threads" in s:
        t = s["threads"]
        for n in (1, 2):
            rows.append((f"{n} inference thread(s): bare / bare beside a decoder / e2e, frames/s",
                         f"{fmt(t[f'bare_{n}'])} / {fmt(t[f'bare_{n}_beside_decoder'])} / "
                         f"{fmt(t[f'e2e_{n}'])}"))
    if rows:
        lines.append("| measure | value |")
        lines.append("|---|---|")
        lines += [f"| {k} | {v} |" for k, v in rows]
    if "decode" in s:
        lines += ["", "| stream | decode | cameras | classified frames/s per camera (min–max) | "
                  "streamclassd cores: total / decode / preprocess / inference / publish | "
                  "cores per camera, all but inference | RSS steady / peak MB | "
                  "RSS per added camera MB | threads: capture + preprocess / other | "
                  "wakeups per camera per s: capture / preprocess | stack KiB per thread | "
                  "RTSP server cores |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        runs = list(s["decode"].values())
        for v in runs:
            pc, c = v["per_camera_fps"], v.get("cpu_cores", {})
            n = v["cameras"]
            rest = (c.get("total", 0) - c.get("inference", 0)) / n
            started = "" if v.get("all_started", True) else " (not all cameras started)"
            # RSS slope against the fewest cameras of the same stream and mode in this run
            base = min((b for b in runs if b["size"] == v["size"] and b["decode"] == v["decode"]),
                       key=lambda b: b["cameras"])
            added = (f"{(v['rss_steady_mb'] - base['rss_steady_mb']) / (n - base['cameras']):.1f}"
                     if n > base["cameras"] and v["rss_steady_mb"] and base["rss_steady_mb"]
                     else "–")
            th, wk = v.get("threads", {}), v.get("wakeups_per_s", {})
            threads = (f"{th.get('capture', 0) + th.get('preprocess', 0)} / {th.get('other', 0)}"
                       if th else "–")
            wake = (f"{wk.get('capture', 0) / n:.0f} / {wk.get('preprocess', 0) / n:.1f}"
                    if wk else "–")
            stack = (f"{v['stack_rss_kb'] / v['stacks']:.0f}" if v.get("stacks") else "–")
            lines.append(
                f"| {v['size']} | {v['decode']} | {n} | {min(pc):.2f}–{max(pc):.2f}{started} | "
                f"{c.get('total', 0):.2f} / {c.get('decode', 0):.2f} / {c.get('preprocess', 0):.2f} / "
                f"{c.get('inference', 0):.2f} / {c.get('publish', 0):.2f} | {rest:.3f} | "
                f"{v['rss_steady_mb'] or 0:.0f} / {v['rss_peak_mb'] or 0:.0f} | {added} | {threads} | "
                f"{wake} | {stack} | {v['rtsp_server_cores']:.2f} |")
    if "cameras" in s:
        lines += ["", "| model | max_batch | cameras | demand frames/s | classified frames/s | "
                  "per camera (min–max) | fairness (max dev.) | ms per frame | "
                  "streamclassd cores: decode / preprocess / inference / publish | "
                  "RTSP server cores |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for v in s["cameras"].values():
            pc = v["per_camera_fps"]
            ms = f"{v['ms_per_frame']:.1f}" if v["ms_per_frame"] else "–"
            started = "" if v.get("all_started", True) else " (not all cameras started)"
            c = v.get("cpu_cores", {})
            cores = (f"{c.get('decode', 0):.2f} / {c.get('preprocess', 0):.2f} / "
                     f"{c.get('inference', 0):.2f} / {c.get('publish', 0):.2f}" if c else "–")
            server = f"{v['rtsp_server_cores']:.2f}" if "rtsp_server_cores" in v else "–"
            lines.append(f"| {v['model']} | {v['max_batch']} | {v['cameras']} | "
                         f"{v['demand_fps']:.0f} | {v['classified_fps']:.1f} | "
                         f"{min(pc):.1f}–{max(pc):.1f} | ±{v['fairness_max_dev']:.1%}{started} | "
                         f"{ms} | {cores} | {server} |")
    if "regions" in s:
        lines += ["", "| regions (+ whole frame) | inputs per frame | ms per frame | "
                  "× whole frame only | added ms per region | preprocess ms per input | "
                  "inference ms per input | RSS peak MB |",
                  "|---|---|---|---|---|---|---|---|"]
        for k, v in s["regions"].items():
            added = f"{v['added_ms_per_region']:.1f}" if "added_ms_per_region" in v else "–"
            ratio = f"{v['ratio_to_whole_frame']:.2f}" if "ratio_to_whole_frame" in v else "1.00"
            lines.append(f"| {k} | {v['inputs_per_frame']['median']:.0f} | {fmt(v['frame_ms'])} | "
                         f"{ratio} | {added} | {fmt(v['preprocess_ms'], 2)} | "
                         f"{fmt(v['inference_ms'])} | {fmt(v['rss_peak_mb'], 0)} |")
    if "int8" in s:
        q = s["int8"]
        lines += ["", f"| EfficientNet-Lite0 INT8 (calibrated on {q['calibration_photos']}) | "
                  "weights | top-1 identical | top-5 set identical | top-1 identical where "
                  "FP32 >= 50% | frames/s 1 thread FP32 → INT8 | frames/s 2 threads FP32 → "
                  "INT8 | MB |", "|---|---|---|---|---|---|---|---|"]
        rows = list(q["variants"].items())
        rows += [("reference: FP16 (not INT8)", q["fp16"])] if "fp16" in q else []
        rows += [("ResNet-50, random weights: speed only (default options)", q["resnet50"])
                 ] if "resnet50" in q else []
        for label, v in rows:
            g, f = v["agreement"], v["frames_per_s"]
            lines.append(
                f"| {label} | {v['weights']} | {g['top1_same']}/{g['frames']} "
                f"({g['top1_agreement']:.1%}) | {g['top5_set_same']}/{g['frames']} "
                f"({g['top5_set_agreement']:.1%}) | {g['confident_top1_same']}/"
                f"{g['confident_frames']} | {f['fp32_1']:.0f} → {f['int8_1']:.0f} "
                f"({f['int8_1'] / f['fp32_1']:.2f}×) | {f['fp32_2']:.0f} → {f['int8_2']:.0f} "
                f"({f['int8_2'] / f['fp32_2']:.2f}×) | {v['size_mb']:.1f} |")
    if "console" in s:
        c = s["console"]
        lines += ["", f"| {c['cameras']} cameras at capacity ({c['model']}), watched by | "
                  "classified frames/s | × no viewer | streamclassd cores | JPEG encodes/s | "
                  "ms per encode | RSS steady MB | viewer process cores |",
                  "|---|---|---|---|---|---|---|---|"]
        names = {"none": "nobody", "console": "a console (a tile per camera)",
                 "mjpeg": "one MJPEG client"}
        for kind, name in names.items():
            v = c[kind]
            enc = fmt(v["encode_ms"], 2) if v["encode_ms"] else "–"
            lines.append(f"| {name} | {fmt(v['classified_fps'])} | {fmt(v['ratio_to_none'], 3)} | "
                         f"{fmt(v['cores'], 2)} | {fmt(v['encodes_per_s'])} | {enc} | "
                         f"{fmt(v['rss_steady_mb'], 0)} | {fmt(v['viewer_cores'], 2)} |")
    if "workers" in s:
        lines += ["", "| model | workers × threads | bare frames/s | e2e frames/s | "
                  "e2e / bare 1 × 2 | latency 50% load: p50 / p99 ms (bound) | "
                  "latency 150% load: p50 / p99 ms (bound), frames/s published of offered | "
                  "inference ms per frame | RSS steady / peak MB |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, res in s["workers"].items():
            for key, v in res["layouts"].items():
                lo, hi = v["load_50"], v["load_150"]
                lines.append(
                    f"| {name} | {key.replace('x', ' × ')} | {fmt(v['bare']['frames_per_s'])} | "
                    f"{fmt(v['e2e'])} | {fmt(v['ratio_to_bare_1x2'], 3)} | "
                    f"{lo['p50']:.0f} / {lo['p99']:.0f} ({lo['p99_bound_ms']:.0f}) | "
                    f"{hi['p50']:.0f} / {hi['p99']:.0f} ({hi['p99_bound_ms']:.0f}), "
                    f"{hi['published_fps']:.1f} of {hi['source_fps']:.1f} | {hi['inference_ms_p50']:.1f} | "
                    f"{fmt(v['rss_steady_mb'], 0)} / {fmt(v['rss_peak_mb'], 0)} |")
            lines.append(f"| {name} | bare 1 × 2 (the baseline) | {fmt(res['bare_1x2'])} | | | | | | |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50", help="a model under models/ (without .onnx)")
    ap.add_argument("--preset", default="torchvision")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clip", default=str(ROOT / "media/demo.mp4"))
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--camera-counts", default=None, help="cameras section: e.g. 1,2,4,8,16")
    ap.add_argument("--camera-models", default=None, help="cameras section: e.g. resnet18,resnet50")
    ap.add_argument("--camera-batches", default="4,1", help="cameras section: max_batch values")
    ap.add_argument("--cameras-s", type=float, default=None,
                    help="cameras section: measured window per run, s (default 30, quick 15)")
    ap.add_argument("--decode-counts", default=None, help="decode section, 1080p cameras: e.g. 1,4,8,16,24,32")
    ap.add_argument("--decode-counts-360", default=None, help="decode section, 360p cameras: e.g. 16,32,64")
    ap.add_argument("--decode-modes", default="all,keyframes,auto", help="decode section: decode values")
    ap.add_argument("--region-counts", default="0,1,2,4", help="regions section: regions per frame")
    ap.add_argument("--console-cameras", type=int, default=16, help="console section: cameras")
    ap.add_argument("--worker-models", default="resnet18,resnet50",
                    help="workers section: models compared")
    ap.add_argument("--report", metavar="JSON", help="print the table of a saved run and exit")
    a = ap.parse_args()
    if a.report:
        print(report(json.loads(pathlib.Path(a.report).read_text())))
        return 0
    a.model = ROOT / "models" / f"{a.model}.onnx"
    a.clip = pathlib.Path(a.clip)
    a.bare_frames = 20 if a.quick else 60
    a.latency_s = 15.0 if a.quick else 40.0
    a.cameras_s = a.cameras_s or (15.0 if a.quick else 30.0)
    a.camera_counts = [int(x) for x in (a.camera_counts or
                                        ("1,4,16" if a.quick else "1,2,4,8,16")).split(",")]
    a.camera_models = (a.camera_models or ("resnet50" if a.quick else "resnet18,resnet50")).split(",")
    a.camera_batches = [int(x) for x in a.camera_batches.split(",")]
    a.decode_counts = [int(x) for x in (a.decode_counts or
                                        ("1,8" if a.quick else "1,4,8,16,24,32")).split(",") if x]
    a.decode_counts_360 = [int(x) for x in (a.decode_counts_360 or
                                            ("16" if a.quick else "16,32,64")).split(",") if x]
    a.decode_modes = a.decode_modes.split(",")
    a.region_counts = [int(x) for x in a.region_counts.split(",")]
    a.worker_models = a.worker_models.split(",")
    sections = [x for x in a.sections.split(",") if x]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}")
    import onnxruntime
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    result = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "cpu": cpu, "cores": os.cpu_count(), "onnxruntime": onnxruntime.__version__,
              "model": a.model.name, "threads": a.threads, "clip": a.clip.name,
              "repeats": a.repeats, "quick": a.quick, "results": {}}
    with tempfile.TemporaryDirectory(prefix="streamclassd-bench-") as tmp:
        work = pathlib.Path(tmp)
        broker = Broker(work)
        ctx = {"work": work, "broker": broker, "results": result["results"]}
        try:
            for name in SECTIONS:  # fixed order: later sections use earlier figures
                if name in sections:
                    started = time.monotonic()
                    result["results"][name] = SECTIONS[name](a, ctx)
                    log(f"{name} done in {time.monotonic() - started:.0f} s")
        finally:
            broker.stop()
    out = pathlib.Path(a.json or ROOT / "target/bench" /
                       f"bench-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(report(result))
    print(f"\n(JSON: {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
