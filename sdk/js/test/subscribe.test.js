// subscribe() in Node, over the npm `eventsource` package, against a real Herald.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { EventSource } from "eventsource";

import { load, startHerald, until } from "./harness.js";

const { subscribe, Publisher } = await load();
let herald, key, cookie, publisher;

before(async () => {
  herald = await startHerald();
  ({ key, cookie } = await herald.tenant("acme"));
  publisher = new Publisher({ baseUrl: herald.base, tenant: "acme", key });
});
after(() => herald.stop());

/** Opens a subscription and resolves once it is open. */
async function open(options) {
  const statuses = [];
  const sub = subscribe({ baseUrl: herald.base, tenant: "acme", EventSource, ...options, onStatus: (s) => statuses.push(s) });
  await until(() => sub.status === "open", 10_000, "the stream to open");
  return { sub, statuses };
}

test("typed handlers get parsed data in order, and statuses end closed", async () => {
  const { sub, statuses } = await open({ channels: "orders" });
  const created = [];
  const messages = [];
  sub.on("order.created", (data, meta) => created.push([data, meta.id]));
  sub.on("message", (data) => messages.push(data));
  const ids = [];
  for (let i = 0; i < 5; i++) {
    ids.push((await publisher.publish("orders", { id: i }, { event: "order.created" })).id);
  }
  const last = await publisher.publish("orders", "plain text");
  await until(() => created.length === 5 && messages.length === 1);
  assert.deepEqual(created, ids.map((id, i) => [{ id: i }, id]));
  assert.deepEqual(messages, ["plain text"]);
  assert.equal(sub.lastEventId, last.id);
  sub.close();
  assert.deepEqual(statuses, ["connecting", "open", "closed"]);
});

test("several channels on one connection", async () => {
  const { sub } = await open({ channels: ["a", "b"] });
  const got = [];
  sub.on("message", (data) => got.push(data));
  await publisher.publish("a", 1);
  await publisher.publish("b", 2);
  await until(() => got.length === 2);
  assert.deepEqual(got, [1, 2]);
  sub.close();
});

test("an unreadable cursor reaches onGap, then the retained events", async () => {
  await publisher.publish("gappy", "kept");
  const gaps = [];
  const got = [];
  const sub = subscribe({
    baseUrl: herald.base,
    tenant: "acme",
    channels: "gappy",
    lastEventId: "not-a-cursor",
    EventSource,
    onGap: (g) => gaps.push(g),
  });
  sub.on("message", (d) => got.push(d));
  await until(() => got.length === 1);
  assert.deepEqual(gaps, [{ channel: "gappy", reason: "invalid_cursor" }]);
  assert.deepEqual(got, ["kept"]);
  sub.close();
});

test("a cursorStore resumes a new subscription exactly after the last event", async () => {
  const store = new Map();
  const cursorStore = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };
  const first = await open({ channels: "resume", cursorStore });
  const got = [];
  first.sub.on("message", (d) => got.push(d));
  await publisher.publish("resume", 1);
  await until(() => got.length === 1);
  first.sub.close();
  await publisher.publish("resume", 2);
  await publisher.publish("resume", 3);
  const second = subscribe({ baseUrl: herald.base, tenant: "acme", channels: "resume", cursorStore, EventSource });
  second.on("message", (d) => got.push(d));
  await until(() => got.length === 3);
  await publisher.publish("resume", 4);
  await until(() => got.length === 4);
  assert.deepEqual(got, [1, 2, 3, 4]);
  second.close();
});

test("a private channel with short-lived tokens: refreshed before expiry, every event once", async () => {
  await herald.admin(cookie, "/tenants/acme/channels", { name: "secret", visibility: "private" });
  let minted = 0;
  const getToken = async () => {
    minted++;
    const t = await publisher.mintToken({ channels: ["secret"], ttlSeconds: 2 });
    return { token: t.token, expiresAt: t.expiresAt };
  };
  const { sub } = await open({ channels: "secret", getToken });
  const got = [];
  sub.on("message", (d) => got.push(d));
  const sent = [];
  const began = Date.now();
  const end = began + 5000; // two and a half token lifetimes
  for (let i = 0; Date.now() < end; i++) {
    await publisher.publish("secret", i);
    sent.push(i);
    await new Promise((r) => setTimeout(r, 50));
  }
  await until(() => got.length >= sent.length, 10_000, "every event");
  assert.deepEqual(got, sent, "every event exactly once, in order");
  assert.ok(minted >= 3, `tokens were refreshed (${minted} minted)`);
  // Refreshes are at least a second apart: one token per refresh, not a second for the reopen.
  assert.ok(minted <= Math.floor((Date.now() - began) / 1000) + 1, `one token per refresh (${minted} minted)`);
  sub.close();
});

test("without a token a private channel is refused and retried, not delivered", async () => {
  await herald.admin(cookie, "/tenants/acme/channels", { name: "closed", visibility: "private" });
  const errors = [];
  const sub = subscribe({ baseUrl: herald.base, tenant: "acme", channels: "closed", EventSource, onError: (e) => errors.push(e) });
  await until(() => errors.length >= 1);
  assert.equal(sub.status, "reconnecting");
  sub.close();
});

test("a refused token is replaced: getToken again, then the stream from the last cursor", async () => {
  await herald.admin(cookie, "/tenants/acme/channels", { name: "renewed", visibility: "private" });
  const tokens = ["not-a-token"];
  const getToken = async () => tokens.shift() ?? (await publisher.mintToken({ channels: ["renewed"], ttlSeconds: 60 })).token;
  const errors = [];
  const { sub, statuses } = await open({ channels: "renewed", getToken, onError: (e) => errors.push(e) });
  assert.equal(errors.length, 1, "the first connect was refused");
  assert.deepEqual(statuses, ["connecting", "reconnecting", "open"]);
  const got = [];
  sub.on("message", (d) => got.push(d));
  await publisher.publish("renewed", "hello");
  await until(() => got.length === 1);
  assert.deepEqual(got, ["hello"]);
  sub.close();
});

test("pauses while hidden and resumes from the cursor when shown", async () => {
  const page = new EventTarget();
  page.hidden = false;
  const { sub, statuses } = await open({ channels: "vis", pauseWhenHidden: page });
  const got = [];
  sub.on("message", (d) => got.push(d));
  await publisher.publish("vis", 1);
  await until(() => got.length === 1);
  page.hidden = true;
  page.dispatchEvent(new Event("visibilitychange"));
  assert.equal(sub.status, "paused");
  await until(async () => (await publisher.channel("vis")).subscribers === 0, 5000, "the stream to close");
  await publisher.publish("vis", 2);
  page.hidden = false;
  page.dispatchEvent(new Event("visibilitychange"));
  await until(() => got.length === 2);
  assert.deepEqual(got, [1, 2]);
  assert.deepEqual(statuses.slice(-3), ["paused", "connecting", "open"]);
  sub.close();
});

test("the polling fallback reads history with after= and starts live", async () => {
  await publisher.publish("polled", "old");
  const { token } = await publisher.mintToken({ channels: ["polled"], ttlSeconds: 60 });
  const sub = subscribe({
    baseUrl: herald.base,
    tenant: "acme",
    channels: "polled",
    token,
    transport: "poll",
    pollIntervalMs: 100,
  });
  const got = [];
  sub.on("message", (d, meta) => got.push([d, meta.id]));
  await until(() => sub.status === "open");
  const a = await publisher.publish("polled", { n: 1 });
  const b = await publisher.publish("polled", "two");
  await until(() => got.length === 2);
  assert.deepEqual(got, [
    [{ n: 1 }, a.id],
    ["two", b.id],
  ]);
  assert.equal(sub.lastEventId, b.id);
  sub.close();
});
