// The web admin end to end: a real `herald serve` (on SQLite, then on Postgres + Redis), real
// Chromium, and only what a person does in the UI, plus the HTTP calls a customer's server makes.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { writeFileSync, readFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startHerald, backends, freePort } from "../lib/herald.js";
import { launch, withPage, shoot, axeViolations, SHOTS } from "../lib/browser.js";
import { signUp, logIn, createKey, publish, openInspector, describedBy, unique, PASSWORD } from "../lib/flows.js";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

for (const backend of backends()) {
  describe(backend, () => {
    let herald;
    let base;
    before(async () => {
      herald = await startHerald(backend, { logDir: SHOTS });
      base = herald.base;
    });
    after(async () => {
      await herald?.stop();
    });
    const test = (name, fn) => it(name, () => withPage(browser, `${backend}-${name}`, (page) => fn(page)));

    test("sign up, create a key, publish with it: the inspector shows the event, and one from its own form", async (page) => {
      const { tenant, name, suggested } = await signUp(page, base, { name: "Zebra Shop Ltd" });
      assert.match(suggested, /^zebra-shop-ltd/);
      await page.locator("main").getByText(name).first().waitFor();
      const secret = await createKey(page, base, tenant);
      if (backend === "embedded") await shoot(page, "keys");

      await openInspector(page, base, tenant, "orders");
      const sent = await publish(base, tenant, "orders", secret, "order.created", { id: 42, total: "9.99" });
      assert.equal(sent.status, 201);
      const log = page.getByRole("log");
      const first = log.getByRole("listitem").filter({ hasText: "order.created" });
      await first.waitFor();
      assert.match(await first.textContent(), new RegExp(sent.body.id));
      assert.match(await first.textContent(), /"total": "9\.99"/);

      // The inspector's own form (its key field is filled from this tab's new key).
      await page.getByLabel("Event type").fill("inventory.low");
      await page.getByLabel("Data").fill('{"sku": "A-1", "left": 2}');
      await page.getByRole("button", { name: "Publish" }).click();
      await log.getByRole("listitem").filter({ hasText: "inventory.low" }).filter({ hasText: '"left": 2' }).waitFor();

      // Filter by type hides the other one.
      await page.getByLabel("Filter by type").selectOption("inventory.low");
      assert.equal(await log.getByRole("listitem").filter({ hasText: "order.created" }).count(), 0);
      await page.getByLabel("Filter by type").selectOption("");
      if (backend === "embedded") await shoot(page, "inspector");
    });

    test("revoking a key in the UI: a publish with it is refused 401", async (page) => {
      const { tenant } = await signUp(page, base);
      const secret = await createKey(page, base, tenant, { name: "doomed" });
      assert.equal((await publish(base, tenant, "orders", secret, "x", 1)).status, 201);
      await page.getByRole("button", { name: "Revoke doomed" }).click();
      await page.getByRole("dialog").getByRole("button", { name: "Revoke" }).click();
      await page.getByRole("dialog").waitFor({ state: "hidden" });
      await page.getByRole("row").filter({ hasText: "doomed" }).filter({ hasText: "revoked" }).waitFor();
      assert.equal(await page.getByRole("button", { name: "Revoke doomed" }).count(), 0);
      // Edges learn of a revocation within about a second.
      const deadline = Date.now() + 5000;
      let status;
      do {
        status = (await publish(base, tenant, "orders", secret, "x", 1)).status;
      } while (status !== 401 && Date.now() < deadline && (await new Promise((r) => setTimeout(r, 100)), true));
      assert.equal(status, 401);
    });

    test("a private channel: the inspector receives events through a minted token", async (page) => {
      const { tenant } = await signUp(page, base);
      const secret = await createKey(page, base, tenant);
      await page.goto(`${base}/t/${tenant}/channels`);
      await page.getByRole("button", { name: "New channel" }).click();
      await page.getByLabel("Channel name").fill("billing");
      await page.getByRole("radio", { name: /private/ }).check();
      await page.getByRole("button", { name: "Create channel" }).click();
      await page.waitForURL(`${base}/t/${tenant}/channels/billing`);
      await page.locator(".badge.private").waitFor();
      // Without a token the stream is refused: the channel really is private.
      const anonymous = await fetch(`${base}/v1/${tenant}/channels/billing/events`);
      assert.equal(anonymous.status, 401);
      await page.locator(".conn-live").waitFor();
      const sent = await publish(base, tenant, "billing", secret, "invoice.paid", { invoice: 7 });
      assert.equal(sent.status, 201);
      await page.getByRole("log").getByRole("listitem").filter({ hasText: "invoice.paid" }).waitFor();

      // The channels list shows it with its live subscriber (this inspector) and last event id.
      await page.goto(`${base}/t/${tenant}/channels`);
      const row = page.getByRole("row").filter({ hasText: "billing" });
      await row.filter({ hasText: sent.body.id }).waitFor();
      if (backend === "embedded") await shoot(page, "channels");

      await page.goto(`${base}/t/${tenant}/channels/billing#embed`);
      for (const what of ["token with curl", "token with Node", "token with Python", "HTML", "SDK"]) {
        await page.getByRole("region", { name: `Embed snippet: ${what}` }).waitFor();
      }
      assert.match(await page.getByRole("region", { name: "Embed snippet: HTML" }).textContent(), /\?token=/);
      if (backend === "embedded") await shoot(page, "embed-private");
    });

    test("the public channel's embed snippet, served from another origin, receives events", async (page) => {
      const { tenant } = await signUp(page, base);
      const secret = await createKey(page, base, tenant);
      await page.goto(`${base}/t/${tenant}/channels/news`);
      await page.getByRole("tab", { name: "Embed" }).click();
      const html = await page.getByRole("region", { name: "Embed snippet: HTML" }).textContent();
      const sdk = await page.getByRole("region", { name: "Embed snippet: SDK" }).textContent();
      assert.match(sdk, /import \{ subscribe \} from "@herald\/client"/);
      assert.match(sdk, new RegExp(`tenant: "${tenant}"`));
      if (backend === "embedded") await shoot(page, "embed-public");

      const dir = mkdtempSync(join(tmpdir(), "herald-embed-"));
      writeFileSync(join(dir, "index.html"), html);
      const port = await freePort();
      const site = createServer((req, res) => {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
        res.end(readFileSync(join(dir, "index.html")));
      });
      await new Promise((ok) => site.listen(port, "localhost", ok));
      try {
        const other = await page.context().newPage();
        // Wait for the stream to be open before publishing: a first connect starts live.
        const opened = other.waitForResponse((r) => r.url().includes(`/v1/${tenant}/channels/news/events`));
        await other.goto(`http://localhost:${port}/`);
        assert.equal((await opened).status(), 200);
        assert.notEqual(new URL(other.url()).origin, new URL(base).origin);
        const sent = await publish(base, tenant, "news", secret, "hello", { headline: "Herald ships" });
        assert.equal(sent.status, 201);
        await other.getByRole("listitem").filter({ hasText: "Herald ships" }).waitFor();
        assert.match(await other.getByRole("listitem").first().textContent(), /^hello \{"headline":"Herald ships"\}$/);
      } finally {
        site.close();
      }
    });

    test("get started turns green on the first event; the dashboard chart renders with data", async (page) => {
      const { tenant } = await signUp(page, base);
      const status = page.getByRole("status").filter({ hasText: /first event/ });
      await status.filter({ hasText: "Waiting for your first event" }).waitFor();
      if (backend === "embedded") await shoot(page, "get-started");
      await page.getByRole("button", { name: "Create key" }).click();
      const secret = (await page.getByLabel("API key secret").textContent()).trim();
      const curl = await page.getByRole("region", { name: "Publish command: curl" }).textContent();
      assert.ok(curl.includes(secret), "the curl command carries the new key");
      assert.ok(curl.includes(`${base}/v1/${tenant}/channels/hello/events`));
      for (let i = 0; i < 3; i++) assert.equal((await publish(base, tenant, "hello", secret, "hello", { n: i })).status, 201);
      await status.filter({ hasText: "Your first event arrived" }).waitFor();
      assert.match(await status.getAttribute("class"), /arrived/);

      const chart = page.getByRole("img", { name: "Messages, deliveries and peak connections per day, last 30 days" });
      await chart.waitFor();
      // Usage is flushed every second here and the dashboard refreshes every 5 s.
      // (Polled from here: waitForFunction would eval a string, which the page's CSP forbids.)
      const deadline = Date.now() + 20_000;
      while (Number(await chart.getAttribute("data-total-messages")) < 3 && Date.now() < deadline) await page.waitForTimeout(250);
      assert.equal(await chart.getAttribute("data-total-messages"), "3");
      assert.equal(await chart.locator("canvas").count(), 1);
      assert.equal(await chart.getAttribute("data-points"), "30");
      await page.getByText("Messages today").locator("..").getByText(/^3\b/).waitFor();
      // The tooltip follows the cursor over today's point.
      await chart.scrollIntoViewIfNeeded();
      const box = await chart.locator(".u-over").boundingBox();
      const tip = page.locator(".chart-tip").filter({ hasText: "Messages: 3" });
      for (let i = 0; i < 40 && !(await tip.isVisible()); i++) {
        await page.mouse.move(box.x + box.width - 4 - (i % 2), box.y + box.height / 2, { steps: 2 });
        await page.waitForTimeout(100);
      }
      await tip.waitFor();
      if (backend === "embedded") await shoot(page, "dashboard");
    });

    test("errors are shown next to their field: a duplicate email, a too-short password", async (page) => {
      const { email } = await signUp(page, base);
      await page.getByRole("button", { name: "Log out" }).click();
      await page.waitForURL(`${base}/login`);

      await page.goto(`${base}/signup`);
      await page.getByLabel("Email").fill(email);
      await page.getByLabel("Password").fill(PASSWORD);
      await page.getByLabel("Tenant name").fill(unique("Other"));
      await page.getByRole("button", { name: "Sign up" }).click();
      const emailField = page.getByLabel("Email");
      await page.locator(".field-error").filter({ hasText: "email is already taken" }).waitFor();
      assert.match(await describedBy(emailField), /email is already taken/i);
      assert.equal(await emailField.getAttribute("aria-invalid"), "true");

      await page.getByLabel("Email").fill(`${unique("short")}@example.com`);
      await page.getByLabel("Password").fill("short");
      await page.getByRole("button", { name: "Sign up" }).click();
      await page.locator(".field-error").filter({ hasText: "at least 10 characters" }).waitFor();
      assert.match(await describedBy(page.getByLabel("Password")), /Password must be at least 10 characters/);
      assert.doesNotMatch(await page.locator("main").textContent(), /"code"|invalid_body|\{"/);
      if (backend === "embedded") await shoot(page, "signup-errors");

      await page.goto(`${base}/login`);
      await page.getByLabel("Email").fill(email);
      await page.getByLabel("Password").fill("not the password");
      await page.getByRole("button", { name: "Log in" }).click();
      await page.getByRole("alert").filter({ hasText: "Wrong email or password" }).waitFor();
    });

    test("a viewer sees the tenant read-only: no Create key, no Revoke, no Publish", async (page) => {
      const viewer = await signUp(page, base);
      await page.getByRole("button", { name: "Log out" }).click();
      await page.waitForURL(`${base}/login`);
      const owner = await signUp(page, base);
      await createKey(page, base, owner.tenant, { name: "backend" });
      await page.goto(`${base}/t/${owner.tenant}/settings`);
      await page.getByLabel("Member email").fill(viewer.email);
      await page.getByLabel("Role").selectOption("viewer");
      await page.getByRole("button", { name: "Add member" }).click();
      await page.getByRole("row").filter({ hasText: viewer.email }).waitFor();
      if (backend === "embedded") await shoot(page, "settings");
      await page.getByRole("button", { name: "Log out" }).click();
      await page.waitForURL(`${base}/login`);

      await logIn(page, base, viewer.email);
      await page.getByLabel("Tenant", { exact: true }).selectOption(owner.tenant);
      await page.waitForURL(`${base}/t/${owner.tenant}`);
      await page.getByText("read-only").waitFor();
      await page.getByRole("link", { name: "API keys" }).click();
      await page.getByRole("row").filter({ hasText: "backend" }).waitFor();
      assert.equal(await page.getByRole("button", { name: "Create key" }).count(), 0);
      assert.equal(await page.getByRole("button", { name: /Revoke/ }).count(), 0);
      await page.goto(`${base}/t/${owner.tenant}/channels/orders`);
      await page.locator(".conn-live").waitFor();
      assert.equal(await page.getByRole("button", { name: "Publish" }).count(), 0);
      await page.goto(`${base}/t/${owner.tenant}/settings`);
      await page.getByRole("heading", { name: "Members" }).waitFor();
      for (const action of ["Rotate", "Add member", "Delete tenant", "Save"]) {
        assert.equal(await page.getByRole("button", { name: action }).count(), 0, action);
      }
    });

    if (backend === "embedded") {
      test("no serious accessibility violation on the main views, at desktop width and at 375 px", async (page) => {
        const found = [];
        const check = async (view) => {
          for (const width of [1280, 375]) {
            await page.setViewportSize({ width, height: 900 });
            found.push(...(await axeViolations(page)).map((v) => `${view} @${width}: ${v}`));
          }
          await page.setViewportSize({ width: 1280, height: 900 });
        };
        await page.goto(`${base}/login`);
        await page.getByRole("button", { name: "Log in" }).waitFor();
        await check("login");
        await shoot(page, "login");
        await page.goto(`${base}/signup`);
        await page.getByRole("button", { name: "Sign up" }).waitFor();
        await check("signup");
        await shoot(page, "signup");
        const { tenant } = await signUp(page, base);
        await page.getByRole("img", { name: /last 30 days/ }).waitFor();
        await check("home");
        await createKey(page, base, tenant);
        await check("keys");
        await page.goto(`${base}/t/${tenant}/channels`);
        await page.getByRole("heading", { name: "Configured channels" }).waitFor();
        await check("channels");
        await openInspector(page, base, tenant, "orders");
        await check("inspector");
        await page.getByRole("tab", { name: "Embed" }).click();
        await check("embed");
        await page.goto(`${base}/t/${tenant}/settings`);
        await page.getByRole("heading", { name: "Audit log" }).waitFor();
        await page.getByRole("cell", { name: "key.create" }).first().waitFor();
        await check("settings");
        assert.deepEqual(found, []);
      });

      test("URLs are shareable: reload and back keep the view; unknown paths are a 404, the API is not shadowed", async (page) => {
        const { tenant } = await signUp(page, base);
        await page.getByRole("link", { name: "Channels" }).click();
        await page.waitForURL(`${base}/t/${tenant}/channels`);
        await page.getByRole("link", { name: "Settings" }).click();
        await page.waitForURL(`${base}/t/${tenant}/settings`);
        await page.reload();
        await page.getByRole("heading", { name: "Signing keys" }).waitFor();
        await page.goBack();
        await page.waitForURL(`${base}/t/${tenant}/channels`);
        await page.getByRole("heading", { name: "Configured channels" }).waitFor();
        const headers = (await page.goto(`${base}/t/${tenant}/keys`)).headers();
        assert.match(headers["content-security-policy"], /frame-ancestors 'none'/);
        assert.equal(headers["x-content-type-options"], "nosniff");
        for (const path of ["/nope", "/t", `/t/${tenant}/nope/deeper/still`]) {
          assert.equal((await fetch(base + path)).status, 404, path);
        }
        assert.equal((await fetch(`${base}/healthz`)).status, 200);
        assert.equal((await fetch(`${base}/api/v1/me`)).headers.get("content-type"), "application/problem+json");
        // The session cookie is not readable by script.
        assert.equal(await page.evaluate(() => document.cookie), "");
      });
    }
  });
}
