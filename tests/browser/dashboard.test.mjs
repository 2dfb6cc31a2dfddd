// dashboard.test.mjs: the live dashboard (webhook-gateway/web/) in headless Chromium, driven
// by playwright-core against Debian's /usr/bin/chromium (no browser is downloaded).
//
// The test starts bank-service (300 ms of latency, so an async top-up visibly waits for its
// webhook), wallet-service and one webhook-gateway itself from $PAYLAB_BIN_DIR on free loopback
// ports in a temporary data dir, adds a user through the wallet's API, and opens the
// dashboard as a teacher would: http://127.0.0.1:<gateway>/#token=<admin_token>. Once the page
// says it is connected, it submits an async top-up through the page's own form and checks —
// without a reload — that the user's balance and the transaction's row reach their final
// state through the live path (signed webhook → gateway → wallet → ZeroMQ → gateway →
// WebSocket). A screenshot goes to $PAYLAB_TEST_OUT (or build/test-output)/dashboard.png.
// Every wait polls a condition with a deadline.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as delay } from "node:timers/promises";
import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "..", "..");
const BIN_DIR = process.env.PAYLAB_BIN_DIR;
const CHROMIUM = process.env.PAYLAB_CHROMIUM || "/usr/bin/chromium";
const OUT_DIR = process.env.PAYLAB_TEST_OUT || path.join(ROOT, "build", "test-output");
const WEB_DIR = path.join(ROOT, "webhook-gateway", "web");
const BANK_LATENCY_MS = 300;
const READY_TIMEOUT_MS = 10000;
const UI_TIMEOUT_MS = 15000;
const STOP_TIMEOUT_MS = 10000;
const POLL_MS = 20;
const USER = "asha";
const TOPUP_RUPEES = "500";
const TOPUP_MINOR = "50000";

let dir;
let profileDir;
let context;
let page;
let ports;
let adminToken;
const procs = [];
const env = {};
const pageErrors = [];
let passed = 0; // tests that reached their end: the data dir is kept for its logs otherwise
const TESTS = 2;

// Binds n loopback sockets to port 0 at once (so the ports differ), reads them, closes them.
async function freePorts(n) {
  const servers = await Promise.all(
    Array.from({ length: n }, () =>
      new Promise((resolve, reject) => {
        const s = net.createServer();
        s.once("error", reject);
        s.listen(0, "127.0.0.1", () => resolve(s));
      }),
    ),
  );
  const result = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return result;
}

// Polls fn() every POLL_MS until it returns a truthy value or timeoutMs passes.
async function waitFor(what, fn, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await delay(POLL_MS);
  }
}

async function get(url) {
  try {
    return await fetch(url, { signal: AbortSignal.timeout(2000) });
  } catch {
    return null;
  }
}

// Starts BIN_DIR/name with args, stdout and stderr into <dir>/<log>.log; waits for /healthz.
async function start(name, log, httpPort, args) {
  const out = fs.openSync(path.join(dir, `${log}.log`), "a");
  const child = spawn(path.join(BIN_DIR, name), args, { env, stdio: ["ignore", out, out] });
  fs.closeSync(out);
  const proc = { name, child, exited: false };
  child.on("exit", () => {
    proc.exited = true;
  });
  procs.push(proc);
  await waitFor(`${name} ready`, async () => {
    if (proc.exited) throw new Error(`${name} exited before it was ready; see ${dir}/${log}.log`);
    const r = await get(`http://127.0.0.1:${httpPort}/healthz`);
    return r !== null && r.status === 200;
  }, READY_TIMEOUT_MS);
}

async function stopAll() {
  for (const proc of procs.reverse()) {
    if (proc.exited) continue;
    proc.child.kill("SIGTERM");
    try {
      await waitFor(`${proc.name} stopped`, () => proc.exited, STOP_TIMEOUT_MS);
    } catch {
      proc.child.kill("SIGKILL");
    }
  }
}

async function wallet(method, p, body) {
  const r = await fetch(`http://127.0.0.1:${ports.wallet}${p}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  return { status: r.status, json: await r.json() };
}

before(async () => {
  assert.ok(BIN_DIR, "set PAYLAB_BIN_DIR to the folder holding bank-service, wallet-service and webhook-gateway");
  assert.ok(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (scripts/setup installs Debian's chromium)`);
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PAYLAB_")) env[k] = v;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "paylab-browser-"));
  const [bank, walletPort, router, pub, gatewayHttp, gatewayWs] = await freePorts(6);
  ports = { bank, wallet: walletPort, router, pub, gatewayHttp, gatewayWs };
  const origin = `http://127.0.0.1:${gatewayHttp}`;
  const origins = `${origin},http://localhost:${gatewayHttp}`;
  const zmq = ["--zmq-router", `tcp://127.0.0.1:${router}`, "--zmq-pub", `tcp://127.0.0.1:${pub}`];

  await start("bank-service", "bank", bank, [
    "--http-port", `${bank}`, "--data-dir", dir, "--seed", "1", "--time-scale", "0.001",
    "--latency-ms", `${BANK_LATENCY_MS}`, "--allowed-origin", origins,
  ]);
  await start("wallet-service", "wallet", walletPort, [
    "--http-port", `${walletPort}`, "--data-dir", dir, "--bank-url", `http://127.0.0.1:${bank}`,
    "--notify-url", `${origin}/v1/webhooks/bank`, ...zmq, "--allowed-origin", origins,
    // The webhook, not the reconciler, settles the top-up.
    "--reconcile-ms", "100", "--pending-grace-ms", "15000",
  ]);
  await start("webhook-gateway", "gateway", gatewayHttp, [
    "--http-port", `${gatewayHttp}`, "--ws-port", `${gatewayWs}`, "--data-dir", dir,
    "--wallet-url", `http://127.0.0.1:${walletPort}`, "--bank-url", `http://127.0.0.1:${bank}`,
    "--web-dir", WEB_DIR, ...zmq,
  ]);
  adminToken = fs.readFileSync(path.join(dir, "secrets", "admin_token"), "utf8").trim();
  assert.ok(adminToken.length > 0);

  profileDir = fs.mkdtempSync(path.join(os.tmpdir(), "paylab-chromium-"));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 900 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (err) => pageErrors.push(String(err)));
});

after(async () => {
  if (context) await context.close().catch(() => {});
  await stopAll();
  if (profileDir) fs.rmSync(profileDir, { recursive: true, force: true });
  if (dir && passed === TESTS) fs.rmSync(dir, { recursive: true, force: true });
  else if (dir) console.error(`kept ${dir} (logs of the services)`);
});

test("the gateway serves the dashboard and its config", async () => {
  const index = await get(`http://127.0.0.1:${ports.gatewayHttp}/`);
  assert.equal(index?.status, 200);
  assert.match(index.headers.get("content-type") ?? "", /text\/html/);
  const cfg = await (await get(`http://127.0.0.1:${ports.gatewayHttp}/config.json`)).json();
  assert.equal(cfg.ws_url, `ws://127.0.0.1:${ports.gatewayWs}/ws`);
  assert.equal(cfg.wallet_url, `http://127.0.0.1:${ports.wallet}`);
  assert.equal(cfg.bank_url, `http://127.0.0.1:${ports.bank}`);
  passed++;
});

test("an async top-up submitted in the page shows up live, without a reload", async () => {
  const created = await wallet("POST", "/v1/users", { user: USER });
  assert.equal(created.status, 201, JSON.stringify(created.json));

  await page.goto(`http://127.0.0.1:${ports.gatewayHttp}/#token=${encodeURIComponent(adminToken)}`);
  const conn = page.getByTestId("conn-status");
  await page.waitForSelector('[data-testid="conn-status"][data-state="connected"]', { timeout: UI_TIMEOUT_MS });
  const balance = page.getByTestId(`balance-${USER}`);
  await page.waitForSelector(`[data-testid="balance-${USER}"][data-minor="0"]`, { timeout: UI_TIMEOUT_MS });
  // A mark that a reload would wipe.
  await page.evaluate(() => {
    window.__paylabTestMark = "no reload";
  });

  const form = page.getByTestId("form-topup");
  await form.locator('input[name="user"]').fill(USER);
  await form.locator('input[name="amount"]').fill(TOPUP_RUPEES);
  await form.locator('select[name="mode"]').selectOption("async");
  const submitted = Date.now();
  await form.locator('button[type="submit"]').click();

  // The wallet recorded the page's top-up: async, 500 rupees.
  const txn = await waitFor("the page's top-up at the wallet", async () => {
    const r = await wallet("GET", `/v1/users/${USER}/transactions?limit=5`);
    return r.json.transactions?.[0] ?? null;
  }, UI_TIMEOUT_MS);
  assert.equal(txn.kind, "topup");
  assert.equal(txn.mode, "async");
  assert.equal(String(txn.amount_minor), TOPUP_MINOR);

  // The row and the balance reach their final state in the page.
  await page.waitForSelector(`[data-testid="txn-${txn.id}"][data-status="succeeded"]`, { timeout: UI_TIMEOUT_MS });
  await page.waitForSelector(`[data-testid="balance-${USER}"][data-minor="${TOPUP_MINOR}"]`, { timeout: UI_TIMEOUT_MS });
  const settledAfterMs = Date.now() - submitted;
  assert.ok(settledAfterMs >= BANK_LATENCY_MS, `settled in ${settledAfterMs} ms, before the bank's latency`);
  assert.equal(await balance.getAttribute("data-minor"), TOPUP_MINOR);
  assert.equal(await conn.getAttribute("data-state"), "connected");
  assert.equal(await page.evaluate(() => window.__paylabTestMark), "no reload");
  const navigations = await page.evaluate(() => performance.getEntriesByType("navigation").length);
  assert.equal(navigations, 1);

  // It was the webhook that settled it, and the gateway pushed the events live.
  const final = await wallet("GET", `/v1/transactions/${txn.id}`);
  assert.equal(final.json.status, "succeeded");
  assert.equal(final.json.settled_by, "webhook");
  const metrics = await (await get(`http://127.0.0.1:${ports.gatewayHttp}/metrics`)).text();
  const live = /paylab_gateway_ws_events_delivered_total\{path="live"\} (\d+)/.exec(metrics);
  assert.ok(live && Number(live[1]) > 0, "the gateway delivered no live event");

  fs.mkdirSync(OUT_DIR, { recursive: true });
  await page.screenshot({ path: path.join(OUT_DIR, "dashboard.png"), fullPage: true });
  assert.deepEqual(pageErrors, [], "errors thrown in the page");
  passed++;
});
