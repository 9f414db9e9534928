#!/usr/bin/python3
"""Real RTSP server for streamclassd's tests (GStreamer RTSP server via PyGObject).

Usage::

    /usr/bin/python3 tests/support/rtsp_server.py --file clip.mp4 \\
        [--port 0] [--path /stream] [--loop]

Run it with Debian's ``/usr/bin/python3`` (it has ``gi``; other interpreters on
PATH may not).  Debian packages needed: ``python3-gi gir1.2-gst-rtsp-server-1.0
gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
gstreamer1.0-plugins-ugly`` (base gives filesrc/parsebin/appsrc/appsink, good
gives qtdemux/matroskademux and rtph264pay, bad gives h264parse).

What it does
    Serves the H.264 video track of ``--file`` (mp4/mov/mkv/ts: anything
    ``parsebin`` can demux) *without re-encoding* at
    ``rtsp://127.0.0.1:PORT/PATH``, listening on the loopback interface only.
    ``--port 0`` (the default) lets the kernel pick a free port.  When the server
    is listening it prints exactly one line, ``LISTENING <port>``, to stdout and
    flushes; everything else goes to stderr.  It then runs until SIGTERM or SIGINT
    and exits with status 0.  A file that cannot be read or has no H.264 video
    makes it exit with status 2 before printing anything to stdout.

How
    The media is *live* and *shared*, like a camera: every client connected at the
    same time gets the same packets, and a client that joins later starts at the
    current position (SPS/PPS are repeated before every IDR frame, so it can start
    decoding at the next keyframe).  Its pipeline is
    ``appsrc ! rtph264pay name=pay0 config-interval=-1``.  A private reader
    pipeline (``filesrc ! parsebin ! h264parse ! appsink``) demuxes the file; a
    feeder thread takes its access units in decode order, paces them in real time
    against the media pipeline's clock and pushes them into the appsrc with
    timestamps rewritten to the media's running time (PTS/DTS offsets kept, so
    B-frames are fine).

    ``--loop``: when the reader reaches the end of the file it seeks back to the
    start and the feeder keeps going, adding the file's duration to the timestamps,
    so the RTSP stream plays the file over and over with continuous RTP
    timestamps (and never ends).  Without ``--loop`` the stream ends at the end of
    the file: the appsrc sends end-of-stream and clients see the session end.

    The media is created when the first client asks for it (DESCRIBE) and stopped
    when the last one leaves; a client that connects after that starts the file
    again from the beginning.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstRtspServer", "1.0")
# GstApp is imported so that appsink elements get their GstApp.AppSink methods
# (try_pull_sample, is_eos) in Python.
from gi.repository import GLib, Gst, GstApp, GstRtspServer  # noqa: E402,F401

NONE = Gst.CLOCK_TIME_NONE


def log(msg: str) -> None:
    print(f"rtsp_server: {msg}", file=sys.stderr, flush=True)


def quote(path: str) -> str:
    """Quote a value for gst_parse_launch."""
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def reader_pipeline(path: str) -> Gst.Pipeline:
    """filesrc ! parsebin ! h264parse ! appsink: H.264 access units, no decoding."""
    return Gst.parse_launch(
        f"filesrc location={quote(path)} ! parsebin ! video/x-h264 ! h264parse ! "
        "video/x-h264,stream-format=avc,alignment=au ! "
        "appsink name=sink sync=false max-buffers=16 enable-last-sample=false"
    )


def probe_file(path: str, timeout_s: float = 10.0) -> Gst.Caps:
    """Preroll the reader once; return the H.264 caps or exit(2) with a message."""
    pipe = reader_pipeline(path)
    pipe.set_state(Gst.State.PAUSED)
    bus = pipe.get_bus()
    msg = bus.timed_pop_filtered(
        int(timeout_s * Gst.SECOND),
        Gst.MessageType.ASYNC_DONE | Gst.MessageType.ERROR | Gst.MessageType.EOS,
    )
    caps = None
    if msg is not None and msg.type == Gst.MessageType.ASYNC_DONE:
        caps = pipe.get_by_name("sink").get_static_pad("sink").get_current_caps()
    pipe.set_state(Gst.State.NULL)
    if caps is None:
        if msg is None:
            why = "timed out"
        elif msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            why = f"{err.message} ({dbg})"
        else:
            why = "no H.264 video stream"
        log(f"cannot serve {path}: {why}")
        sys.exit(2)
    return caps


class Feeder:
    """Pushes the file's H.264 access units into one media's appsrc in real time."""

    def __init__(self, path: str, appsrc: Gst.Element, loop: bool) -> None:
        self.path = path
        self.appsrc = appsrc
        self.loop = loop
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self.reader = reader_pipeline(path)
        self.sink = self.reader.get_by_name("sink")
        self.caps_set = False

    def start(self) -> None:
        self.reader.set_state(Gst.State.PLAYING)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout=5)
        self.reader.set_state(Gst.State.NULL)

    def _running_time(self):
        clock = self.appsrc.get_clock()
        if clock is None:
            return None
        return clock.get_time() - self.appsrc.get_base_time()

    def _next_sample(self):
        """Next sample from the reader, or None at end of file / on stop."""
        while not self.stop_event.is_set():
            sample = self.sink.try_pull_sample(100 * Gst.MSECOND)
            if sample is not None:
                return sample
            if self.sink.is_eos():
                return None
            msg = self.reader.get_bus().pop_filtered(Gst.MessageType.ERROR)
            if msg is not None:
                err, dbg = msg.parse_error()
                log(f"reader error: {err.message} ({dbg})")
                return None
        return None

    def _run(self) -> None:
        t0 = None  # media running time that stream time 0 maps to
        first = None  # first input timestamp (decode order) of the file
        offset = 0  # added per loop
        pts_min = None  # smallest PTS in the file, input time
        loop_end = 0  # max (pts + duration) seen in the current pass, input time
        loops = 0
        while not self.stop_event.is_set():
            sample = self._next_sample()
            if sample is None:
                if self.stop_event.is_set():
                    break
                if not self.loop or pts_min is None:
                    log("end of file: sending end-of-stream")
                    self.appsrc.emit("end-of-stream")
                    break
                # next pass: its first PTS lands right after this pass's last frame
                offset += loop_end - pts_min
                loop_end = 0
                loops += 1
                log(f"end of file: looping (pass {loops + 1})")
                ok = self.reader.seek_simple(
                    Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0
                )
                if not ok:
                    log("seek to start failed; ending stream")
                    self.appsrc.emit("end-of-stream")
                    break
                continue

            if not self.caps_set:
                self.appsrc.set_caps(sample.get_caps())
                self.caps_set = True
            buf = sample.get_buffer()
            pts, dts, dur = buf.pts, buf.dts, buf.duration
            ts = dts if dts != NONE else pts
            if ts == NONE:
                log("buffer without timestamps; dropping")
                continue
            if first is None:
                first = ts
            if pts != NONE:
                loop_end = max(loop_end, pts + (dur if dur != NONE else 0))
                pts_min = pts if pts_min is None else min(pts_min, pts)

            # wait for the media pipeline's clock, then pace in real time
            while t0 is None and not self.stop_event.is_set():
                now = self._running_time()
                if now is not None:
                    t0 = now
                else:
                    time.sleep(0.005)
            if self.stop_event.is_set():
                break
            due = t0 + offset + (ts - first)
            while not self.stop_event.is_set():
                now = self._running_time()
                if now is None or now >= due:
                    break
                time.sleep(min((due - now) / Gst.SECOND, 0.05))

            out = buf.copy()
            out.pts = t0 + offset + (pts - first) if pts != NONE else NONE
            out.dts = t0 + offset + (dts - first) if dts != NONE else NONE
            ret = self.appsrc.emit("push-buffer", out)
            if ret != Gst.FlowReturn.OK:
                log(f"appsrc push returned {ret.value_nick}; feeder stops")
                break


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.feeders: dict[int, Feeder] = {}
        self.lock = threading.Lock()
        self.server = GstRtspServer.RTSPServer()
        self.server.set_address("127.0.0.1")
        self.server.set_service(str(args.port))
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            "( appsrc name=src is-live=true format=time do-timestamp=false "
            "max-bytes=0 max-buffers=32 block=false ! "
            "rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
        factory.set_shared(True)
        factory.connect("media-configure", self.on_media_configure)
        self.server.get_mount_points().add_factory(args.path, factory)

    def on_media_configure(self, _factory, media) -> None:
        appsrc = media.get_element().get_by_name("src")
        feeder = Feeder(self.args.file, appsrc, self.args.loop)
        key = id(media)
        with self.lock:
            self.feeders[key] = feeder
        started = threading.Event()

        def on_need_data(_src, _length):
            if not started.is_set():
                started.set()
                feeder.start()

        def on_unprepared(_media):
            with self.lock:
                f = self.feeders.pop(key, None)
            if f is not None:
                f.stop()

        appsrc.connect("need-data", on_need_data)
        media.connect("unprepared", on_unprepared)
        log("media configured (new shared session)")

    def run(self) -> int:
        if self.server.attach(None) == 0:
            log(f"cannot listen on 127.0.0.1:{self.args.port}")
            return 2
        port = self.server.get_bound_port()
        loop = GLib.MainLoop()

        def quit_loop(*_):
            loop.quit()
            return GLib.SOURCE_REMOVE

        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, quit_loop)
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, quit_loop)
        sys.stdout.write(f"LISTENING {port}\n")
        sys.stdout.flush()
        log(f"serving {self.args.file} at rtsp://127.0.0.1:{port}{self.args.path}"
            f"{' (looping)' if self.args.loop else ''}")
        loop.run()
        with self.lock:
            feeders = list(self.feeders.values())
            self.feeders.clear()
        for f in feeders:
            f.stop()
        log("stopped")
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description="Serve an H.264 file over RTSP on 127.0.0.1.")
    ap.add_argument("--file", required=True, help="H.264 video file (mp4, mkv, ...)")
    ap.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    ap.add_argument("--path", default="/stream", help="mount path (default /stream)")
    ap.add_argument("--loop", action="store_true", help="restart the file when it ends")
    args = ap.parse_args()
    if not args.path.startswith("/"):
        args.path = "/" + args.path
    if not os.path.isfile(args.file):
        log(f"no such file: {args.file}")
        return 2
    args.file = os.path.abspath(args.file)
    Gst.init(None)
    caps = probe_file(args.file)
    log(f"video caps: {caps.to_string()[:120]}")
    return Server(args).run()


if __name__ == "__main__":
    sys.exit(main())
