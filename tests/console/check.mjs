// Loads the console of a running daemon in Debian's headless Chromium (driven by
// playwright-core, which never downloads a browser) and prints what it saw as JSON:
//   node tests/console/check.mjs <console URL> <camera id> <screenshot dir>
// Waits for conditions (generous deadlines), never for fixed times.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, camera, shots] = process.argv.slice(2);
const WAIT = 120_000;
const profile = mkdtempSync(join(tmpdir(), "streamclassd-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 800 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const out = {};
try {
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  const tile = `.tile[data-camera="${camera}"]`;
  await page.waitForFunction((t) => document.querySelector(`${t} .state`)?.textContent === "streaming", tile, { timeout: WAIT });
  out.state = await page.textContent(`${tile} .state`);
  // The tile's image has loaded a classified frame ...
  const frame = () => page.evaluate((t) => {
    const img = document.querySelector(`${t} img`);
    return img && img.naturalWidth > 0 && img.dataset.frame ? { frame: Number(img.dataset.frame), width: img.naturalWidth, height: img.naturalHeight } : null;
  }, tile);
  await page.waitForFunction((t) => { const i = document.querySelector(`${t} img`); return i && i.naturalWidth > 0 && i.dataset.frame; }, tile, { timeout: WAIT });
  const first = await frame();
  // ... and refreshes: a later frame replaces it.
  await page.waitForFunction(([t, f]) => Number(document.querySelector(`${t} img`)?.dataset.frame) > f, [tile, first.frame], { timeout: WAIT });
  const second = await frame();
  out.frames = [first.frame, second.frame];
  out.image = { width: second.width, height: second.height };
  await page.waitForFunction((t) => document.querySelector(`${t} .top1`)?.textContent, tile, { timeout: WAIT });
  out.top1 = await page.textContent(`${tile} .top1`);
  out.top5 = await page.$$eval(`${tile} .top5 li .name`, (l) => l.map((e) => e.textContent));
  // The configured region's outline, once its first result and the frame's size are in.
  await page.waitForSelector(`${tile} .region`, { timeout: WAIT });
  out.regions = await page.$$eval(`${tile} .region`, (l) => l.map((e) => e.dataset.region));
  out.conn = await page.textContent("#conn");
  await page.screenshot({ path: join(shots, "console-grid.png") });
  // The camera view: large image, timeline.
  await page.click(`${tile} .head a`);
  await page.waitForSelector("#timeline li", { timeout: WAIT });
  await page.waitForFunction(() => document.querySelector("#view-img")?.naturalWidth > 0, null, { timeout: WAIT });
  out.timeline = await page.$$eval("#timeline li", (l) => l.map((e) => e.textContent));
  out.viewTitle = await page.textContent("#view-title");
  await page.screenshot({ path: join(shots, "console-camera.png"), fullPage: true });
  // Phone width: back to the grid, nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(url);
  await page.waitForFunction((t) => document.querySelector(`${t} img`)?.naturalWidth > 0, tile, { timeout: WAIT });
  out.phoneOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.screenshot({ path: join(shots, "console-phone.png"), fullPage: true });
  out.errors = errors;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
