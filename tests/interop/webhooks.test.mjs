// webhooks.test.mjs: paylab's webhooks against an independent implementation of the
// Standard Webhooks scheme (DESIGN §6): the reference library `standardwebhooks`.
//
// (a) Messages the library signs with the cluster's webhook_secret are accepted by the
//     gateway (200 {"result":"ignored"} for a reference the wallet does not know), and a
//     tampered one is refused (401).
// (b) A small HTTP receiver stands as the wallet's --notify-url in front of the gateway: it
//     verifies every webhook the bank sends with the library, then forwards it unchanged.
//     An async top-up settles through it, and the library accepted every webhook.
//
// The test starts bank-service, wallet-service and webhook-gateway itself from
// $PAYLAB_BIN_DIR on free loopback ports in a temporary data dir, and stops them at the end.
// Every wait polls a condition with a deadline.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { Webhook } from "standardwebhooks";

const BIN_DIR = process.env.PAYLAB_BIN_DIR;
const READY_TIMEOUT_MS = 10000;
const SETTLE_TIMEOUT_MS = 15000;
const STOP_TIMEOUT_MS = 10000;
const POLL_MS = 20;
// Webhook headers the bank sends and the receiver forwards.
const FORWARDED = ["webhook-id", "webhook-timestamp", "webhook-signature", "traceparent", "content-type"];

let dir;
const procs = [];
let receiver;
const received = []; // {id, type, reference, verified, error, status}
const env = {};
let ports;
let secret;

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

// Starts bin_dir/name with args, stdout and stderr into <dir>/<log>.log; waits for /healthz.
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

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

// The receiver: verifies with the library, records, forwards to the gateway unchanged and
// answers the bank what the gateway answered.
async function onWebhook(req, res) {
  const body = await readBody(req);
  const entry = { id: req.headers["webhook-id"], verified: false, error: null, status: 0 };
  try {
    const payload = new Webhook(secret).verify(body, req.headers);
    entry.verified = true;
    entry.type = payload.type;
    entry.reference = payload.data?.reference;
  } catch (err) {
    entry.error = String(err);
  }
  received.push(entry);
  const headers = {};
  for (const h of FORWARDED) if (req.headers[h] !== undefined) headers[h] = req.headers[h];
  try {
    const r = await fetch(`http://127.0.0.1:${ports.gatewayHttp}/v1/webhooks/bank`, {
      method: "POST",
      headers,
      body,
      signal: AbortSignal.timeout(5000),
    });
    entry.status = r.status;
    res.writeHead(r.status, { "content-type": "application/json" });
    res.end(await r.text());
  } catch (err) {
    entry.error = entry.error ?? String(err);
    res.writeHead(502, { "content-type": "application/json" });
    res.end('{"error":{"code":"bad_gateway","message":"gateway unreachable"}}');
  }
}

before(async () => {
  assert.ok(BIN_DIR, "set PAYLAB_BIN_DIR to the folder holding bank-service, wallet-service and webhook-gateway");
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PAYLAB_")) env[k] = v;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "paylab-interop-"));
  const [bank, wallet, router, pub, gatewayHttp, gatewayWs] = await freePorts(6);
  ports = { bank, wallet, router, pub, gatewayHttp, gatewayWs };
  receiver = http.createServer((req, res) => {
    onWebhook(req, res).catch(() => res.destroy());
  });
  await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const notifyUrl = `http://127.0.0.1:${receiver.address().port}/v1/webhooks/bank`;
  const zmq = ["--zmq-router", `tcp://127.0.0.1:${router}`, "--zmq-pub", `tcp://127.0.0.1:${pub}`];

  await start("bank-service", "bank", bank, [
    "--http-port", `${bank}`, "--data-dir", dir, "--seed", "1", "--time-scale", "0.001",
  ]);
  secret = fs.readFileSync(path.join(dir, "secrets", "webhook_secret"), "utf8").trim();
  assert.match(secret, /^whsec_/);
  await start("wallet-service", "wallet", wallet, [
    "--http-port", `${wallet}`, "--data-dir", dir, "--bank-url", `http://127.0.0.1:${bank}`,
    "--notify-url", notifyUrl, ...zmq, "--reconcile-ms", "100", "--pending-grace-ms", "15000",
  ]);
  await start("webhook-gateway", "gateway", gatewayHttp, [
    "--http-port", `${gatewayHttp}`, "--ws-port", `${gatewayWs}`, "--data-dir", dir,
    "--wallet-url", `http://127.0.0.1:${wallet}`, ...zmq,
  ]);
});

after(async () => {
  await stopAll();
  if (receiver) await new Promise((resolve) => receiver.close(resolve));
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

// A webhook body as the bank sends it, for a reference the wallet has never seen.
function unknownPaymentBody(eventId) {
  const now = Date.now();
  return JSON.stringify({
    id: eventId,
    type: "payment.succeeded",
    created: Math.floor(now / 1000),
    created_ms: now,
    data: {
      payment_id: `bp_${randomUUID().replaceAll("-", "").slice(0, 24)}`,
      reference: `wtx_${randomUUID().replaceAll("-", "").slice(0, 24)}`,
      amount_minor: 50000,
      currency: "INR",
      status: "succeeded",
      failure_reason: null,
      wallet_epoch: "interop",
    },
  });
}

async function postToGateway(headers, body) {
  const r = await fetch(`http://127.0.0.1:${ports.gatewayHttp}/v1/webhooks/bank`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
    signal: AbortSignal.timeout(5000),
  });
  return { status: r.status, json: await r.json().catch(() => null) };
}

test("the gateway accepts what the reference library signs", async () => {
  const id = `evt_${randomUUID().replaceAll("-", "").slice(0, 24)}`;
  const body = unknownPaymentBody(id);
  const now = new Date();
  const signature = new Webhook(secret).sign(id, now, body);
  const r = await postToGateway(
    {
      "webhook-id": id,
      "webhook-timestamp": `${Math.floor(now.getTime() / 1000)}`,
      "webhook-signature": signature,
    },
    body,
  );
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.deepEqual(r.json, { result: "ignored" });
});

test("the gateway refuses a tampered message the library signed", async () => {
  const id = `evt_${randomUUID().replaceAll("-", "").slice(0, 24)}`;
  const body = unknownPaymentBody(id);
  const now = new Date();
  const signature = new Webhook(secret).sign(id, now, body);
  const r = await postToGateway(
    {
      "webhook-id": id,
      "webhook-timestamp": `${Math.floor(now.getTime() / 1000)}`,
      "webhook-signature": signature,
    },
    body.replace('"amount_minor":50000', '"amount_minor":5000000'),
  );
  assert.equal(r.status, 401, JSON.stringify(r.json));
  assert.equal(r.json?.error?.code, "unauthorized");
});

async function wallet(method, p, body) {
  const headers = { "content-type": "application/json" };
  if (method === "POST") headers["idempotency-key"] = `interop-${randomUUID()}`;
  const r = await fetch(`http://127.0.0.1:${ports.wallet}${p}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  return { status: r.status, json: await r.json() };
}

test("every webhook of an async top-up verifies with the reference library", async () => {
  const user = await wallet("POST", "/v1/users", { user: "alice" });
  assert.equal(user.status, 201, JSON.stringify(user.json));
  const topup = await wallet("POST", "/v1/topups", { user: "alice", amount_minor: 50000, mode: "async" });
  assert.equal(topup.status, 202, JSON.stringify(topup.json));
  assert.equal(topup.json.status, "pending");
  const id = topup.json.id;

  const txn = await waitFor(`${id} final`, async () => {
    const r = await wallet("GET", `/v1/transactions/${id}`);
    return ["succeeded", "failed"].includes(r.json.status) ? r.json : null;
  }, SETTLE_TIMEOUT_MS);
  assert.equal(txn.status, "succeeded");
  assert.equal(txn.settled_by, "webhook");

  // The gateway's answer reaches the receiver just after the wallet commits: wait for it.
  const mine = await waitFor("the receiver's record of the final webhook", () => {
    const ws = received.filter((w) => w.reference === id || !w.verified);
    const done = ws.some((w) => w.type === "payment.succeeded") && ws.every((w) => w.status !== 0);
    return done ? ws : null;
  }, SETTLE_TIMEOUT_MS);
  assert.deepEqual(mine.filter((w) => !w.verified), [], "webhooks the library refused");
  assert.ok(mine.length >= 2, `processing and succeeded expected: ${JSON.stringify(mine)}`);
  assert.ok(mine.every((w) => w.status === 200), JSON.stringify(mine));
  const balance = await wallet("GET", "/v1/users/alice");
  assert.equal(balance.json.balance_minor, 50000);
});
