// @herald/client in real Chromium (Debian's /usr/bin/chromium, or CHROMIUM_PATH) against a real
// Herald: the minified browser bundle on a tiny static page, and a React page in strict mode.

import assert from "node:assert/strict";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";

import * as esbuild from "esbuild";
import { chromium } from "playwright-core";

import { exportPath, load, sdkSource, startHerald, until } from "./harness.js";

const { Publisher } = await load();
let herald, publisher, cookie, browser, site;

/** Serves the page, the bundle under test, and the React page built from the package under test. */
async function serveSite() {
  const bundle = readFileSync(exportPath("./browser"));
  const react = await esbuild.build({
    entryPoints: [join(sdkSource, "test", "react-app.jsx")],
    bundle: true,
    write: false,
    format: "esm",
    jsx: "automatic",
    alias: { "@herald/client/react": exportPath("./react") },
    nodePaths: [join(sdkSource, "node_modules")],
    define: { "process.env.NODE_ENV": '"development"' }, // strict mode double-mounts only in development
    logLevel: "warning",
  });
  const pages = {
    "/": ["text/html", '<!doctype html><title>herald</title><script type="module">import * as h from "/herald.min.js"; window.herald = h;</script>'],
    "/react": ["text/html", '<!doctype html><title>react</title><div id="root"></div><script type="module" src="/react.js"></script>'],
    "/herald.min.js": ["text/javascript", bundle],
    "/react.js": ["text/javascript", react.outputFiles[0].contents],
  };
  const server = createServer((req, res) => {
    const page = pages[new URL(req.url, "http://x").pathname];
    if (!page) return res.writeHead(404).end();
    res.writeHead(200, { "content-type": page[0] }).end(page[1]);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

before(async () => {
  herald = await startHerald();
  let key;
  ({ key, cookie } = await herald.tenant("acme"));
  publisher = new Publisher({ baseUrl: herald.base, tenant: "acme", key });
  site = await serveSite();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: ["--no-sandbox"],
  });
});
after(async () => {
  await browser?.close();
  site?.close();
  await herald?.stop();
});

/** A fresh page with the bundle loaded. */
async function page(t) {
  const context = await browser.newContext();
  t.after(() => context.close());
  const p = await context.newPage();
  await p.goto(site.url);
  await p.waitForFunction(() => window.herald !== undefined);
  return p;
}

test("typed handlers receive parsed events in order", async (t) => {
  const p = await page(t);
  await p.evaluate((base) => {
    window.got = [];
    window.sub = herald.subscribe({ baseUrl: base, tenant: "acme", channels: "orders" });
    window.sub.on("order.created", (data, meta) => got.push(["created", data, meta.id]));
    window.sub.on("order.paid", (data, meta) => got.push(["paid", data, meta.id]));
  }, herald.base);
  await p.waitForFunction(() => window.sub.status === "open");
  const expected = [];
  for (let i = 0; i < 6; i++) {
    const type = i % 2 ? "order.paid" : "order.created";
    const { id } = await publisher.publish("orders", { n: i, note: "a\nb" }, { event: type });
    expected.push([type.slice(6), { n: i, note: "a\nb" }, id]);
  }
  await p.waitForFunction((n) => window.got.length === n, expected.length);
  assert.deepEqual(await p.evaluate(() => window.got), expected);
});

test("a herald.gap reaches onGap", async (t) => {
  await publisher.publish("gappy", "retained");
  const p = await page(t);
  await p.evaluate((base) => {
    window.gaps = [];
    window.got = [];
    const sub = herald.subscribe({
      baseUrl: base,
      tenant: "acme",
      channels: "gappy",
      lastEventId: "garbage",
      onGap: (g) => gaps.push(g),
    });
    sub.on("message", (d) => got.push(d));
  }, herald.base);
  await p.waitForFunction(() => window.got.length === 1);
  assert.deepEqual(await p.evaluate(() => window.gaps), [{ channel: "gappy", reason: "invalid_cursor" }]);
  assert.deepEqual(await p.evaluate(() => window.got), ["retained"]);
});

test("a private channel with 2 s tokens runs past several expiries and gets every event once", async (t) => {
  await herald.admin(cookie, "/tenants/acme/channels", { name: "private-feed", visibility: "private" });
  const p = await page(t);
  let minted = 0;
  await p.exposeFunction("mintToken", async () => {
    minted++;
    return publisher.mintToken({ channels: ["private-feed"], ttlSeconds: 2 });
  });
  await p.evaluate((base) => {
    window.got = [];
    window.statuses = [];
    window.sub = herald.subscribe({
      baseUrl: base,
      tenant: "acme",
      channels: "private-feed",
      getToken: () => window.mintToken(),
      onStatus: (s) => statuses.push(s),
    });
    window.sub.on("message", (d) => got.push(d));
  }, herald.base);
  await p.waitForFunction(() => window.sub.status === "open");
  const sent = [];
  const began = Date.now();
  const end = began + 7000; // three and a half token lifetimes
  for (let i = 0; Date.now() < end; i++) {
    await publisher.publish("private-feed", i);
    sent.push(i);
    await new Promise((r) => setTimeout(r, 40));
  }
  await p.waitForFunction((n) => window.got.length >= n, sent.length);
  assert.deepEqual(await p.evaluate(() => window.got), sent, "every event exactly once, in order");
  assert.ok(minted >= 4, `a token before each expiry (${minted} minted)`);
  // Refreshes are at least a second apart (expires_at is whole seconds, so a 2 s token may have
  // little more than one left): one token per refresh, not a second one for the reopen.
  assert.ok(minted <= Math.floor((Date.now() - began) / 1000) + 1, `one token per refresh (${minted} minted)`);
  const statuses = await p.evaluate(() => window.statuses);
  assert.ok(!statuses.includes("reconnecting"), `no refused connect: ${statuses}`);
});

test("a page reload with cursorStore resumes exactly after the last event", async (t) => {
  const p = await page(t);
  const start = (base) => {
    window.got = [];
    window.sub = herald.subscribe({ baseUrl: base, tenant: "acme", channels: "reload", cursorStore: sessionStorage });
    window.sub.on("message", (d) => got.push(d));
  };
  await p.evaluate(start, herald.base);
  await p.waitForFunction(() => window.sub.status === "open");
  for (const n of [1, 2]) await publisher.publish("reload", n);
  await p.waitForFunction(() => window.got.length === 2);
  await p.reload();
  await p.waitForFunction(() => window.herald !== undefined);
  for (const n of [3, 4]) await publisher.publish("reload", n); // while no page listens
  await p.evaluate(start, herald.base);
  await p.waitForFunction(() => window.got.length === 2);
  await publisher.publish("reload", 5);
  await p.waitForFunction(() => window.got.length === 3);
  assert.deepEqual(await p.evaluate(() => window.got), [3, 4, 5]);
});

test("useHeraldChannel renders events in a strict-mode React page, with one stream open", async (t) => {
  const context = await browser.newContext();
  t.after(() => context.close());
  const p = await context.newPage();
  await p.goto(`${site.url}/react?base=${encodeURIComponent(herald.base)}`);
  await p.getByRole("status").filter({ hasText: "open" }).waitFor();
  for (const id of [1, 2, 3]) await publisher.publish("orders", { id }, { event: "order.created" });
  await p.getByRole("listitem").nth(2).waitFor();
  const items = await p.getByRole("list", { name: "orders" }).getByRole("listitem").allTextContents();
  assert.deepEqual(items, ["order 1", "order 2", "order 3"]);
  await p.getByText("latest: order 3").waitFor();
  // Strict mode mounted, unmounted and mounted again: the first stream was closed.
  await until(async () => (await publisher.channel("orders")).subscribers === 1, 5000, "one subscriber");
  await p.close();
  await until(async () => (await publisher.channel("orders")).subscribers === 0, 5000, "no subscriber");
});
