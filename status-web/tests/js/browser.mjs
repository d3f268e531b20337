// What the browser scripts share: headless Chromium (Debian's /usr/bin/chromium, or
// CHROMIUM) in a fresh profile that records every Content-Security-Policy
// violation, and the `STEP` conversation with the Rust test that runs the script.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

// Prints `STEP <name> [arg]`; with `waitForAnswer`, waits for the test's line on stdin.
export async function step(name, arg, waitForAnswer) {
  console.log(`STEP ${name}${arg ? " " + arg : ""}`);
  if (waitForAnswer) {
    const { value, done } = await lines.next();
    if (done) throw new Error("the test closed stdin at " + name);
    return value;
  }
}

// A browser context in a fresh profile; `close()` also removes the profile.
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), "abtrack-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 1000 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  await context.addInitScript(() => {
    window.__violations = [];
    document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

// What the Content-Security-Policy blocked on `page` since it loaded.
export const violations = (page) => page.evaluate(() => window.__violations);
