// Another web page against the dashboard, in headless Chromium (Debian's
// /usr/bin/chromium through playwright-core). A page served from another loopback
// port tries to reset the WhatsApp session, enqueue a message, pause the queue and
// dismiss the dispatcher's notice (fetch with text/plain and JSON, and HTML form posts), to open the live feed (the
// official socket.io-client over WebSocket and over polling, and a raw WebSocket),
// to read the status, and to frame the dashboard. Then the dashboard itself, in the
// same browser, still works, with no Content-Security-Policy violation.
// Env: BASE (http://127.0.0.1:port), PASSWORD (password mode: the browser logs in
// first, so its session cookie goes along with every attack, as the ports make the
// two pages same-site), NOTICE (the id of the dispatcher's notice), CHROMIUM
// (optional).
// Talks to the test that runs it: prints `RESULT <what>` for each attempt and
// `STEP <name> [arg]`; at `STEP attacked` it waits for a line on stdin while the test
// checks that nothing happened.
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { launch, step, violations } from "./browser.mjs";

const BASE = process.env.BASE;
const PASSWORD = process.env.PASSWORD || "";
const SOCKET_IO = readFileSync(new URL("./node_modules/socket.io-client/dist/socket.io.min.js", import.meta.url));
const NOTICE = process.env.NOTICE || "";
const TARGETS = ["/api/gateway/logout", "/api/messages", "/api/queue/pause", "/api/notices/dismiss"];
// What each target is sent: the body that would do something there.
const BODIES = Object.fromEntries(TARGETS.map((path) => [path, path === "/api/notices/dismiss"
  ? JSON.stringify({ service: "dispatcher", id: NOTICE })
  : JSON.stringify({ to: "081234567890", message: "sent by another page" })]));
// What the other page runs: every attempt is written down, none is trusted to fail.
function attack([base, targets, bodies]) {
  const results = [];
  const note = (line) => results.push(line);
  async function attempt(name, path, init) {
    try {
      const r = await fetch(base + path, init);
      note(`${name} answered type=${r.type} status=${r.status}`);
    } catch (e) {
      note(`${name} failed ${e.name}`);
    }
  }
  function feed(transports) {
    return new Promise((resolve) => {
      const socket = io(base, { transports, reconnection: false, forceNew: true, withCredentials: true });
      let finished = false;
      const done = (line) => { if (finished) return; finished = true; note(line); socket.close(); resolve(); };
      socket.on("snapshot", () => note(`SNAPSHOT over ${transports[0]}`));
      socket.on("connect", () => setTimeout(() => done(`SOCKET ${transports[0]} connected`), 1000));
      socket.on("connect_error", (e) => done(`SOCKET ${transports[0]} connect_error ${e.message}`));
      setTimeout(() => done(`SOCKET ${transports[0]} no answer`), 10000);
    });
  }
  function rawWebSocket() {
    return new Promise((resolve) => {
      const ws = new WebSocket(base.replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket");
      ws.onopen = () => { note("RAW WEBSOCKET open"); ws.send("40"); };
      ws.onmessage = (m) => note("RAW WEBSOCKET message " + String(m.data).slice(0, 40));
      ws.onerror = () => note("RAW WEBSOCKET error");
      ws.onclose = (e) => { note(`RAW WEBSOCKET closed ${e.code}`); resolve(); };
      setTimeout(() => { note("RAW WEBSOCKET still open"); ws.close(); resolve(); }, 5000);
    });
  }
  return (async () => {
    for (const path of targets) {
      const body = bodies[path];
      await attempt(`FETCH text/plain ${path}`, path, {
        method: "POST", mode: "no-cors", credentials: "include", headers: { "Content-Type": "text/plain" }, body,
      });
      await attempt(`FETCH form ${path}`, path, {
        method: "POST", mode: "no-cors", credentials: "include", body: new URLSearchParams({ data: body }),
      });
      await attempt(`FETCH json ${path}`, path, {
        method: "POST", credentials: "include", headers: { "Content-Type": "application/json" }, body,
      });
    }
    await attempt("READ /api/status", "/api/status", { credentials: "include" });
    await feed(["websocket"]);
    await feed(["polling"]);
    await rawWebSocket();
    return results;
  })();
}

function attackPage(base) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>another site</title></head><body>
<iframe id="framed" src="${base}/" width="900" height="600"></iframe>
<script src="/socket.io.min.js"></script>
</body></html>`;
}

// A top-level form post of a JSON-looking body, as a page can send it with no script
// at all (the enctype text/plain trick: the body is `name=value`).
function formPage(base, path) {
  const name = path === "/api/notices/dismiss"
    ? `{"service":"dispatcher","id":"${NOTICE}","pad":"`
    : `{"to":"081234567890","message":"sent by a form","id":"`;
  return `<!doctype html><html><head><meta charset="utf-8"></head><body>
<form id="f" method="POST" action="${base}${path}" enctype="text/plain">
<input type="hidden" name='${name}' value='"}'>
</form><script>document.getElementById("f").submit();</script></body></html>`;
}

const other = createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  if (url.pathname === "/socket.io.min.js") {
    res.writeHead(200, { "content-type": "text/javascript" }).end(SOCKET_IO);
  } else if (url.pathname === "/form") {
    res.writeHead(200, { "content-type": "text/html" }).end(formPage(BASE, url.searchParams.get("path")));
  } else {
    res.writeHead(200, { "content-type": "text/html" }).end(attackPage(BASE));
  }
});
await new Promise((resolve) => other.listen(0, "127.0.0.1", resolve));
const OTHER = `http://127.0.0.1:${other.address().port}`;

let browser;
async function main() {
  browser = await launch();
  const { context } = browser;
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(20000);
  page.on("pageerror", (e) => console.error("page error: " + e.message));

  if (PASSWORD) {
    await page.goto(BASE + "/login?lang=en");
    await page.fill("#password", PASSWORD);
    await page.click("#login");
    await page.waitForSelector("#live[data-state=on]");
    console.log("RESULT logged in");
  }

  console.log(`RESULT other page at ${OTHER}`);
  await page.goto(OTHER + "/");
  const results = await page.evaluate(attack, [BASE, TARGETS, BODIES]);
  for (const line of results) console.log("RESULT " + line);

  const framed = page.frames().find((f) => f !== page.mainFrame());
  const dashboardInFrame = framed ? Boolean(await framed.$("#whatsapp").catch(() => null)) : false;
  console.log(`RESULT IFRAME dashboard=${dashboardInFrame} url=${framed ? framed.url() : "none"}`);

  for (const path of TARGETS) {
    const form = await context.newPage();
    const answer = form.waitForResponse((r) => r.url().startsWith(BASE) && r.request().method() === "POST");
    await form.goto(`${OTHER}/form?path=${encodeURIComponent(path)}`);
    const response = await answer;
    const text = await response.text().catch(() => "");
    console.log(`RESULT FORM ${path} status=${response.status()} ${text.slice(0, 60)}`);
    await form.close();
  }
  await step("attacked", "", true);

  // The dashboard itself, in the same browser.
  const dashboard = await context.newPage();
  dashboard.setDefaultTimeout(20000);
  let frames = 0;
  dashboard.on("websocket", (ws) => ws.on("framereceived", () => { frames += 1; }));
  await dashboard.goto(BASE + "/?lang=en");
  await dashboard.waitForSelector("#live[data-state=on]");
  await dashboard.waitForSelector("#qr svg path");
  console.log("RESULT DASHBOARD qr shown");
  await dashboard.click("#pause-button");
  await dashboard.waitForFunction(() => document.querySelector("#queue-state").textContent.startsWith("Paused"));
  await dashboard.fill("#send-form input[name=to]", "0812-3456-7890");
  await dashboard.fill("#send-form textarea[name=message]", "sent from the dashboard");
  await dashboard.click("#send-form button[type=submit]");
  const row = await dashboard.waitForSelector("#jobs tbody tr[data-status=pending]");
  const blocked = await violations(dashboard);
  console.log(`RESULT DASHBOARD websocket frames=${frames > 0 ? "some" : "none"}`);
  console.log(`RESULT DASHBOARD csp violations=${blocked.length} ${blocked.join(", ")}`);
  await step("dashboard", await row.getAttribute("data-id"));
}

main()
  .then(async () => { await browser.close(); other.close(); process.exit(0); })
  .catch(async (e) => {
    console.error("FAIL " + e.message);
    if (browser) await browser.close();
    process.exit(1);
  });
