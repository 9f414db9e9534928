// streamclassd console: a tile per camera (latest classified frame, top-5, state, rates),
// and a camera view (large frame, label timeline, sparklines, each region's top-5).
// Plain JavaScript, no build step; everything comes from this daemon's API.
"use strict";

const TILE_HEIGHT = 360;
const VIEW_HEIGHT = 720;
const POLL_MS = 2000;
// An image is asked for only after the previous one loaded, and no sooner than this.
const IMAGE_MIN_MS = 250;
// The same frame again: wait longer before asking.
const IMAGE_SAME_MS = 750;

const cams = new Map(); // id -> {data, tile, img: ImageLoop}
let current = null; // the camera view's id, or null for the grid

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
const pct = (s) => `${(s * 100).toFixed(1)}%`;
const api = (path) => `api/${path}`;

function notice(text) {
  const n = $("#notice");
  n.hidden = !text;
  n.textContent = text || "";
}

async function getJson(path) {
  const r = await fetch(api(path), { cache: "no-store" });
  if (r.status === 401) {
    notice("This console needs the admin token: open it as /?token=<token> once.");
    throw new Error("unauthorized");
  }
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

// Fetches a camera's latest.jpg again and again, one request at a time, paused while the
// tab is hidden or the image is off screen.
class ImageLoop {
  constructor(id, img, height, onFrame) {
    this.id = id;
    this.img = img;
    this.height = height;
    this.onFrame = onFrame;
    this.visible = true;
    this.busy = false;
    this.timer = null;
    this.frame = null;
    this.url = null;
    this.stopped = false;
    if ("IntersectionObserver" in window) {
      this.observer = new IntersectionObserver((entries) => {
        this.visible = entries.some((e) => e.isIntersecting);
        if (this.visible) this.kick(0);
      });
      this.observer.observe(img);
    }
  }

  kick(ms) {
    if (this.stopped || this.busy) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load(), ms);
  }

  async load() {
    if (this.stopped || this.busy) return;
    if (document.hidden || !this.visible) return; // resumed by visibilitychange / observer
    this.busy = true;
    let next = IMAGE_MIN_MS;
    try {
      const q = `h=${this.height}&_=${Date.now()}`;
      const r = await fetch(api(`cameras/${encodeURIComponent(this.id)}/latest.jpg?${q}`), { cache: "no-store" });
      if (r.status === 503) {
        next = 1000 * (Number(r.headers.get("Retry-After")) || 1);
      } else if (r.ok) {
        const frame = Number(r.headers.get("X-Frame"));
        if (frame === this.frame) {
          next = IMAGE_SAME_MS;
        } else {
          const blob = await r.blob();
          const url = URL.createObjectURL(blob);
          await new Promise((done) => {
            this.img.onload = this.img.onerror = done;
            this.img.src = url;
          });
          if (this.url) URL.revokeObjectURL(this.url);
          this.url = url;
          this.frame = frame;
          this.img.dataset.frame = String(frame);
          this.onFrame({
            frame,
            capturedAt: r.headers.get("X-Captured-At"),
            width: Number(r.headers.get("X-Frame-Width")),
            height: Number(r.headers.get("X-Frame-Height")),
          });
        }
      } else {
        next = 2000;
      }
    } catch (e) {
      next = 2000;
    } finally {
      this.busy = false;
    }
    this.kick(next);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.observer) this.observer.disconnect();
    if (this.url) URL.revokeObjectURL(this.url);
  }
}

function top5List(ol, top5) {
  ol.replaceChildren(
    ...(top5 || []).map((t) => {
      const li = el("li");
      li.append(el("span", "name", t.label), el("span", "score", pct(t.score)));
      const bar = el("span", "bar");
      bar.style.width = pct(Math.max(0, Math.min(1, t.score)));
      li.append(bar);
      return li;
    }),
  );
}

// Region outlines over an image, from input_rect in frame pixels.
function drawRegions(box, regions, size) {
  if (!size || !size.width) return;
  box.replaceChildren(
    ...(regions || []).map((r) => {
      const [x, y, w, h] = r.input_rect;
      const d = el("div", "region");
      Object.assign(d.style, {
        left: pct(x / size.width), top: pct(y / size.height),
        width: pct(w / size.width), height: pct(h / size.height),
      });
      const top1 = r.top5 && r.top5[0];
      d.append(el("span", "", top1 ? `${r.region}: ${top1.label} ${pct(top1.score)}` : r.region));
      d.dataset.region = r.region;
      return d;
    }),
  );
}

function fmt(v, digits = 1) {
  return v === null || v === undefined ? "–" : Number(v).toFixed(digits);
}

function stats(dl, c) {
  const rows = [
    ["fps", `${fmt(c.fps.classified)} / ${fmt(c.fps.demand)}`],
    ["latency p50/p99", c.latency_ms ? `${fmt(c.latency_ms.p50, 0)} / ${fmt(c.latency_ms.p99, 0)} ms` : "–"],
    ["dropped", c.dropped],
    ["skipped", c.skipped],
    ["reconnects", c.reconnects],
  ];
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", "", k), el("dd", "", String(v))]));
}

// Whether a camera's last result is old: no frame for 5 intervals of its demand, or 10 s.
function staleFor(c) {
  if (!c.last || c.state !== "streaming") return 0;
  const age = (Date.now() - Date.parse(c.last.captured_at)) / 1000;
  const limit = Math.max(10, c.fps.demand > 0 ? 5 / c.fps.demand : 10);
  return age > limit ? age : 0;
}

function makeTile(id) {
  const t = el("article", "tile");
  t.dataset.camera = id;
  const head = el("div", "head");
  const name = el("a", "", id);
  name.href = `#/camera/${encodeURIComponent(id)}`;
  head.append(name, el("span", "chip state", "…"));
  const fig = el("figure", "frame");
  const img = el("img");
  img.alt = `latest classified frame of ${id}`;
  fig.append(img, el("div", "regions"));
  t.append(head, fig, el("div", "top1", ""), el("ol", "top5"), el("dl", "stats"), el("div", "error"));
  return t;
}

function renderTile(cam) {
  const c = cam.data;
  const t = cam.tile;
  const chip = $(".state", t);
  chip.textContent = c.state;
  chip.className = `chip state ${c.state}`;
  const top = c.last ? c.last.top5 : [];
  $(".top1", t).textContent = top.length ? top[0].label : "";
  top5List($(".top5", t), top);
  stats($(".stats", t), c);
  $(".error", t).textContent = c.error || "";
  drawRegions($(".regions", t), c.regions, cam.size);
  const stale = staleFor(c);
  t.classList.toggle("stale", stale > 0);
  let note = $(".stale-note", t);
  if (stale && !note) $(".frame", t).append((note = el("div", "stale-note")));
  if (note) {
    if (stale) note.textContent = `stale: no new frame for ${Math.round(stale)} s`;
    else note.remove();
  }
}

function update(list) {
  const seen = new Set();
  for (const c of list) {
    seen.add(c.id);
    let cam = cams.get(c.id);
    if (!cam) {
      const tile = makeTile(c.id);
      $("#grid").append(tile);
      cam = { data: c, tile, size: null };
      cam.img = new ImageLoop(c.id, $("img", tile), TILE_HEIGHT, (f) => {
        cam.size = f;
        drawRegions($(".regions", tile), cam.data.regions, f);
      });
      cams.set(c.id, cam);
      cam.img.kick(0);
    }
    cam.data = c;
    renderTile(cam);
  }
  for (const [id, cam] of cams) {
    if (!seen.has(id)) {
      cam.img.stop();
      cam.tile.remove();
      cams.delete(id);
    }
  }
  const streaming = list.filter((c) => c.state === "streaming").length;
  $("#summary").textContent = `${list.length} cameras, ${streaming} streaming`;
}

async function poll() {
  try {
    const body = await getJson("cameras");
    update(body.cameras);
    if (current) await pollView();
  } catch (e) {
    // The next poll tries again; the chip shows the event stream's state.
  }
  setTimeout(poll, POLL_MS);
}

// ---- camera view ----
let viewLoop = null;
let viewSize = null;

function spark(svg, values) {
  const pts = values.map((v, i) => [i, v]).filter(([, v]) => v !== null && v !== undefined);
  if (!pts.length) return svg.replaceChildren();
  const max = Math.max(...pts.map(([, v]) => v), 1e-9);
  const n = Math.max(values.length - 1, 1);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", pts.map(([i, v]) => `${(i / n) * 300},${40 - (v / max) * 36}`).join(" "));
  svg.replaceChildren(line);
}

function hue(index) {
  return `hsl(${(index * 137.508) % 360} 65% 50%)`;
}

function renderView(c) {
  $("#view-title").textContent = c.id;
  const chip = $("#view-state");
  chip.textContent = c.state;
  chip.className = `chip ${c.state}`;
  top5List($("#view-top5"), c.last ? c.last.top5 : []);
  const regions = $("#view-region-list");
  regions.replaceChildren(
    ...(c.regions || []).flatMap((r) => {
      const ol = el("ol", "top5");
      top5List(ol, r.top5);
      return [el("h2", "", `Region ${r.region}`), ol];
    }),
  );
  drawRegions($("#view-regions"), c.regions, viewSize);
  stats($("#view-stats"), c);
  const points = c.series.points;
  spark($("#spark-fps"), points.map((p) => p.fps));
  spark($("#spark-lat"), points.map((p) => p.latency_ms));
  $("#fps-now").textContent = fmt(c.fps.classified);
  $("#lat-now").textContent = c.latency_ms ? `p50 ${fmt(c.latency_ms.p50, 0)}` : "";
  // The timeline: newest first, and a band of the last 10 minutes coloured by label.
  const changes = c.timeline;
  $("#timeline").replaceChildren(
    ...changes.slice().reverse().map((ch) => {
      const li = el("li");
      const time = el("time", "", new Date(ch.at).toLocaleTimeString());
      time.dateTime = ch.at;
      li.append(time, `${ch.label} (${pct(ch.score)}), frame ${ch.frame}`);
      return li;
    }),
  );
  const now = Date.now();
  const from = now - 600000;
  const band = $("#band");
  band.replaceChildren(
    ...changes.map((ch, i) => {
      const start = Math.max(from, Date.parse(ch.at));
      const end = i + 1 < changes.length ? Date.parse(changes[i + 1].at) : now;
      const d = el("div");
      d.style.flex = `${Math.max(0, end - start)} 0 0`;
      d.style.background = hue(ch.index);
      d.title = ch.label;
      return d;
    }),
  );
}

async function pollView() {
  if (!current) return;
  renderView(await getJson(`cameras/${encodeURIComponent(current)}`));
}

function route() {
  const m = location.hash.match(/^#\/camera\/(.+)$/);
  current = m ? decodeURIComponent(m[1]) : null;
  $("#grid").hidden = !!current;
  $("#view").hidden = !current;
  if (viewLoop) viewLoop.stop();
  viewLoop = null;
  viewSize = null;
  // Tiles are off screen while the view shows: their loops pause by themselves.
  if (current) {
    viewLoop = new ImageLoop(current, $("#view-img"), VIEW_HEIGHT, (f) => {
      viewSize = f;
    });
    viewLoop.kick(0);
    pollView().catch(() => {});
  }
}

// ---- events: labels and states as they are published ----
function listen() {
  const conn = $("#conn");
  const es = new EventSource(api("events"));
  es.onopen = () => {
    conn.textContent = "live";
    conn.className = "chip live";
  };
  es.onerror = () => {
    conn.textContent = "reconnecting";
    conn.className = "chip reconnecting";
  };
  es.addEventListener("classification", (ev) => {
    const m = JSON.parse(ev.data);
    const cam = cams.get(m.camera);
    if (!cam) return;
    if (m.region) {
      // A region's first result may come before the next poll lists it: add it then.
      const regions = (cam.data.regions ||= []);
      const fresh = { top5: m.top5, frame: m.frame, input_rect: m.input_rect, captured_at: m.captured_at };
      const r = regions.find((x) => x.region === m.region);
      if (r) Object.assign(r, fresh);
      else regions.push({ region: m.region, ...fresh });
    } else {
      cam.data.last = { frame: m.frame, captured_at: m.captured_at, model: m.model, top5: m.top5 };
    }
    cam.tile.dataset.seq = String(m.seq);
    renderTile(cam);
  });
  es.addEventListener("status", (ev) => {
    const m = JSON.parse(ev.data);
    const cam = cams.get(m.camera);
    if (!cam) return;
    Object.assign(cam.data, {
      state: m.status.state, error: m.status.error, fps: m.status.fps,
      dropped: m.status.dropped, skipped: m.status.skipped, reconnects: m.status.reconnects,
    });
    renderTile(cam);
  });
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) return;
  for (const cam of cams.values()) cam.img.kick(0);
  if (viewLoop) viewLoop.kick(0);
});
window.addEventListener("hashchange", route);
route();
poll();
listen();
