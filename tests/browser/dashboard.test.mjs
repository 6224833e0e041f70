// The dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core; no
// browser is downloaded) against `mayfly demo --dashboard`: a wrong token sees only the sign-in,
// the signed-in page agrees with /api/v1/status of the same pass, a pass arrives live, an idle
// machine is deleted after a confirmation, the page works without JavaScript, and no request
// but the sign-in carries the token. Screenshots go to $OUT (target/browser).
//
// MAYFLY_BIN: the mayfly binary. CHROMIUM: the browser (default /usr/bin/chromium).
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";

const bin = process.env.MAYFLY_BIN;
const out = process.env.OUT || "target/browser";
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
assert.ok(bin, "set MAYFLY_BIN to the mayfly binary");
mkdirSync(out, { recursive: true });
const work = mkdtempSync(join(tmpdir(), "mayfly-browser-"));
const token = "browser-test-token-" + Math.random().toString(16).slice(2);
writeFileSync(join(work, "token"), token, { mode: 0o600 });

// This machine's closed network needs these: no sandbox as root, no GPU, no calls home.
const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const started = Date.now();
const step = (what) => console.log(`-- ${((Date.now() - started) / 1000).toFixed(1)} s: ${what}`);
const deadline = (ms, what) =>
  new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms));

// The demo, slow enough to act while jobs run; no comparison runs (this is about the page).
const demo = spawn(bin, [
  "demo", "--speed", "15", "--compare", "false",
  "--dashboard", "127.0.0.1:0", "--token-file", join(work, "token"),
], { stdio: ["ignore", "pipe", "inherit"] });
let demoOut = "";
const base = await Promise.race([
  new Promise((resolve, reject) => {
    demo.stdout.on("data", (chunk) => {
      demoOut += chunk;
      const m = demoOut.match(/dashboard on (http:\/\/[0-9.:]+)\//);
      if (m) resolve(m[1]);
    });
    demo.on("exit", (code) => reject(new Error(`the demo ended (${code}):\n${demoOut}`)));
  }),
  deadline(60_000, "the demo's dashboard banner"),
]);
assert.ok(!demoOut.includes(token), "the demo does not print the token");
step(`demo serves the dashboard on ${base}`);

async function api(path) {
  const r = await fetch(base + path, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(r.status, 200, `${path}: ${r.status}`);
  return r.json();
}

let userDirs = 0;
async function browser(options = {}) {
  const dir = join(work, `profile-${userDirs++}`);
  return chromium.launchPersistentContext(dir, {
    executablePath: browserPath,
    headless: true,
    args: FLAGS,
    viewport: { width: 1280, height: 900 },
    ...options,
  });
}

let failed = false;
try {
  // Wait for the first pass with a machine, so there is something not to show.
  let status;
  for (let i = 0; i < 200; i++) {
    const r = await fetch(base + "/api/v1/status", { headers: { authorization: `Bearer ${token}` } });
    if (r.status === 200) {
      status = await r.json();
      if (status.instances.length > 0) break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(status && status.instances.length > 0, "the demo made machines");

  // 1. A wrong token: refused, nothing shown, no cookie.
  {
    const ctx = await browser();
    const page = ctx.pages()[0] || (await ctx.newPage());
    await page.goto(base + "/");
    await page.fill("#token", "not-" + token);
    const [answer] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith("/signin")),
      page.click("button[type=submit]"),
    ]);
    assert.equal(answer.status(), 401);
    await page.waitForSelector("text=That is not the API token");
    const html = await page.content();
    for (const i of status.instances) assert.ok(!html.includes(i.name), `refused page shows ${i.name}`);
    assert.equal(await page.locator("#machines").count(), 0);
    assert.deepEqual((await ctx.cookies()).filter((c) => c.name === "mayfly_session"), []);
    const stream = await page.evaluate(async () => (await fetch("/dashboard/stream")).status);
    assert.equal(stream, 401, "no stream without a sign-in");
    await page.screenshot({ path: join(out, "refused.png"), fullPage: true });
    await ctx.close();
    step("a wrong token sees only the sign-in");
  }

  // 2. Signed in: the page agrees with the API, and goes live.
  const ctx = await browser();
  const page = ctx.pages()[0] || (await ctx.newPage());
  const requests = [];
  page.on("request", (r) => requests.push(r));
  await page.goto(base + "/");
  await page.screenshot({ path: join(out, "signin.png") });
  await page.fill("#token", token);
  await Promise.all([page.waitForURL(base + "/"), page.click("button[type=submit]")]);
  await page.waitForSelector("#machines");
  const cookie = (await ctx.cookies()).find((c) => c.name === "mayfly_session");
  assert.ok(cookie && cookie.httpOnly && cookie.sameSite === "Strict", JSON.stringify(cookie));
  assert.ok(!cookie.value.includes(token));
  await page.waitForSelector("#live.on", { timeout: 10_000 });
  step("signed in; the event stream is live");

  // The same pass on both sides: read the page's pass, then the API's, until they agree.
  let agreed = false;
  for (let i = 0; i < 50 && !agreed; i++) {
    const shown = await page.evaluate(() => ({
      at: document.getElementById("main").dataset.at,
      machines: [...document.querySelectorAll("#machines tr[data-machine]")].map((r) => ({
        name: r.dataset.machine,
        state: r.querySelector('[data-k="state"]').textContent.trim(),
        runner: r.querySelector('[data-k="runner"]').textContent.trim(),
      })),
      waiting: [...document.querySelectorAll("#jobs tr[data-job]")].map((r) => r.dataset.job),
      queued: document.querySelector('#summary [data-k="queued"]').textContent.trim(),
      pools: [...document.querySelectorAll("#pools tr[data-pool]")].map((r) => ({
        name: r.dataset.pool,
        instances: r.querySelector('[data-k="instances"]').dataset.n,
      })),
    }));
    const now = await api("/api/v1/status");
    if (now.at !== shown.at) {
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    agreed = true;
    assert.deepEqual(
      shown.machines,
      now.instances.map((i) => ({ name: i.name, state: i.state, runner: i.runner })),
    );
    const queued = now.jobs.filter((j) => j.status === "queued");
    assert.deepEqual(shown.waiting, queued.map((j) => j.key));
    assert.equal(shown.queued, String(queued.length));
    assert.deepEqual(
      shown.pools,
      now.pools.map((p) => ({ name: p.name, instances: String(p.instances) })),
    );
    step(`the page shows what /api/v1/status says at ${now.at}: ${shown.machines.length} machines, ${queued.length} jobs waiting`);
  }
  assert.ok(agreed, "the page and the API showed the same pass");
  await page.screenshot({ path: join(out, "dashboard-laptop.png"), fullPage: true });

  // A live update: the page's pass changes with no reload.
  const before = await page.evaluate(() => document.getElementById("main").dataset.at);
  const navigations = [];
  page.on("framenavigated", (f) => navigations.push(f.url()));
  await page.waitForFunction(
    (at) => document.getElementById("main").dataset.at !== at,
    before,
    { timeout: 30_000 },
  );
  assert.deepEqual(navigations, [], "no reload");
  step("a pass arrived live");

  // Keyboard: the first Tab reaches the skip link.
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to the dashboard");

  // Delete an idle machine (runner idle, or powered off and kept): confirm, then it is gone
  // from the API.
  let deleted = null;
  for (let attempt = 0; attempt < 5 && !deleted; attempt++) {
    const idle = page.locator(
      "#machines tr:has(.st-off) a.button, #machines tr:has([data-k=runner]:text-is('idle')) a.button",
    );
    const link = idle.first();
    await link.waitFor({ timeout: 60_000 });
    const name = await link.evaluate((a) => a.closest("tr").dataset.machine);
    await link.click();
    await page.waitForSelector("form[action='/dashboard/delete'] button");
    await page.screenshot({ path: join(out, "confirm.png") });
    await page.click("form[action='/dashboard/delete'] button");
    await page.waitForSelector("#result");
    const ok = await page.locator("#result").getAttribute("data-ok");
    await page.screenshot({ path: join(out, "deleted.png") });
    if (ok === "1") {
      deleted = name;
    } else {
      // It took a job between the two clicks: kept, as it must be. Try another.
      const why = await page.locator("#result").textContent();
      assert.match(why, /busy|running a job/, why);
    }
    await page.goto(base + "/");
  }
  assert.ok(deleted, "an idle machine was deleted");
  const after = await api("/api/v1/instances");
  assert.ok(
    !after.some((i) => i.name === deleted && i.state !== "deleting"),
    `${deleted} is gone`,
  );
  step(`deleted the idle machine ${deleted}`);

  // A phone.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(out, "dashboard-phone.png"), fullPage: true });

  // No request but the sign-in's form carried the token.
  for (const r of requests) {
    assert.ok(!r.url().includes(token), `the token in ${r.url()}`);
    const headers = JSON.stringify(await r.allHeaders());
    assert.ok(!headers.includes(token), `the token in the headers of ${r.url()}`);
    const body = r.postData() || "";
    if (!r.url().endsWith("/signin")) assert.ok(!body.includes(token), `the token posted to ${r.url()}`);
  }
  const html = await page.content();
  assert.ok(!html.includes(token), "the page carries no token");
  await ctx.close();
  step(`${requests.length} requests, none with the token but the sign-in`);

  // 3. Without JavaScript: sign in and read the machines.
  {
    const ctx = await browser({ javaScriptEnabled: false });
    const page = ctx.pages()[0] || (await ctx.newPage());
    await page.goto(base + "/");
    await page.fill("#token", token);
    await Promise.all([page.waitForURL(base + "/"), page.click("button[type=submit]")]);
    await page.waitForSelector("#machines");
    assert.ok(await page.locator("#summary [data-k='machines']").count() === 1);
    await page.screenshot({ path: join(out, "no-javascript.png"), fullPage: true });
    await ctx.close();
    step("without JavaScript the page reads the same (no live updates)");
  }
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  // SIGTERM: a SIGINT may be ignored when this runs in the background of a script.
  demo.kill("SIGTERM");
  await Promise.race([new Promise((r) => demo.on("exit", r)), deadline(20_000, "the demo's end")]).catch(
    (e) => {
      console.error(e.message);
      demo.kill("SIGKILL");
    },
  );
  try {
    rmSync(work, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  } catch (e) {
    console.error(`cannot remove ${work}: ${e.message}`);
  }
}
if (failed) process.exit(1);
console.log(`browser test passed; screenshots in ${out}`);
