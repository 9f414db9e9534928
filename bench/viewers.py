"""Viewers for the benchmark's console section: HTTP clients that ask of the daemon's admin
listener what an open console (src/admin/console/console.js) or an MJPEG client asks, so
what watching costs can be measured beside not watching. They run on the benchmarked box
(the browser normally runs elsewhere); their own work is small next to the daemon's."""

from __future__ import annotations

import http.client
import json
import threading
import time

# console.js: tiles ask for 360 lines; the next image 250 ms after the previous one loaded,
# 750 ms when the frame had not changed, Retry-After on 503; /api/cameras every 2 s.
TILE_HEIGHT = 360
IMAGE_MIN_S = 0.25
IMAGE_SAME_S = 0.75
POLL_S = 2.0


class _Loop(threading.Thread):
    kind = "other"

    def __init__(self, port: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.port, self.stop_flag = port, stop
        self.requests = self.images = self.errors = 0
        self.bytes = 0

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)


class Tile(_Loop):
    """One console tile: latest.jpg of one camera, one request at a time."""
    kind = "tile_images"

    def __init__(self, port: int, stop: threading.Event, camera: str):
        super().__init__(port, stop)
        self.camera, self.frame = camera, None

    def run(self) -> None:
        c = self.conn()
        while not self.stop_flag.is_set():
            wait = IMAGE_MIN_S
            try:
                c.request("GET", f"/api/cameras/{self.camera}/latest.jpg?h={TILE_HEIGHT}"
                                 f"&_={time.time_ns()}")
                r = c.getresponse()
                body = r.read()
                self.requests += 1
                if r.status == 503:
                    wait = float(r.getheader("Retry-After") or 1)
                elif r.status == 200:
                    frame = r.getheader("X-Frame")
                    if frame == self.frame:
                        wait = IMAGE_SAME_S
                    else:
                        self.frame = frame
                        self.images += 1
                        self.bytes += len(body)
                else:
                    self.errors += 1
                    wait = 2.0
            except (OSError, http.client.HTTPException):
                self.errors += 1
                c.close()
                c = self.conn()
                wait = 2.0
            self.stop_flag.wait(wait)
        c.close()


class Poll(_Loop):
    """The console's /api/cameras poll."""

    def run(self) -> None:
        c = self.conn()
        while not self.stop_flag.is_set():
            try:
                c.request("GET", "/api/cameras")
                json.loads(c.getresponse().read())
                self.requests += 1
            except (OSError, http.client.HTTPException, ValueError):
                self.errors += 1
                c.close()
                c = self.conn()
            self.stop_flag.wait(POLL_S)
        c.close()


class Stream(_Loop):
    """Reads a streaming response (SSE or MJPEG) to its end or until stopped, counting
    `marker`s (one per event or part)."""

    def __init__(self, port: int, stop: threading.Event, path: str, marker: bytes, kind: str):
        super().__init__(port, stop)
        self.path, self.marker, self.kind = path, marker, kind

    def run(self) -> None:
        c = self.conn()
        try:
            c.request("GET", self.path)
            r = c.getresponse()
            self.requests += 1
            tail = b""
            while not self.stop_flag.is_set():
                chunk = r.read1(65536)
                if not chunk:
                    break
                self.bytes += len(chunk)
                data = tail + chunk
                self.images += data.count(self.marker)
                tail = data[-len(self.marker) + 1:]
        except (OSError, http.client.HTTPException):
            self.errors += 1
        finally:
            c.close()


class Viewers:
    """`kind` = "console" (a tile per camera, the poll, the event stream) or "mjpeg" (one
    MJPEG client on the first camera at 360 lines)."""

    def __init__(self, kind: str, port: int, cameras: list[str]):
        self.stop_flag = threading.Event()
        if kind == "console":
            self.loops = [Tile(port, self.stop_flag, c) for c in cameras]
            self.loops += [Poll(port, self.stop_flag),
                           Stream(port, self.stop_flag, "/api/events", b"\n\n", "events")]
        elif kind == "mjpeg":
            self.loops = [Stream(port, self.stop_flag,
                                 f"/api/cameras/{cameras[0]}/stream.mjpeg?h={TILE_HEIGHT}",
                                 b"--streamclassd-frame", "mjpeg_parts")]
        else:
            raise ValueError(kind)
        for loop in self.loops:
            loop.start()

    def stop(self) -> dict:
        self.stop_flag.set()
        for loop in self.loops:
            loop.join(timeout=15)
        out = {k: sum(getattr(l, k) for l in self.loops) for k in ("requests", "errors", "bytes")}
        for l in self.loops:
            if l.kind != "other":
                out[l.kind] = out.get(l.kind, 0) + l.images
        return out


def main() -> None:
    """Run as a process of its own (so its CPU time is its own): ``viewers.py KIND PORT
    CAMERA...`` watches until its stdin closes, then prints its counts as JSON."""
    import sys
    kind, port, cameras = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    v = Viewers(kind, port, cameras)
    sys.stdin.read()
    print(json.dumps(v.stop()), flush=True)


if __name__ == "__main__":
    main()
