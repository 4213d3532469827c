// A real `herald serve` for the browser tests, on SQLite (a temporary file) or on Postgres +
// Redis (a database of its own, created and dropped, and a Redis key prefix of its own, deleted
// afterwards). It binds a free loopback port and is ready once it prints its address.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, createWriteStream } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import pg from "pg";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const DATABASE_URL = process.env.HERALD_TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = process.env.HERALD_TEST_REDIS_URL || "redis://127.0.0.1:6379";

/** The binary under test: `HERALD_TEST_BIN` (set by `cargo xtask test`), else the debug build. */
export function heraldBin() {
  if (process.env.HERALD_TEST_BIN) return process.env.HERALD_TEST_BIN;
  const target = process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, "target");
  return join(target, "debug", "herald");
}

/** The backends to run on: both, unless `HERALD_E2E_BACKENDS` names some (e.g. "embedded"). */
export function backends() {
  const wanted = (process.env.HERALD_E2E_BACKENDS || "embedded,cluster").split(",").map((s) => s.trim());
  return ["embedded", "cluster"].filter((b) => wanted.includes(b));
}

export async function freePort() {
  const server = createServer();
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  return port;
}

function withDatabase(url, name) {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Deletes every Redis key under `prefix:` (SCAN + DEL over a raw connection: no client library). */
async function deleteRedisKeys(prefix) {
  const u = new URL(REDIS_URL);
  const socket = createConnection({ host: u.hostname, port: Number(u.port) || 6379 });
  await new Promise((ok, fail) => (socket.once("connect", ok), socket.once("error", fail)));
  let buffer = Buffer.alloc(0);
  const waiters = [];
  socket.on("data", (d) => {
    buffer = Buffer.concat([buffer, d]);
    for (;;) {
      const parsed = parse(buffer, 0);
      if (!parsed) break;
      buffer = buffer.subarray(parsed.end);
      waiters.shift()(parsed.value);
    }
  });
  function parse(b, i) {
    const nl = b.indexOf("\r\n", i);
    if (nl < 0) return null;
    const head = b.toString("utf8", i + 1, nl);
    const type = String.fromCharCode(b[i]);
    if (type === "+" || type === ":" || type === "-") return { value: head, end: nl + 2 };
    if (type === "$") {
      const n = Number(head);
      if (n < 0) return { value: null, end: nl + 2 };
      if (b.length < nl + 2 + n + 2) return null;
      return { value: b.toString("utf8", nl + 2, nl + 2 + n), end: nl + 2 + n + 2 };
    }
    if (type === "*") {
      const items = [];
      let at = nl + 2;
      for (let k = 0; k < Number(head); k++) {
        const item = parse(b, at);
        if (!item) return null;
        items.push(item.value);
        at = item.end;
      }
      return { value: items, end: at };
    }
    throw new Error(`unexpected RESP type ${type}`);
  }
  const command = (...args) =>
    new Promise((ok) => {
      waiters.push(ok);
      socket.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join(""));
    });
  if (u.password) await command("AUTH", decodeURIComponent(u.password));
  let cursor = "0";
  do {
    const [next, keys] = await command("SCAN", cursor, "MATCH", `${prefix}:*`, "COUNT", "1000");
    if (keys.length) await command("DEL", ...keys);
    cursor = next;
  } while (cursor !== "0");
  socket.end();
}

/** Starts a server on `backend`; `await server.stop()` kills it and removes what it stood on. */
export async function startHerald(backend, { logDir } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "herald-e2e-"));
  const env = { ...process.env, RUST_LOG: "warn" };
  delete env.HERALD_DATABASE_URL;
  delete env.HERALD_REDIS_URL;
  delete env.HERALD_REDIS_PREFIX;
  let cleanup = async () => {};
  if (backend === "cluster") {
    const db = `herald_e2e_${randomBytes(6).toString("hex")}`;
    const prefix = `herald-e2e-${randomBytes(6).toString("hex")}`;
    const admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
    await admin.query(`create database ${db}`);
    await admin.end();
    env.HERALD_DATABASE_URL = withDatabase(DATABASE_URL, db);
    env.HERALD_REDIS_URL = REDIS_URL;
    env.HERALD_REDIS_PREFIX = prefix;
    cleanup = async () => {
      const c = new pg.Client({ connectionString: DATABASE_URL });
      await c.connect();
      await c.query(`drop database if exists ${db} with (force)`);
      await c.end();
      await deleteRedisKeys(prefix);
    };
  } else {
    env.HERALD_DATABASE_URL = `sqlite://${join(dir, "herald.db")}`;
  }
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(heraldBin(), ["serve", "--listen", `127.0.0.1:${port}`, "--usage-flush-secs", "1", "--drain-secs", "1",
    // Every test signs up from 127.0.0.1: the per-IP sign-up limit would refuse the suite.
    "--signup-per-ip-per-hour", "0"], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (logDir) child.stderr.pipe(createWriteStream(join(logDir, `herald-${backend}.log`)));
  else child.stderr.resume();
  const ready = new Promise((ok, fail) => {
    let out = "";
    const timer = setTimeout(() => fail(new Error(`herald (${backend}) did not start within 30 s`)), 30_000);
    child.stdout.on("data", (d) => {
      out += d;
      if (out.includes("herald admin:")) {
        clearTimeout(timer);
        ok();
      }
    });
    child.once("exit", (code) => fail(new Error(`herald (${backend}) exited with ${code} before it was ready`)));
  });
  try {
    await ready;
  } catch (e) {
    child.kill("SIGKILL");
    await cleanup().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  child.stdout.resume();
  return {
    base,
    backend,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((ok) => child.once("exit", ok));
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(timer);
      }
      await cleanup();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
