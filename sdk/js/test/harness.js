// A real Herald for the SDK's tests: the `herald` binary that `cargo xtask test` builds
// (HERALD_TEST_BIN, else target/debug/herald), on port 0 and a fresh SQLite database, and the
// package under test: the unpacked `npm pack` artefact named by HERALD_SDK_JS (what xtask
// installs), else this source tree's own dist/.

import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";

export const sdkSource = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const packageDir = process.env.HERALD_SDK_JS ?? sdkSource;
const repoRoot = resolve(sdkSource, "../..");

/** Imports an export of the package under test (".", "./react") through its exports map. */
export async function load(subpath = ".") {
  return import(pathToFileURL(exportPath(subpath)).href);
}

/** The file of an export of the package under test. */
export function exportPath(subpath) {
  const pkg = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8"));
  const entry = pkg.exports[subpath];
  return join(packageDir, typeof entry === "string" ? entry : entry.import);
}

function heraldBin() {
  if (process.env.HERALD_TEST_BIN) return process.env.HERALD_TEST_BIN;
  const target = process.env.CARGO_TARGET_DIR ? resolve(repoRoot, process.env.CARGO_TARGET_DIR) : join(repoRoot, "target");
  return join(target, "debug", "herald");
}

/** Starts `herald serve`; resolves once it prints its address. */
export async function startHerald(extra = []) {
  const dir = mkdtempSync(join(tmpdir(), "herald-sdk-js-"));
  const env = { ...process.env, RUST_LOG: "warn" };
  delete env.HERALD_REDIS_URL;
  delete env.HERALD_DATABASE_URL;
  const child = spawn(
    heraldBin(),
    ["serve", "--listen", "127.0.0.1:0", "--database-url", `sqlite://${join(dir, "herald.db")}`, "--signup-per-ip-per-hour", "0", ...extra],
    { env, stdio: ["ignore", "pipe", "ignore"] },
  );
  const exited = once(child, "exit").then(([code]) => {
    throw new Error(`herald exited (${code}) before it listened`);
  });
  const lines = createInterface({ input: child.stdout });
  const base = await Promise.race([
    (async () => {
      for await (const line of lines) {
        const m = /^herald admin: (\S+)\/api\/v1$/.exec(line);
        if (m) return m[1];
      }
      throw new Error("herald printed no address");
    })(),
    exited,
  ]);
  exited.catch(() => {});
  return {
    base,
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGKILL");
        await once(child, "exit");
      }
      rmSync(dir, { recursive: true, force: true });
    },
    /** Signs up `slug`; returns `{ key, cookie }` with a publish+subscribe key. */
    async tenant(slug) {
      const r = await fetch(`${base}/api/v1/signup`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          email: `owner@${slug}.example`,
          password: "correct horse battery staple",
          tenant: { slug, name: slug },
        }),
      });
      if (r.status !== 201) throw new Error(`signup: ${r.status} ${await r.text()}`);
      const cookie = r.headers.get("set-cookie").split(";")[0];
      const k = await this.admin(cookie, `/tenants/${slug}/keys`, { name: "sdk", scopes: ["publish", "subscribe"] });
      return { key: k.secret, cookie };
    },
    /** A cookie-authenticated admin POST. */
    async admin(cookie, path, body) {
      const r = await fetch(`${base}/api/v1${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", cookie, origin: base },
        body: JSON.stringify(body),
      });
      if (r.status !== 201) throw new Error(`POST ${path}: ${r.status} ${await r.text()}`);
      return r.json();
    },
  };
}

/** A plans file whose default plan `sdk` allows `perSecond` publishes per key. */
export function plansFile(perSecond) {
  const dir = mkdtempSync(join(tmpdir(), "herald-sdk-plans-"));
  const path = join(dir, "plans.toml");
  writeFileSync(
    path,
    `[plans.sdk]\nmax_connections = 100\nmessages_per_day = 100000\nmax_message_bytes = 65536\n` +
      `publish_per_second = ${perSecond}\npublish_burst = ${perSecond}\nchannels_per_connection = 16\nmax_history_size = 1000\n`,
  );
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Resolves when `predicate()` holds, checking whenever `tick` is called or every 20 ms. */
export async function until(predicate, ms = 10_000, what = "condition") {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A free loopback port. */
export async function freePort() {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  server.close();
  return port;
}

/** A redis-server of the test's own, that the test may stop; never the shared one. */
export async function privateRedis() {
  const port = await freePort();
  let child;
  const redis = {
    url: `redis://127.0.0.1:${port}`,
    async start() {
      child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
        stdio: ["ignore", "pipe", "ignore"],
      });
      const lines = createInterface({ input: child.stdout });
      for await (const line of lines) if (line.includes("Ready to accept connections")) break;
      child.stdout.resume();
    },
    async stop() {
      if (child && child.exitCode === null) {
        child.kill("SIGKILL");
        await once(child, "exit");
      }
    },
  };
  await redis.start();
  return redis;
}
