// The operator's views in headless Chromium: finds a parent's jobs by a number
// written the local way, opens the job that was retried once then read and reads
// each step of its story, retries the failed one from its view, checks the charts
// against /api/stats, downloads the CSV of the filter and compares it with the
// list; saves a screenshot of each view.
// Env: BASE, PASSWORD, ARTIFACTS, CHROMIUM (optional), RETRIED (the job's id),
// FAILED (the parent's failed job's id), OTHER (another number's job's id),
// LANG_PAGE, RETRY_FAILED (set: retry the failed job at the end).
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { launch, violations } from "./browser.mjs";

const BASE = process.env.BASE;
const ARTIFACTS = process.env.ARTIFACTS;
const { RETRIED, FAILED, OTHER } = process.env;
const LANG = process.env.LANG_PAGE || "en";

let browser;
const fail = (what) => { throw new Error(what); };

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await launch();
  const page = browser.context.pages()[0] || await browser.context.newPage();
  page.setDefaultTimeout(20000);
  page.on("pageerror", (e) => console.error("page error: " + e.message));
  await page.goto(`${BASE}/?lang=${LANG}`);
  await page.fill("#password", process.env.PASSWORD);
  await page.click("#login");
  await page.waitForSelector("#live[data-state=on]");

  // Search by the number as a parent's form would have it.
  await page.fill("#find-form [name=phone]", "0812 3456 7890");
  await page.click("#find-form button[type=submit]");
  await page.waitForSelector(`#found tr[data-id="${RETRIED}"]`);
  const found = await page.$$eval("#found tbody tr", (rows) => rows.map((r) => r.dataset.id));
  if (found.length !== 2 || !found.includes(FAILED) || !found.includes(RETRIED) || found.includes(OTHER))
    fail("the search by number found " + JSON.stringify(found));
  await page.locator("#find").screenshot({ path: join(ARTIFACTS, `dashboard-find-${LANG}.png`) });

  // The CSV of the same filter holds the same jobs.
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#find-csv")]);
  const csv = readFileSync(await download.path(), "utf8").trim().split("\n");
  if (csv[0].split(",")[0] !== "id") fail("the CSV header: " + csv[0]);
  const csvIds = csv.slice(1).map((line) => line.split(",")[0]);
  if (JSON.stringify(csvIds) !== JSON.stringify(found)) fail(`the CSV ${JSON.stringify(csvIds)} is not the list ${JSON.stringify(found)}`);

  // The retried job's story, step by step.
  await page.click(`#found tr[data-id="${RETRIED}"]`);
  await page.waitForSelector("#job-detail[open] #detail-steps li[data-kind=read]");
  const kinds = await page.$$eval("#detail-steps li", (items) => items.map((li) => li.dataset.kind));
  const story = ["created", "leased", "retry_later", "leased", "sent", "read"];
  if (JSON.stringify(kinds) !== JSON.stringify(story)) fail("the story " + JSON.stringify(kinds));
  const retryLine = await page.textContent("#detail-steps li[data-kind=retry_later]");
  if (!retryLine.includes("aborted")) fail("the retry step does not say why: " + retryLine);
  if (!(await page.isHidden("#detail-retry"))) fail("a read job offers a retry");
  await page.locator("#job-detail").screenshot({ path: join(ARTIFACTS, `dashboard-job-${LANG}.png`) });
  await page.click("#detail-close");

  // The charts hold what /api/stats reports.
  await page.waitForSelector("#today[data-loaded]");
  const check = await page.evaluate(async () => {
    const st = await (await fetch("/api/stats?utcOffset=" + (-new Date().getTimezoneOffset()))).json();
    const out = [];
    for (const [id, buckets] of [["chart-hours", st.hours], ["chart-days", st.days]]) {
      const chart = Chart.getChart(document.getElementById(id));
      if (!chart) { out.push(id + " not drawn"); continue; }
      ["sent", "delivered", "read", "failed"].forEach((k, i) => {
        const drawn = JSON.stringify(chart.data.datasets[i].data), api = JSON.stringify(buckets.map((b) => b[k]));
        if (drawn !== api) out.push(`${id} ${k}: drawn ${drawn}, reported ${api}`);
      });
    }
    return { out, lastDay: st.lastDay };
  });
  if (check.out.length) fail(check.out.join("; "));
  if (check.lastDay.sent !== 2 || check.lastDay.read !== 1 || check.lastDay.failed !== 1)
    fail("the day's totals: " + JSON.stringify(check.lastDay));
  const reason = await page.textContent("#reasons li");
  if (!reason.startsWith("invalid_argument")) fail("the failure reasons: " + reason);
  await page.locator("#today").screenshot({ path: join(ARTIFACTS, `dashboard-today-${LANG}.png`) });

  // On a phone's width the charts still fit the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const width = await page.evaluate(() => document.getElementById("chart-hours").getBoundingClientRect().width);
  if (width > 390) fail("the chart is wider than a phone: " + width);

  // Last, with RETRY_FAILED: the failed job is sent again from its view.
  if (process.env.RETRY_FAILED) {
    await page.setViewportSize({ width: 1280, height: 1000 });
    await page.click(`#found tr[data-id="${FAILED}"]`);
    await page.waitForSelector("#job-detail[open] #detail-steps li[data-kind=failed]");
    await page.click("#detail-retry");
    await page.waitForSelector("#job-detail[open] #detail-steps li[data-kind=operator_retry]");
    await page.click("#detail-close");
  }

  const blocked = await violations(page);
  if (blocked.length) fail(`CSP violations: ${blocked.join(", ")}`);
  console.log("OK");
}

main().then(async () => { await browser.close(); process.exit(0); }, async (e) => {
  console.error(e);
  if (browser) await browser.close();
  process.exit(1);
});
