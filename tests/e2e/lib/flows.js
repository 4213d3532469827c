// What a person does, step by step, through the UI only; and the few things the test itself
// does over HTTP (publishing with a key, as a customer's server would).

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

export const PASSWORD = "correct horse battery staple";

export function unique(prefix) {
  return `${prefix}-${randomBytes(4).toString("hex")}`;
}

/** Signs up through the form; lands on the new tenant's home. */
export async function signUp(page, base, { email = `${unique("ann")}@example.com`, name, slug } = {}) {
  name = name || `Acme ${randomBytes(3).toString("hex")}`;
  await page.goto(`${base}/signup`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByLabel("Tenant name").fill(name);
  const suggested = await page.getByLabel("Tenant slug").inputValue();
  if (slug) await page.getByLabel("Tenant slug").fill(slug);
  await page.getByRole("button", { name: "Sign up" }).click();
  const tenant = slug || suggested;
  await page.waitForURL(`${base}/t/${tenant}`);
  return { email, tenant, name, suggested };
}

export async function logIn(page, base, email) {
  await page.goto(`${base}/login`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(/\/t\//);
}

/** Creates a key on the keys page; returns its secret as the page shows it. */
export async function createKey(page, base, tenant, { name = "server", scopes = ["publish", "subscribe"] } = {}) {
  await page.goto(`${base}/t/${tenant}/keys`);
  await page.getByLabel("Name", { exact: true }).fill(name);
  for (const scope of ["publish", "subscribe", "admin"]) {
    await page.getByRole("checkbox", { name: scope, exact: true }).setChecked(scopes.includes(scope));
  }
  await page.getByRole("button", { name: "Create key" }).click();
  const secret = (await page.getByLabel("API key secret").textContent()).trim();
  assert.match(secret, /^hk_[A-Za-z0-9]{40}$/);
  return secret;
}

export async function publish(base, tenant, channel, key, event, data) {
  const res = await fetch(`${base}/v1/${tenant}/channels/${encodeURIComponent(channel)}/events`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ event, data }),
  });
  return { status: res.status, body: await res.json() };
}

/** Opens a channel's page and waits until its inspector is connected. */
export async function openInspector(page, base, tenant, channel) {
  await page.goto(`${base}/t/${tenant}/channels/${encodeURIComponent(channel)}`);
  await page.locator(".conn-live").waitFor();
}

/** The text of the element an input's aria-describedby points at. */
export async function describedBy(locator) {
  return locator.evaluate((el) =>
    (el.getAttribute("aria-describedby") || "")
      .split(/\s+/)
      .filter(Boolean)
      .map((id) => document.getElementById(id)?.textContent || "")
      .join(" "),
  );
}
