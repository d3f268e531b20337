// Drives the dashboard in headless Chromium (Debian's /usr/bin/chromium through
// playwright-core): logs in, sees the QR code appear, watches a job go from
// pending to sent, retries a failed job, shows the launcher's restarts, shows the
// services' notices and dismisses them, and saves screenshots.
// Env: BASE, PASSWORD, ARTIFACTS (folder for the screenshots), CHROMIUM (optional).
// Talks to the test that runs it: prints `STEP <name> [arg]` and, where the test
// has to act (emit a QR code, connect the gateway), waits for a line on stdin.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { launch, step, violations } from "./browser.mjs";

const BASE = process.env.BASE;
const ARTIFACTS = process.env.ARTIFACTS;

let browser;
async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await launch();
  const { context } = browser;
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(20000);
  // The Content-Security-Policy must block nothing the dashboard does.
  const noViolations = async (where) => {
    const blocked = await violations(page);
    if (blocked.length) throw new Error(`CSP violations on ${where}: ${blocked.join(", ")}`);
  };
  page.on("pageerror", (e) => console.error("page error: " + e.message));

  await page.goto(BASE + "/?lang=en");
  if (!page.url().includes("/login")) throw new Error("not sent to the login page: " + page.url());
  await noViolations("the login page");
  await page.fill("#password", "wrong password");
  await page.click("#login");
  await page.waitForSelector("#login-error");
  await page.fill("#password", process.env.PASSWORD);
  await page.click("#login");
  await page.waitForSelector("#live[data-state=on]");
  await page.waitForSelector("#conn-status[data-status=waiting_for_qr]");
  if (await page.isVisible("#qr svg")) throw new Error("a QR code before the gateway sent one");
  await step("logged-in", "", true);

  await page.waitForSelector("#qr svg path");
  await page.waitForFunction(() => /\d+/.test(document.querySelector("#qr-countdown").textContent));
  console.log("countdown: " + await page.textContent("#qr-countdown"));
  await page.screenshot({ path: join(ARTIFACTS, "dashboard-qr.png"), fullPage: true });
  const firstQr = await page.innerHTML("#qr");
  await step("qr-seen", "", true);
  // The gateway rotated its code: the new one replaces the old.
  await page.waitForFunction((old) => {
    const qr = document.querySelector("#qr");
    return qr.querySelector("svg path") && qr.innerHTML !== old;
  }, firstQr);
  await step("qr-rotated");

  await page.click("#pause-button");
  await page.waitForFunction(() => document.querySelector("#queue-state").textContent.startsWith("Paused"));
  await step("paused", "", true);
  await page.click("#pause-button");
  await page.waitForFunction(() => !document.querySelector("#queue-state").textContent.startsWith("Paused"));
  await step("resumed", "", true);

  await page.fill("#send-form input[name=to]", "0812-3456-7890");
  await page.fill("#send-form textarea[name=message]", "Halo dari tes");
  await page.click("#send-form button[type=submit]");
  const pending = await page.waitForSelector("#jobs tbody tr[data-status=pending]");
  const id = await pending.getAttribute("data-id");
  await step("pending", id, true);
  await page.waitForSelector(`#jobs tbody tr[data-id="${id}"][data-status=sent]`);
  await page.waitForSelector("#conn-status[data-status=connected]");
  if (await page.isVisible("#qr svg")) throw new Error("the QR code stayed after linking");
  await step("sent", id);

  await page.fill("#send-form input[name=to]", "0812-3456-7890");
  await page.fill("#send-form textarea[name=message]", "fail-once");
  await page.click("#send-form button[type=submit]");
  const failed = await page.waitForSelector("#jobs tbody tr[data-status=failed]");
  const failedId = await failed.getAttribute("data-id");
  await step("failed", failedId);
  await page.click(`#jobs tbody tr[data-id="${failedId}"] button.retry`);
  await page.waitForSelector(`#jobs tbody tr[data-id="${failedId}"][data-status=sent]`);
  await step("retried", failedId);

  // A photo attached to the test form goes inline; the job list says what it carries.
  const png = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==", "base64");
  await page.fill("#send-form input[name=to]", "0812-3456-7890");
  await page.fill("#send-form textarea[name=message]", "");
  await page.setInputFiles("#send-form input[name=file]", { name: "kegiatan.png", mimeType: "image/png", buffer: png });
  await page.click("#send-form button[type=submit]");
  const photo = await page.waitForSelector("#jobs tbody tr:has(.media)");
  const photoId = await photo.getAttribute("data-id");
  await page.waitForSelector(`#jobs tbody tr[data-id="${photoId}"][data-status=sent]`);
  const shown = await page.textContent(`#jobs tbody tr[data-id="${photoId}"] .media`);
  if (!shown.includes("Photo") || !shown.includes("kegiatan.png")) throw new Error("the job list shows no attachment: " + shown);
  if (await page.inputValue("#send-form input[name=file]")) throw new Error("the file stayed in the form");
  await step("attached", photoId);

  await page.click("#pair summary");
  await page.fill("#pair-form input[name=phone]", "6281234567890");
  await page.click("#pair-form button[type=submit]");
  await page.waitForSelector("#pair-result .pair-code");
  await step("pair-code", await page.textContent("#pair-result .pair-code"));

  await page.click("#reset-button");
  await page.waitForSelector("#reset-confirm:not([hidden])");
  await page.click("#reset-yes");
  await page.waitForFunction(() => document.querySelector("#reset-result").textContent.length > 0);
  if ((await page.getAttribute("#reset-result", "class")).includes("error")) throw new Error("reset failed: " + await page.textContent("#reset-result"));
  await step("reset", "", true);
  // The gateway reports a reach-out time lock: the dashboard says until when.
  await page.waitForSelector("#time-lock:not([hidden])");
  await step("time-lock", await page.textContent("#time-lock"));
  await page.waitForSelector("#new-chats:not([hidden])");
  await step("new-chats", await page.textContent("#new-chats"));
  // Without the launcher's record the Services card shows no restarts; once the
  // launcher writes it, a line per restarted service.
  if (await page.isVisible("#restart-list")) throw new Error("restarts shown without a launcher record");
  await step("launcher", "", true);
  const restart = '#restart-list li.restart[data-service="wa-gateway"]';
  await page.waitForSelector(restart);
  if (await page.locator("#restart-list li.restart").count() !== 2) throw new Error("not one line per restarted service");
  await step("restarts", await page.textContent(restart));

  // No notice, no banner; once the dispatcher and the logger each moved a damaged
  // file aside, one entry each, oldest first.
  if (await page.isVisible("#notices")) throw new Error("a notice banner without notices");
  await step("notices", "", true);
  await page.waitForFunction(() => document.querySelectorAll("#notice-list li").length === 2);
  const services = await page.$$eval("#notice-list li", (items) => items.map((li) => li.dataset.service));
  if (services.join() !== "dispatcher,sheets-logger") throw new Error("notices out of order: " + services);
  const dispatcherNotice = '#notice-list li[data-service="dispatcher"]';
  const loggerNotice = '#notice-list li[data-service="sheets-logger"]';
  if (await page.textContent(dispatcherNotice + " button") !== "Dismiss") throw new Error("no Dismiss button");
  await step("notice", await page.textContent(dispatcherNotice + " .notice-text"));
  await step("notice-one", await page.textContent(loggerNotice + " .notice-text"));

  await page.screenshot({ path: join(ARTIFACTS, "dashboard.png"), fullPage: true });
  await noViolations("the dashboard");
  await page.click(dispatcherNotice + " button.notice-dismiss");
  await page.waitForSelector(dispatcherNotice, { state: "detached" });
  if (!await page.isVisible(loggerNotice)) throw new Error("the other notice went too");
  await step("notice-dismissed", "", true);
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(BASE + "/?lang=id");
  await page.waitForSelector("#live[data-state=on]");
  await page.waitForSelector("#jobs tbody tr");
  await step("restarts-id", await page.textContent(restart));
  await page.waitForSelector(loggerNotice);
  if (await page.textContent(loggerNotice + " button") !== "Tutup") throw new Error("no Tutup button");
  await step("notice-id", await page.textContent(loggerNotice + " .notice-text"));
  await page.screenshot({ path: join(ARTIFACTS, "dashboard-phone.png"), fullPage: true });
  await noViolations("the dashboard on a phone");
  await page.click(loggerNotice + " button.notice-dismiss");
  await page.waitForSelector("#notices", { state: "hidden" });
  await step("notices-gone", "", true);
  await step("done");
}

main()
  .then(async () => { await browser.close(); process.exit(0); })
  .catch(async (e) => {
    console.error("FAIL " + e.message);
    if (browser) {
      const page = browser.context.pages()[0];
      if (page) await page.screenshot({ path: join(ARTIFACTS, "dashboard-failure.png"), fullPage: true }).catch(() => {});
      await browser.close();
    }
    process.exit(1);
  });
