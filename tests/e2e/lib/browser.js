// Debian's Chromium, driven by playwright-core (no browser download), plus what every test
// needs: a screenshot on failure, screenshots of views on success, an axe-core check, and a
// watch on CSP violations and page errors (the strict policy must never break the app).

import { chromium } from "playwright-core";
import { mkdirSync, readFileSync, existsSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { createRequire } from "node:module";
import { ROOT } from "./herald.js";

// `resolve`, not `join`: the test command passes an absolute CARGO_TARGET_DIR.
export const SHOTS = join(process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, "target"), "e2e-screenshots");
// Each run starts clean, so a failure-*.png is always from this run.
rmSync(SHOTS, { recursive: true, force: true });
mkdirSync(SHOTS, { recursive: true });

const CHROMIUM = process.env.HERALD_E2E_CHROMIUM || "/usr/bin/chromium";
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

export async function launch() {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (Debian: apt-get install chromium)`);
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
}

/** A fresh context and page; page errors and CSP violations are collected in `page.problems`. */
export async function newPage(browser, { width = 1280, height = 900 } = {}) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  page.problems = [];
  page.on("pageerror", (e) => page.problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy|Refused to/.test(m.text())) page.problems.push(`CSP: ${m.text()}`);
  });
  return page;
}

const safe = (s) => s.replace(/[^A-Za-z0-9._-]+/g, "-").slice(0, 120);

/** Runs `fn(page)`; on failure saves `failure-<name>.png` before rethrowing. */
export async function withPage(browser, name, fn, opts) {
  const page = await newPage(browser, opts);
  try {
    await fn(page);
    if (page.problems.length) throw new Error(page.problems.join("\n"));
  } catch (e) {
    const path = join(SHOTS, `failure-${safe(name)}.png`);
    await page.screenshot({ path, fullPage: true }).catch(() => {});
    e.message += `\n(screenshot: ${path})`;
    throw e;
  } finally {
    await page.context().close();
  }
}

/** Saves a screenshot of the view as it is, at desktop width and at 375 px. */
export async function shoot(page, name) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(SHOTS, `${safe(name)}.png`), fullPage: true });
  const size = page.viewportSize();
  await page.setViewportSize({ width: 375, height: 812 });
  // Let layout (and the chart's ResizeObserver) settle at the new width.
  await page.waitForTimeout(300);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
  if (overflow > 375) throw new Error(`${name}: the page is ${overflow} px wide at a 375 px viewport`);
  await page.screenshot({ path: join(SHOTS, `${safe(name)}-375.png`), fullPage: true });
  await page.setViewportSize(size);
}

/** axe-core's serious and critical violations on the page (WCAG 2.1 A and AA rules). */
export async function axeViolations(page) {
  // DevTools evaluation is not subject to the page's CSP, so axe runs without loosening it.
  await page.evaluate(AXE);
  const result = await page.evaluate(() =>
    window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] } }),
  );
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")}`);
}
