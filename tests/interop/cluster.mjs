// cluster.mjs: what the interop tests share to run the real processes: free loopback ports,
// polling with a deadline, and a Cluster that starts bank-service, wallet-service and
// webhook-gateway from $PAYLAB_BIN_DIR in a temporary data dir and stops them all again.
//
// Every wait polls a condition with a deadline; nothing sleeps a fixed time.
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";

export const BIN_DIR = process.env.PAYLAB_BIN_DIR;
export const POLL_MS = 20;
const READY_TIMEOUT_MS = 10000;
const STOP_TIMEOUT_MS = 10000;

// Binds n loopback sockets to port 0 at once (so the ports differ), reads them, closes them.
export async function freePorts(n) {
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
export async function waitFor(what, fn, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await delay(POLL_MS);
  }
}

// GET url; null when it cannot be reached (a process not yet listening).
export async function get(url) {
  try {
    return await fetch(url, { signal: AbortSignal.timeout(2000) });
  } catch {
    return null;
  }
}

// The ZMQ flags wallet-service and webhook-gateway share.
export function zmqArgs(router, pub) {
  return ["--zmq-router", `tcp://127.0.0.1:${router}`, "--zmq-pub", `tcp://127.0.0.1:${pub}`];
}

// The processes of one test file, in one temporary data dir. stop() ends them (SIGTERM, then
// SIGKILL after STOP_TIMEOUT_MS) and removes the dir; should the test runner itself exit
// first, whatever still runs is killed on the way out.
export class Cluster {
  constructor() {
    if (!BIN_DIR) {
      throw new Error("set PAYLAB_BIN_DIR to the folder holding bank-service, wallet-service and webhook-gateway");
    }
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), "paylab-interop-"));
    this.procs = [];
    // The services read PAYLAB_* from the environment: none of the caller's may leak in.
    this.env = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PAYLAB_")) this.env[k] = v;
    this.onExit = () => {
      for (const proc of this.procs) if (!proc.exited) proc.child.kill("SIGKILL");
    };
    process.on("exit", this.onExit);
  }

  // Starts BIN_DIR/name with args, stdout and stderr into <dir>/<log>.log; waits for /healthz.
  async start(name, log, httpPort, args) {
    const out = fs.openSync(path.join(this.dir, `${log}.log`), "a");
    const child = spawn(path.join(BIN_DIR, name), args, { env: this.env, stdio: ["ignore", out, out] });
    fs.closeSync(out);
    const proc = { name, child, exited: false };
    child.on("exit", () => {
      proc.exited = true;
    });
    this.procs.push(proc);
    await waitFor(`${name} ready`, async () => {
      if (proc.exited) throw new Error(`${name} exited before it was ready; see ${this.dir}/${log}.log`);
      const r = await get(`http://127.0.0.1:${httpPort}/healthz`);
      return r !== null && r.status === 200;
    }, READY_TIMEOUT_MS);
    return proc;
  }

  // A file of the data dir, trimmed (secrets/webhook_secret, secrets/admin_token).
  secret(name) {
    return fs.readFileSync(path.join(this.dir, "secrets", name), "utf8").trim();
  }

  // Stops every process, newest first (the gateways before the wallet before the bank).
  async stop() {
    for (const proc of [...this.procs].reverse()) {
      if (proc.exited) continue;
      proc.child.kill("SIGTERM");
      try {
        await waitFor(`${proc.name} stopped`, () => proc.exited, STOP_TIMEOUT_MS);
      } catch {
        proc.child.kill("SIGKILL");
      }
    }
    process.off("exit", this.onExit);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
