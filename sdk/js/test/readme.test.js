// The README's quick start, run verbatim against a real Herald with the package under test.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";

import { packageDir, sdkSource, startHerald } from "./harness.js";

test("the README quick start runs as written", async (t) => {
  const readme = readFileSync(join(sdkSource, "README.md"), "utf8");
  const code = /```js\n([\s\S]*?)```/.exec(readme)[1];
  const dir = mkdtempSync(join(tmpdir(), "herald-readme-"));
  const herald = await startHerald();
  t.after(async () => {
    await herald.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  mkdirSync(join(dir, "node_modules", "@herald"), { recursive: true });
  symlinkSync(packageDir, join(dir, "node_modules", "@herald", "client"));
  for (const dep of ["eventsource", "eventsource-parser"]) {
    symlinkSync(join(sdkSource, "node_modules", dep), join(dir, "node_modules", dep));
  }
  writeFileSync(join(dir, "quickstart.mjs"), code);
  const { key } = await herald.tenant("acme");
  const { stdout } = await promisify(execFile)(process.execPath, ["quickstart.mjs"], {
    cwd: dir,
    env: { ...process.env, HERALD_URL: herald.base, HERALD_KEY: key },
    timeout: 15_000,
  });
  assert.match(stdout, /^order 1 at \S+\n$/);
});
