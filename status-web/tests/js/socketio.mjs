// Checks the live feed with the official socket.io-client: refused without a
// session cookie, then the snapshot on connect and an update after a change.
// Env: BASE (http://127.0.0.1:port), PASSWORD. Prints one line per check; exits
// non-zero on the first failure.
import { io } from "socket.io-client";

const BASE = process.env.BASE;
const PASSWORD = process.env.PASSWORD;
const fail = (msg) => { console.error("FAIL " + msg); process.exit(1); };
const within = (ms, what, promise) => Promise.race([
  promise,
  new Promise((_, reject) => setTimeout(() => reject(new Error("timed out: " + what)), ms)),
]);

function refused(transports, extraHeaders) {
  return new Promise((resolve, reject) => {
    const socket = io(BASE, { transports, reconnection: false, extraHeaders, forceNew: true });
    socket.on("connect", () => { socket.close(); reject(new Error("connected without a session over " + transports)); });
    socket.on("snapshot", () => reject(new Error("got a snapshot without a session")));
    socket.on("connect_error", (err) => { socket.close(); resolve(err.message); });
  });
}

async function main() {
  for (const transports of [["polling"], ["websocket"]]) {
    const why = await within(10000, "refusal", refused(transports, {}));
    console.log(`REFUSED ${transports[0]} without cookie: ${why}`);
  }
  const forged = await within(10000, "refusal", refused(["polling"], { cookie: "abtrack_session=forged" }));
  console.log(`REFUSED forged cookie: ${forged}`);

  const login = await fetch(BASE + "/login", {
    method: "POST", redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ password: PASSWORD }).toString(),
  });
  const cookie = (login.headers.get("set-cookie") || "").split(";")[0];
  if (login.status !== 303 || !cookie.startsWith("abtrack_session=")) fail("login answered " + login.status);

  for (const transports of [["polling", "websocket"], ["websocket"]]) {
    const socket = io(BASE, { transports, reconnection: false, extraHeaders: { cookie }, forceNew: true });
    const snapshots = [];
    let notify = () => {};
    socket.on("snapshot", (s) => { snapshots.push(s); notify(); });
    const next = (what, test) => within(15000, what, new Promise((resolve) => {
      const check = () => { const s = snapshots.find(test); if (s) resolve(s); };
      notify = check; check();
    }));
    await within(10000, "connect", new Promise((resolve, reject) => {
      socket.on("connect", resolve);
      socket.on("connect_error", (e) => reject(new Error("connect_error with cookie: " + e.message)));
    }));
    const first = await next("first snapshot", () => true);
    for (const key of ["services", "gateway", "queue", "logger", "recentJobs"]) {
      if (!(key in first)) fail("snapshot without " + key);
    }
    if (!first.services.gateway.up) fail("first snapshot: gateway not up");
    console.log(`SNAPSHOT ${transports.join("+")} gateway=${first.gateway.status} qr=${Boolean(first.qrSvg)} jobs=${first.recentJobs.length}`);

    const id = "sio-" + transports.join("-") + "-" + Date.now();
    const enqueue = await fetch(BASE + "/api/messages", {
      method: "POST", headers: { cookie, "content-type": "application/json" },
      body: JSON.stringify({ id, to: "081234567890", message: "socket.io probe" }),
    });
    if (enqueue.status !== 201) fail("enqueue answered " + enqueue.status);
    const update = await next("update with " + id, (s) => s.recentJobs.some((j) => j.id === id));
    const job = update.recentJobs.find((j) => j.id === id);
    if ("message" in job) fail("the message text was broadcast");
    console.log(`UPDATE ${transports.join("+")} job=${id} status=${job.status} to=${job.to} transport=${socket.io.engine.transport.name}`);
    if (transports.length === 1) {
      // Logging out closes the feed of that session.
      const closed = new Promise((resolve) => socket.on("disconnect", resolve));
      const out = await fetch(BASE + "/logout", { method: "POST", redirect: "manual", headers: { cookie } });
      if (out.status !== 303) fail("logout answered " + out.status);
      const reason = await within(10000, "disconnect after logout", closed);
      console.log(`LOGGED OUT disconnect: ${reason}`);
      const again = await within(10000, "refusal", refused(["websocket"], { cookie }));
      console.log(`REFUSED after logout: ${again}`);
    }
    socket.close();
  }
  console.log("OK");
  process.exit(0);
}

main().catch((e) => fail(e.message));
