// Benchmark client: CLIENTS Socket.IO connections to BASE (status-web without a
// password, on loopback); each round enqueues one job and times how long until
// every client has an update that shows it. Talks to the driver
// (e2e/examples/fanout.rs): prints `CONNECTED <ms>`, waits for a line on stdin,
// prints `ROUND <total ms> <spread ms>` per round, then `DONE`.
import { io } from "socket.io-client";
import { createInterface } from "node:readline";

const BASE = process.env.BASE;
const CLIENTS = Number(process.env.CLIENTS || 100);
const ROUNDS = Number(process.env.ROUNDS || 20);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const within = (ms, what, promise) => Promise.race([promise,
  new Promise((_, reject) => setTimeout(() => reject(new Error("timed out: " + what)), ms))]);

let waiting = null; // { id, seen: Set, first, resolve }
const sockets = [];
const started = performance.now();
await within(30000, "all clients connected", Promise.all(Array.from({ length: CLIENTS }, (_, n) => new Promise((resolve, reject) => {
  const socket = io(BASE, { transports: ["websocket"], forceNew: true, reconnection: false });
  sockets.push(socket);
  let first = true;
  socket.on("connect_error", (e) => reject(e));
  socket.on("snapshot", (s) => {
    if (first) { first = false; resolve(); }
    const w = waiting;
    if (w && !w.seen.has(n) && s.recentJobs.some((j) => j.id === w.id)) {
      const now = performance.now();
      if (w.seen.size === 0) w.first = now;
      w.seen.add(n);
      if (w.seen.size === CLIENTS) w.resolve(now);
    }
  });
}))));
console.log(`CONNECTED ${(performance.now() - started).toFixed(1)}`);
await lines.next();

for (let round = 0; round < ROUNDS; round++) {
  const id = `fanout-${Date.now()}-${round}`;
  const done = new Promise((resolve) => { waiting = { id, seen: new Set(), first: 0, resolve }; });
  const t0 = performance.now();
  const r = await fetch(BASE + "/api/messages", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ id, to: "081234567890", message: "fan-out benchmark" }) });
  if (r.status !== 201) throw new Error("enqueue answered " + r.status);
  const last = await within(10000, "round " + round, done);
  console.log(`ROUND ${(last - t0).toFixed(2)} ${(last - waiting.first).toFixed(2)}`);
}
console.log("DONE");
for (const s of sockets) s.close();
process.exit(0);
