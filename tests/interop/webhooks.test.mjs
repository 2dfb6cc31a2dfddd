// webhooks.test.mjs: paylab's webhooks against an independent implementation of the
// Standard Webhooks scheme (docs/api.md): the reference library `standardwebhooks`.
//
// (a) Messages the library signs with the cluster's webhook_secret are accepted by the
//     gateway (200 {"result":"ignored"} for a reference the wallet does not know), and a
//     tampered one is refused (401).
// (b) A small HTTP receiver stands as the wallet's --notify-url in front of the gateway: it
//     verifies every webhook the bank sends with the library, then forwards it unchanged.
//     An async top-up settles through it, and the library accepted every webhook.
//
// The test starts bank-service, wallet-service and webhook-gateway itself from
// $PAYLAB_BIN_DIR on free loopback ports in a temporary data dir, and stops them at the end
// (cluster.mjs). Every wait polls a condition with a deadline.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import http from "node:http";
import { Webhook } from "standardwebhooks";
import { Cluster, freePorts, waitFor, zmqArgs } from "./cluster.mjs";

const SETTLE_TIMEOUT_MS = 15000;
// Webhook headers the bank sends and the receiver forwards.
const FORWARDED = ["webhook-id", "webhook-timestamp", "webhook-signature", "traceparent", "content-type"];

let cluster;
let receiver;
const received = []; // {id, type, reference, verified, error, status}
let ports;
let secret;

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
  cluster = new Cluster();
  const [bank, wallet, router, pub, gatewayHttp, gatewayWs] = await freePorts(6);
  ports = { bank, wallet, router, pub, gatewayHttp, gatewayWs };
  receiver = http.createServer((req, res) => {
    onWebhook(req, res).catch(() => res.destroy());
  });
  await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const notifyUrl = `http://127.0.0.1:${receiver.address().port}/v1/webhooks/bank`;
  const zmq = zmqArgs(router, pub);
  const dir = cluster.dir;

  await cluster.start("bank-service", "bank", bank, [
    "--http-port", `${bank}`, "--data-dir", dir, "--seed", "1", "--time-scale", "0.001",
  ]);
  secret = cluster.secret("webhook_secret");
  assert.match(secret, /^whsec_/);
  await cluster.start("wallet-service", "wallet", wallet, [
    "--http-port", `${wallet}`, "--data-dir", dir, "--bank-url", `http://127.0.0.1:${bank}`,
    "--notify-url", notifyUrl, ...zmq, "--reconcile-ms", "100", "--pending-grace-ms", "15000",
  ]);
  await cluster.start("webhook-gateway", "gateway", gatewayHttp, [
    "--http-port", `${gatewayHttp}`, "--ws-port", `${gatewayWs}`, "--data-dir", dir,
    "--wallet-url", `http://127.0.0.1:${wallet}`, ...zmq,
  ]);
});

after(async () => {
  if (cluster) await cluster.stop();
  if (receiver) await new Promise((resolve) => receiver.close(resolve));
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
