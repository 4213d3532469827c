// Publisher against a real Herald: every operation, retries on 429 and 503, errors with codes.

import assert from "node:assert/strict";
import { test } from "node:test";

import { load, plansFile, privateRedis, startHerald } from "./harness.js";

const { Publisher, HeraldError } = await load();

test("publish, batch, history paging, channel info and tokens", async (t) => {
  const herald = await startHerald();
  t.after(() => herald.stop());
  const { key } = await herald.tenant("acme");
  const p = new Publisher({ baseUrl: herald.base, tenant: "acme", key });

  const first = await p.publish("orders", { id: 1 }, { event: "order.created" });
  assert.equal(first.channel, "orders");
  const batch = await p.publishBatch([
    { channel: "orders", event: "order.created", data: { id: 2 } },
    { channel: "orders", data: "text" },
    { channel: "other", data: null },
  ]);
  assert.equal(batch.length, 3);
  const page = await p.history("orders", { limit: 2 });
  assert.deepEqual(page.events, [
    { id: first.id, event: "order.created", data: { id: 1 } },
    { id: batch[0].id, event: "order.created", data: { id: 2 } },
  ]);
  const next = await p.history("orders", { after: page.events.at(-1).id });
  assert.deepEqual(next.events, [{ id: batch[1].id, event: "message", data: "text" }]);
  const info = await p.channel("orders");
  assert.equal(info.retained, 3);
  assert.equal(info.last_event_id, batch[1].id);
  const token = await p.mintToken({ channels: ["orders"], ttlSeconds: 60, sub: "u1" });
  assert.equal(token.token.split(".").length, 3);
  assert.ok(Date.parse(token.expiresAt) > Date.now());
});

test("errors are HeraldError with status and code", async (t) => {
  const herald = await startHerald();
  t.after(() => herald.stop());
  const { key } = await herald.tenant("acme");
  const p = new Publisher({ baseUrl: herald.base, tenant: "acme", key });
  await assert.rejects(p.publish("bad name", 1), (e) => e instanceof HeraldError && e.status === 400 && e.code === "invalid_name");
  const wrong = new Publisher({ baseUrl: herald.base, tenant: "acme", key: `hk_${"0".repeat(40)}` });
  await assert.rejects(wrong.publish("orders", 1), { status: 401, code: "unauthorized" });
  await p.publish("orders", 1, { idempotencyKey: "k1" });
  await assert.rejects(p.publish("orders", 2, { idempotencyKey: "k1" }), { status: 422, code: "idempotency_key_reused" });
  await assert.rejects(p.publishBatch([]), { status: 400, code: "invalid_body" });
});

test("a 429 is retried after Retry-After; without budget it is rate_limited", async (t) => {
  const plans = plansFile(1);
  const herald = await startHerald(["--plans", plans.path, "--default-plan", "sdk"]);
  t.after(async () => {
    await herald.stop();
    plans.remove();
  });
  const { key } = await herald.tenant("acme");
  const p = new Publisher({ baseUrl: herald.base, tenant: "acme", key });
  await p.publish("c", 1);
  const once = new Publisher({ baseUrl: herald.base, tenant: "acme", key, retry: { maxAttempts: 1 } });
  await assert.rejects(once.publish("c", 2), { status: 429, code: "rate_limited", retryAfter: 1 });
  const started = Date.now();
  await p.publish("c", 3);
  assert.ok(Date.now() - started >= 900, `waited ${Date.now() - started} ms for Retry-After`);
  const history = await p.history("c");
  assert.deepEqual(history.events.map((e) => e.data), [1, 3]);
});

test("a publish during a broker outage is retried with its key and stored once", async (t) => {
  const redis = await privateRedis();
  const herald = await startHerald(["--redis-url", redis.url]);
  t.after(async () => {
    await herald.stop();
    await redis.stop();
  });
  const { key } = await herald.tenant("acme");
  const p = new Publisher({ baseUrl: herald.base, tenant: "acme", key, retry: { maxAttempts: 30 } });
  await p.publish("c", "before");
  await redis.stop();
  const once = new Publisher({ baseUrl: herald.base, tenant: "acme", key, retry: { maxAttempts: 1 } });
  await assert.rejects(once.publish("c", "x"), { status: 503, code: "unavailable" });
  let settled = false;
  const during = p.publish("c", "during", { idempotencyKey: "outage-1" }).finally(() => (settled = true));
  await new Promise((r) => setTimeout(r, 1500)); // the outage the publisher must ride out
  assert.equal(settled, false, "no success while Redis is down");
  await redis.start();
  const published = await during;
  assert.deepEqual(await p.publish("c", "during", { idempotencyKey: "outage-1" }), published);
  const history = await p.history("c");
  assert.deepEqual(history.events.filter((e) => e.data === "during").map((e) => e.id), [published.id]);
});
