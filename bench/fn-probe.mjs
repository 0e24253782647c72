// Timing helpers for bench/functions.sh (run with the host's node):
//   node fn-probe.mjs bare-start PORT N      — a bare `node` server start → first response, N times
//   node fn-probe.mjs first-byte EDGE HOST PATH — one GET's time to first byte
//   node fn-probe.mjs many EDGE HOST N SECONDS — N functions, each called once a second
// Each prints one JSON line.
import http from "node:http";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [mode, ...args] = process.argv.slice(2);
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(s.length * p))]; };

function get(port, host, path) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const req = http.get({ host: "127.0.0.1", port, path, headers: { host }, agent: false }, (res) => {
      const firstByte = Number(process.hrtime.bigint() - started) / 1e6;
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode, ms: firstByte }));
    });
    req.on("error", reject);
  });
}

if (mode === "bare-start") {
  const [port, n] = [Number(args[0]), Number(args[1])];
  const file = join(tmpdir(), `bare-${process.pid}.mjs`);
  writeFileSync(file, `import http from 'node:http'; http.createServer((req, res) => res.end('hello world')).listen(${port}, '127.0.0.1')`);
  const times = [];
  for (let i = 0; i < n; i++) {
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, [file], { stdio: "ignore", env: { PATH: process.env.PATH } });
    for (;;) {
      try {
        const r = await get(port, "localhost", "/");
        if (r.status === 200) break;
      } catch {}
      await new Promise((r) => setTimeout(r, 1));
    }
    times.push(Number(process.hrtime.bigint() - started) / 1e6);
    child.kill("SIGKILL");
    await new Promise((r) => child.on("exit", r));
  }
  console.log(JSON.stringify({ median_ms: median(times), all: times.map((t) => +t.toFixed(1)) }));
} else if (mode === "first-byte") {
  const r = await get(Number(args[0]), args[1], args[2]);
  console.log(JSON.stringify(r));
} else if (mode === "many") {
  const [port, host, n, seconds] = [Number(args[0]), args[1], Number(args[2]), Number(args[3])];
  const lat = [];
  let bad = 0;
  const pending = [];
  const started = Date.now();
  for (let s = 0; s < seconds; s++) {
    for (let i = 0; i < n; i++) {
      const at = started + s * 1000 + (i * 1000) / n;
      pending.push(
        new Promise((r) => setTimeout(r, Math.max(0, at - Date.now())))
          .then(() => get(port, host, `/api/f${i}`))
          .then((r) => { lat.push(r.ms); if (r.status !== 200) bad++; }, () => bad++),
      );
    }
  }
  await Promise.all(pending);
  console.log(JSON.stringify({ requests: lat.length + bad, non_200: bad, p50_ms: pct(lat, 0.5), p99_ms: pct(lat, 0.99) }));
} else {
  console.error("usage: fn-probe.mjs bare-start|first-byte|many …");
  process.exit(2);
}
