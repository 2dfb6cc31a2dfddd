// websocket.test.mjs: paylab's real-time path (docs/realtime.md and docs/ledger.md; docs/contracts.md "Real time")
// against an independent, widely used WebSocket client: the npm package `ws`.
//
// Two gateways share one wallet (the wallet's --notify-url lists both). Then:
// (1) an alice client on each gateway and a "*" client (admin token) watch ~40 concurrent
//     transfers alice <-> bob and sync and async top-ups; once the wallet is settled, every
//     client reaches the wallet's head_seq, each saw every seq exactly once, in order, and
//     the events are those of GET /v1/users/alice/events (same seq, same transaction, same
//     balance);
// (2) one alice client goes away, more events happen, and it resumes on the OTHER gateway
//     with {"epoch","after":<last seq it saw>}: exactly the missing seqs, then live ones;
// (3) bob's token for alice, and alice's for "*", are answered {"op":"error","code":"unauthorized"};
// (4) a message of 4 KiB is taken, one byte more closes with 1009; invalid UTF-8 in a text
//     frame closes with 1007.
//
// The test starts bank-service, wallet-service and two webhook-gateways itself from
// $PAYLAB_BIN_DIR on free loopback ports in a temporary data dir, and stops them at the end
// (cluster.mjs). Every wait polls a condition with a deadline.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import WebSocket from "ws";
import { Cluster, freePorts, waitFor, zmqArgs } from "./cluster.mjs";

const WS_TIMEOUT_MS = 5000; // open, subscribe, close
const SETTLE_TIMEOUT_MS = 15000; // async top-ups final, clients at the head
const MAX_MESSAGE = 4096; // docs/realtime.md: client message <= 4 KiB

let cluster;
let ports;
let adminToken;
const tokens = {}; // user -> ws_token
const clients = [];

// ---- wallet API ----

async function wallet(method, p, body) {
  const headers = { "content-type": "application/json" };
  if (method === "POST") headers["idempotency-key"] = `interop-ws-${randomUUID()}`;
  const r = await fetch(`http://127.0.0.1:${ports.wallet}${p}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  return { status: r.status, json: await r.json() };
}

async function userInfo(user) {
  const r = await wallet("GET", `/v1/users/${user}`);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json;
}

// The wallet's own record of a user's events, by seq.
async function walletEvents(user) {
  const r = await wallet("GET", `/v1/users/${user}/events?after=0&limit=500`);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.ok(r.json.events.length < 500, "more events than one page: raise the limit or make fewer");
  return { ...r.json, bySeq: new Map(r.json.events.map((e) => [e.seq, e])) };
}

async function transfer(from, to, amount) {
  const r = await wallet("POST", "/v1/transfers", { from, to, amount_minor: amount, note: "interop" });
  assert.equal(r.status, 200, `transfer ${from}->${to}: ${r.status} ${JSON.stringify(r.json)}`);
  return r.json;
}

async function topup(user, amount, mode) {
  const r = await wallet("POST", "/v1/topups", { user, amount_minor: amount, mode });
  // sync: 200 succeeded or 402 bank_declined; async: 202 pending (docs/architecture.md, contracts).
  const ok = mode === "async" ? [202] : [200, 402];
  assert.ok(ok.includes(r.status), `${mode} top-up for ${user}: ${r.status} ${JSON.stringify(r.json)}`);
  return r.json;
}

// Transfers alternate alice->bob and bob->alice, all in flight at once with the top-ups.
// Returns the async top-ups' ids.
async function load({ transfers, sync, async: nAsync }) {
  const jobs = [];
  for (let i = 0; i < transfers; i++) {
    jobs.push(i % 2 === 0 ? transfer("alice", "bob", 1000 + i) : transfer("bob", "alice", 700 + i));
  }
  for (let i = 0; i < sync; i++) jobs.push(topup(i % 2 === 0 ? "alice" : "bob", 2000 + i, "sync"));
  const asyncJobs = [];
  for (let i = 0; i < nAsync; i++) asyncJobs.push(topup(i % 2 === 0 ? "alice" : "bob", 3000 + i, "async"));
  await Promise.all([...jobs, ...asyncJobs]);
  return (await Promise.all(asyncJobs)).map((t) => t.id);
}

async function waitFinal(ids) {
  await waitFor(`async top-ups final: ${ids.join(", ")}`, async () => {
    const rs = await Promise.all(ids.map((id) => wallet("GET", `/v1/transactions/${id}`)));
    return rs.every((r) => ["succeeded", "failed"].includes(r.json.status));
  }, SETTLE_TIMEOUT_MS);
}

// ---- a `ws` client that records everything it receives ----

class Client {
  constructor(name, wsPort) {
    this.name = name;
    this.messages = [];
    this.problems = []; // binary frames, non-JSON text, client-side errors
    this.closed = null; // {code, reason}
    this.ws = new WebSocket(`ws://127.0.0.1:${wsPort}/ws`);
    this.ws.on("message", (data, isBinary) => {
      if (isBinary) {
        this.problems.push(`binary message of ${data.length} bytes`);
        return;
      }
      try {
        this.messages.push(JSON.parse(data.toString("utf8")));
      } catch {
        this.problems.push(`not JSON: ${data.toString("utf8").slice(0, 200)}`);
      }
    });
    this.ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString("utf8") };
    });
    this.ws.on("error", (err) => this.problems.push(`error: ${err.message}`));
    clients.push(this);
  }

  static async open(name, wsPort) {
    const c = new Client(name, wsPort);
    await waitFor(`${name} open`, () => {
      if (c.closed) throw new Error(`${name}: closed while opening: ${JSON.stringify(c.closed)} ${c.problems}`);
      return c.ws.readyState === WebSocket.OPEN;
    }, WS_TIMEOUT_MS);
    return c;
  }

  send(obj) {
    this.ws.send(JSON.stringify(obj));
  }

  // The first message from index `from` on that pred accepts.
  async next(what, pred, from = 0) {
    return waitFor(`${this.name}: ${what}`, () => {
      const m = this.messages.slice(from).find(pred);
      if (m) return m;
      if (this.closed) throw new Error(`${this.name}: closed ${JSON.stringify(this.closed)} waiting for ${what}`);
      return null;
    }, WS_TIMEOUT_MS);
  }

  // Sends a subscribe and returns the answer: "subscribed" or "error".
  async subscribe(msg) {
    const from = this.messages.length;
    this.send({ op: "subscribe", ...msg });
    return this.next(`answer to subscribe ${msg.user}`, (m) => m.op === "subscribed" || m.op === "error", from);
  }

  events(user) {
    return this.messages.filter((m) => m.op === "event" && m.user === user);
  }

  lastSeq(user) {
    const es = this.events(user);
    return es.length === 0 ? 0 : es[es.length - 1].seq;
  }

  async waitClosed() {
    return waitFor(`${this.name} closed`, () => this.closed, WS_TIMEOUT_MS);
  }

  async close() {
    if (this.closed) return;
    this.ws.close(1000, "done");
    await this.waitClosed();
  }
}

function range(from, to) {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}

// Waits until the client's last event of `user` is the wallet's head_seq; returns that head.
async function reachHead(client, user) {
  return waitFor(`${client.name} at ${user}'s head_seq`, async () => {
    const { head_seq: head } = await userInfo(user);
    return client.lastSeq(user) >= head ? head : null;
  }, SETTLE_TIMEOUT_MS);
}

// Every event of `user` the client saw is the wallet's event of that seq, field for field:
// what a WebSocket client receives is the event (docs/ledger.md) plus "op", whether it came live over
// the bus or was fetched from the wallet to fill a gap or replay.
function assertSameAsWallet(client, user, record) {
  for (const { op, ...e } of client.events(user)) {
    const w = record.bySeq.get(e.seq);
    assert.ok(w, `${client.name}: seq ${e.seq} of ${user} is not in the wallet's events`);
    assert.equal(e.epoch, record.epoch, `${client.name}: ${user} seq ${e.seq}`);
    assert.deepEqual(e, w, `${client.name}: ${user} seq ${e.seq}`);
  }
}

function seqs(client, user) {
  return client.events(user).map((e) => e.seq);
}

before(async () => {
  cluster = new Cluster();
  const [bank, walletPort, router, pub, aHttp, aWs, bHttp, bWs] = await freePorts(8);
  ports = { bank, wallet: walletPort, router, pub, aHttp, aWs, bHttp, bWs };
  const zmq = zmqArgs(router, pub);
  const dir = cluster.dir;
  const notify = [aHttp, bHttp].map((p) => `http://127.0.0.1:${p}/v1/webhooks/bank`).join(",");

  await cluster.start("bank-service", "bank", bank, [
    "--http-port", `${bank}`, "--data-dir", dir, "--seed", "1", "--time-scale", "0.001",
  ]);
  await cluster.start("wallet-service", "wallet", walletPort, [
    "--http-port", `${walletPort}`, "--data-dir", dir, "--bank-url", `http://127.0.0.1:${bank}`,
    "--notify-url", notify, ...zmq, "--reconcile-ms", "100", "--pending-grace-ms", "15000",
  ]);
  for (const [name, http, ws, peer] of [["gateway-a", aHttp, aWs, bWs], ["gateway-b", bHttp, bWs, aWs]]) {
    await cluster.start("webhook-gateway", name, http, [
      "--http-port", `${http}`, "--ws-port", `${ws}`, "--data-dir", dir,
      "--wallet-url", `http://127.0.0.1:${walletPort}`, "--bank-url", `http://127.0.0.1:${bank}`,
      "--peer-ws", `ws://127.0.0.1:${peer}/ws`, ...zmq,
    ]);
  }
  adminToken = cluster.secret("admin_token");
  assert.ok(adminToken.length > 0, "empty admin_token");

  for (const user of ["alice", "bob"]) {
    const r = await wallet("POST", "/v1/users", { user });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    assert.equal(typeof r.json.ws_token, "string", JSON.stringify(r.json));
    tokens[user] = r.json.ws_token;
    // Money for the transfers, and events before anyone subscribes (subscribed.seq > 0).
    const t = await topup(user, 500000, "sync");
    assert.equal(t.status, "succeeded", JSON.stringify(t));
  }
});

after(async () => {
  for (const c of clients) if (!c.closed) c.ws.terminate();
  if (cluster) await cluster.stop();
});

let aliceA; // alice on gateway A: goes away in (2)
let aliceB; // alice on gateway B: stays all along
let admin; // "*" on gateway B
let subscribedA;
let subscribedB;

test("every client sees every seq once, in order, as the wallet recorded it", async () => {
  const before = await userInfo("alice");
  const bobBefore = await userInfo("bob");
  assert.ok(before.head_seq > 0, JSON.stringify(before));

  aliceA = await Client.open("alice@A", ports.aWs);
  aliceB = await Client.open("alice@B", ports.bWs);
  admin = await Client.open("*@B", ports.bWs);
  [subscribedA, subscribedB] = await Promise.all([
    aliceA.subscribe({ user: "alice", token: tokens.alice }),
    aliceB.subscribe({ user: "alice", token: tokens.alice }),
  ]);
  const subscribedAdmin = await admin.subscribe({ user: "*", token: adminToken });
  for (const s of [subscribedA, subscribedB]) {
    assert.equal(s.op, "subscribed", JSON.stringify(s));
    assert.equal(s.user, "alice", JSON.stringify(s));
    assert.equal(s.epoch, before.epoch, JSON.stringify(s));
    // Nothing happened since GET /v1/users/alice: the snapshot is that state.
    assert.equal(s.seq, before.head_seq, JSON.stringify(s));
    assert.equal(s.balance_minor, before.balance_minor, JSON.stringify(s));
    assert.equal(typeof s.recovered, "boolean", JSON.stringify(s));
  }
  assert.equal(subscribedAdmin.op, "subscribed", JSON.stringify(subscribedAdmin));
  assert.equal(subscribedAdmin.user, "*", JSON.stringify(subscribedAdmin));
  assert.equal(subscribedAdmin.seq, null, JSON.stringify(subscribedAdmin));
  assert.equal(subscribedAdmin.balance_minor, null, JSON.stringify(subscribedAdmin));

  const asyncIds = await load({ transfers: 40, sync: 6, async: 4 });
  await waitFinal(asyncIds);

  const alice = await walletEvents("alice");
  const bob = await walletEvents("bob");
  const heads = {
    aliceA: await reachHead(aliceA, "alice"),
    aliceB: await reachHead(aliceB, "alice"),
    adminAlice: await reachHead(admin, "alice"),
    adminBob: await reachHead(admin, "bob"),
  };
  assert.ok(alice.head_seq >= before.head_seq + 40, `alice's head ${alice.head_seq}`);
  for (const head of [heads.aliceA, heads.aliceB, heads.adminAlice]) assert.equal(head, alice.head_seq);
  assert.equal(heads.adminBob, bob.head_seq);

  for (const [c, s] of [[aliceA, subscribedA], [aliceB, subscribedB]]) {
    assert.deepEqual(c.problems, [], c.name);
    assert.deepEqual(seqs(c, "bob"), [], `${c.name} got bob's events`);
    // From the seq after the snapshot to the head, each once, in order.
    assert.deepEqual(seqs(c, "alice"), range(s.seq + 1, alice.head_seq), c.name);
    assertSameAsWallet(c, "alice", alice);
    assert.equal(c.events("alice").at(-1).balance_minor, alice.balance_minor, c.name);
  }
  assert.deepEqual(admin.problems, [], admin.name);
  // "*" has no snapshot: its first event of a user is the one after that user's head when
  // it subscribed (nothing happened in between).
  for (const [user, record, head] of [["alice", alice, before.head_seq], ["bob", bob, bobBefore.head_seq]]) {
    assert.deepEqual(seqs(admin, user), range(head + 1, record.head_seq), `${admin.name}: ${user}`);
    assertSameAsWallet(admin, user, record);
  }
  const others = admin.messages.filter((m) => m.op === "event" && !["alice", "bob"].includes(m.user));
  assert.deepEqual(others, [], `${admin.name}: events of nobody`);
});

test("a client that went away resumes on the other gateway: the missing seqs, then live ones", async () => {
  assert.ok(aliceA, "the first test did not get this far");
  const last = aliceA.lastSeq("alice");
  const epoch = subscribedA.epoch;
  await aliceA.close();

  await load({ transfers: 10, sync: 2, async: 0 });
  const missed = await userInfo("alice");
  assert.ok(missed.head_seq > last + 10, `alice's head ${missed.head_seq}, last seen ${last}`);

  const resumed = await Client.open("alice@B (resumed)", ports.bWs);
  const s = await resumed.subscribe({ user: "alice", token: tokens.alice, epoch, after: last });
  assert.equal(s.op, "subscribed", JSON.stringify(s));
  assert.equal(s.user, "alice", JSON.stringify(s));
  assert.equal(s.epoch, epoch, JSON.stringify(s));
  assert.equal(s.recovered, true, JSON.stringify(s));
  assert.ok(s.seq >= last && s.seq <= missed.head_seq, JSON.stringify(s));

  // The replay, in full, before anything new happens.
  await reachHead(resumed, "alice");
  assert.deepEqual(seqs(resumed, "alice"), range(last + 1, missed.head_seq), "the replay");

  // Then live events on the same subscription.
  await load({ transfers: 6, sync: 1, async: 1 }).then(waitFinal);
  const alice = await walletEvents("alice");
  assert.ok(alice.head_seq > missed.head_seq, `alice's head ${alice.head_seq}`);
  await reachHead(resumed, "alice");
  await reachHead(aliceB, "alice");
  assert.deepEqual(resumed.problems, [], resumed.name);
  assert.deepEqual(seqs(resumed, "alice"), range(last + 1, alice.head_seq), "the replay, then live");
  assertSameAsWallet(resumed, "alice", alice);
  // The client that stayed saw it all too, once each.
  assert.deepEqual(seqs(aliceB, "alice"), range(subscribedB.seq + 1, alice.head_seq), aliceB.name);
  assertSameAsWallet(aliceB, "alice", alice);
});

test("a token for someone else is refused", async () => {
  const c = await Client.open("bob-as-alice@A", ports.aWs);
  const refused = await c.subscribe({ user: "alice", token: tokens.bob });
  assert.equal(refused.op, "error", JSON.stringify(refused));
  assert.equal(refused.code, "unauthorized", JSON.stringify(refused));
  assert.equal(typeof refused.message, "string", JSON.stringify(refused));
  const star = await c.subscribe({ user: "*", token: tokens.alice });
  assert.equal(star.op, "error", JSON.stringify(star));
  assert.equal(star.code, "unauthorized", JSON.stringify(star));

  // Nothing of alice's reaches it afterwards, while a subscribed client on the same gateway
  // gets the new events.
  const witness = await Client.open("alice@A (witness)", ports.aWs);
  assert.equal((await witness.subscribe({ user: "alice", token: tokens.alice })).op, "subscribed");
  await transfer("bob", "alice", 500);
  await reachHead(witness, "alice");
  assert.deepEqual(c.events("alice"), [], "events after a refused subscribe");
  assert.equal(c.messages.filter((m) => m.op === "subscribed").length, 0, JSON.stringify(c.messages));
  await Promise.all([c.close(), witness.close()]);
});

test("a message of 4 KiB is taken, one byte more closes with 1009", async () => {
  const subscribe = JSON.stringify({ op: "subscribe", user: "alice", token: tokens.alice });
  const c = await Client.open("limit@A", ports.aWs);
  c.ws.send(subscribe.padEnd(MAX_MESSAGE, " "));
  const s = await c.next("answer to a 4096-byte subscribe", (m) => m.op === "subscribed" || m.op === "error");
  assert.equal(s.op, "subscribed", JSON.stringify(s));

  c.ws.send(subscribe.padEnd(MAX_MESSAGE + 1, " "));
  const closed = await c.waitClosed();
  assert.equal(closed.code, 1009, JSON.stringify(closed));
});

test("invalid UTF-8 in a text frame closes with 1007", async () => {
  const c = await Client.open("utf8@A", ports.aWs);
  // '{"op":"' then 0xC3 0x28 (a lead byte without its continuation), then '"}'.
  const bytes = Buffer.concat([Buffer.from('{"op":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
  c.ws.send(bytes, { binary: false });
  const closed = await c.waitClosed();
  assert.equal(closed.code, 1007, JSON.stringify(closed));
});
