// The dashboard with two WhatsApp accounts in headless Chromium: logs in, sees the
// second account's card with its own state, pacing, job counts and QR code, resets
// that account's session from its card, and saves a screenshot.
// Env: BASE, PASSWORD, ARTIFACTS, CHROMIUM (optional).
// Talks to the test that runs it with `STEP <name>` lines (see browser.mjs).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { launch, step, violations } from "./browser.mjs";

const BASE = process.env.BASE;
const ARTIFACTS = process.env.ARTIFACTS;

let browser;
async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await launch();
  const page = browser.context.pages()[0] || await browser.context.newPage();
  page.setDefaultTimeout(20000);
  page.on("pageerror", (e) => console.error("page error: " + e.message));
  await page.goto(BASE + "/?lang=en");
  await page.fill("#password", process.env.PASSWORD);
  await page.click("#login");
  await page.waitForSelector("#live[data-state=on]");
  const card = 'section.account[data-account="smp-2"]';
  // The first account's card names it; the second has a card of its own.
  await page.waitForFunction(() => document.querySelector("#whatsapp-account").textContent === "default");
  await page.waitForSelector(`${card} .pill[data-status=connected]`);
  await page.waitForSelector("#conn-status[data-status=waiting_for_qr]");
  // The second account's daily cap is used up, and it sent the test's one job; the
  // first account has no pacing reported and nothing of its own.
  await page.waitForSelector(`${card} .pacing[data-full=true]`);
  const pacing = await page.textContent(`${card} .pacing`);
  if (!pacing.startsWith("One message every 3–5 s. Daily cap reached (2 of 2): the next message can go at "))
    throw new Error("the second card's pacing: " + pacing);
  await page.waitForFunction((c) => document.querySelector(`${c} [data-count=sent] b`)?.textContent === "1", card);
  if (await page.textContent("#account-counts [data-count=sent] b") !== "0") throw new Error("the first card counts the second account's job");
  if (!(await page.isHidden("#pacing"))) throw new Error("pacing shown for a gateway that reported none");
  await step("cards", "", true);
  // The test made the second account wait for a scan and sent its QR code.
  await page.waitForSelector(`${card} [aria-label=QR] svg path`);
  if (await page.isVisible("#qr svg")) throw new Error("the second account's QR code on the first card");
  await page.screenshot({ path: join(ARTIFACTS, "dashboard-accounts.png"), fullPage: true });
  await step("qr-seen");
  await page.click(`${card} [data-role=reset]`);
  await page.click(`${card} [data-role=reset-yes]`);
  await page.waitForFunction((c) => document.querySelector(`${c} [data-role=reset-result]`).textContent.startsWith("Session reset"), card);
  const blocked = await violations(page);
  if (blocked.length) throw new Error(`CSP violations: ${blocked.join(", ")}`);
  await step("reset", "", true);
  console.log("OK");
}

main().then(async () => { await browser.close(); process.exit(0); }, async (e) => {
  console.error(e);
  if (browser) await browser.close();
  process.exit(1);
});
