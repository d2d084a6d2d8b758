// dap-faultrun's divviup-ts interop Client: the DAP interop test API's Client endpoints
// (draft-dcook-ppm-dap-interop-test-design-07 §4.3; ../../../shared/spec/interop-api.md §3.1)
// on top of the independent DAP-09 client library @divviup/dap 0.9.1 (npm, package-lock.json).
//
//   node peers/divviup-ts/client.mjs --host 127.0.0.1 --port 8080
//
// POST /internal/test/ready   -> 200 {}            (with or without a body)
// POST /internal/test/upload  -> 200 {"status": "success"} once the Leader accepted the report,
//                                200 {"status": "error", "error": "..."} otherwise;
//                                400 {"status": "error", ...} for a body that is not a JSON object
// /internal/test/<other>      -> 404 {"status": "error", "error": "unknown test API endpoint"}
//
// It answers like the reference Client (dap/roles/client.py): the same request checks, the
// report time is `time` (or now) rounded down to `time_precision`, HPKE configs are cached per
// task, and an `outdatedConfig` answer drops them and retries ONCE with a fresh report that
// keeps the same timestamp. (divviup-ts's own Task#sendMeasurement retry forgets the
// timestamp, interop-api.md §7, so this program drives generateReport / sendReport itself.)
// Everything DAP happens inside @divviup/dap: config fetch (exact Content-Type), config
// choice, Prio3 sharding (@divviup/prio3), HPKE sealing, report encoding, the PUT.
//
// divviup-ts limits (answered as status "error", never as wrong shares): Prio3SumVec needs
// bits <= 31 (divviup-ts splits elements with 32-bit shifts); Poplar1 is not implemented.

import http from "node:http";
import { Task } from "@divviup/dap";

const MAX_BODY = 1 << 20;
const DECIMAL = /^[0-9]+$/;

class RequestError extends Error {}

function parseArgs(argv) {
  const out = { host: "127.0.0.1", port: 8080 };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    const value = argv[i + 1];
    if (key === "--host" && value !== undefined) {
      out.host = value;
      i++;
    } else if (key === "--port" && value !== undefined && DECIMAL.test(value)) {
      out.port = Number(value);
      i++;
    } else {
      process.stderr.write(`usage: node client.mjs [--host 127.0.0.1] [--port 8080] (bad argument ${key})\n`);
      process.exit(2);
    }
  }
  return out;
}

// --- request checks (the reference Client's, dap/roles/client.py and dap/vdaf/params.py) -----

function uint(value, what) {
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  if (typeof value === "string" && DECIMAL.test(value)) return BigInt(value);
  throw new RequestError(`${what}: expected a decimal string, got ${JSON.stringify(value)}`);
}

function smallUint(value, what, low, high) {
  const n = uint(value, what);
  if (n < BigInt(low) || n > BigInt(high)) {
    throw new RequestError(`${what}: must be an integer in [${low}, ${high}], got ${n}`);
  }
  return Number(n);
}

const VDAF_PARAMS = {
  Prio3Count: [],
  Prio3Sum: ["bits"],
  Prio3SumVec: ["bits", "length", "chunk_length"],
  Prio3Histogram: ["length", "chunk_length"],
};
const BOUNDS = { bits: [1, 127], length: [1, 65536], chunk_length: [1, 65536] };

// interop VDAF object -> [divviup-ts Task spec, measurement parser, canonical key]
function vdafSpec(vdaf) {
  if (vdaf === null || typeof vdaf !== "object" || Array.isArray(vdaf)) {
    throw new RequestError("vdaf: expected an object");
  }
  const type = vdaf.type;
  if (type === "Poplar1") {
    throw new RequestError("vdaf.type: Poplar1 is not implemented by divviup-ts (@divviup/dap 0.9.1)");
  }
  const names = VDAF_PARAMS[type];
  if (names === undefined) {
    throw new RequestError(`vdaf.type: unsupported VDAF type ${JSON.stringify(type)}; known: ${Object.keys(VDAF_PARAMS).join(", ")}`);
  }
  const unknown = Object.keys(vdaf).filter((k) => k !== "type" && !names.includes(k)).sort();
  if (unknown.length) throw new RequestError(`vdaf: unexpected key(s) ${unknown.join(", ")} for ${type}`);
  const p = {};
  for (const name of names) {
    if (!(name in vdaf)) throw new RequestError(`vdaf.${name}: required for ${type}`);
    p[name] = smallUint(vdaf[name], `vdaf.${name}`, ...BOUNDS[name]);
  }
  const key = JSON.stringify([type, p.bits, p.length, p.chunk_length]);
  switch (type) {
    case "Prio3Count":
      return [{ type: "count" }, countMeasurement, key];
    case "Prio3Sum":
      return [{ type: "sum", bits: p.bits }, (m) => belowPow2(uint(m, "measurement"), p.bits, "measurement"), key];
    case "Prio3SumVec":
      if (p.length * p.bits > 65536) {
        throw new RequestError(`vdaf: length * bits must be at most 65536, got ${p.length}*${p.bits}`);
      }
      if (p.bits > 31) {
        throw new RequestError(`vdaf.bits: divviup-ts's Prio3SumVec needs bits <= 31 (32-bit shifts), got ${p.bits}`);
      }
      return [
        { type: "sumVec", bits: p.bits, length: p.length, chunkLength: p.chunk_length },
        (m) => sumVecMeasurement(m, p.length, p.bits),
        key,
      ];
    case "Prio3Histogram":
      return [
        { type: "histogram", length: p.length, chunkLength: p.chunk_length },
        (m) => Number(below(uint(m, "measurement"), BigInt(p.length), "measurement")),
        key,
      ];
  }
  throw new RequestError(`vdaf.type: unsupported VDAF type ${type}`);
}

function countMeasurement(m) {
  if (m === "0" || m === 0) return false;
  if (m === "1" || m === 1) return true;
  throw new RequestError(`measurement: Prio3Count takes "0" or "1", got ${JSON.stringify(m)}`);
}

function below(n, bound, what) {
  if (n >= bound) throw new RequestError(`${what}: ${n} is out of range [0, ${bound})`);
  return n;
}

function belowPow2(n, bits, what) {
  return below(n, 1n << BigInt(bits), what);
}

function sumVecMeasurement(m, length, bits) {
  if (!Array.isArray(m)) throw new RequestError(`measurement: expected an array of decimal strings, got ${JSON.stringify(m)}`);
  if (m.length !== length) throw new RequestError(`measurement: expected ${length} elements, got ${m.length}`);
  return m.map((v, i) => Number(belowPow2(uint(v, `measurement[${i}]`), bits, `measurement[${i}]`)));
}

function taskId(value) {
  if (typeof value !== "string" || !/^[A-Za-z0-9_-]+={0,2}$/.test(value)) {
    throw new RequestError("task_id: expected base64url");
  }
  const raw = Buffer.from(value.replace(/=+$/, ""), "base64url");
  if (raw.length !== 32) throw new RequestError(`task_id: expected 32 bytes, got ${raw.length}`);
  return raw.toString("base64url");
}

function absoluteUrl(value, what) {
  if (typeof value !== "string") throw new RequestError("leader/helper: expected URLs");
  try {
    return new URL(value).toString();
  } catch {
    throw new RequestError(`${what}: not an absolute URL: ${JSON.stringify(value)}`);
  }
}

function parseUpload(body) {
  const id = taskId(body.task_id);
  const leader = absoluteUrl(body.leader, "leader");
  const helper = absoluteUrl(body.helper, "helper");
  const [spec, parseMeasurement, vdafKey] = vdafSpec(body.vdaf);
  let measurement;
  try {
    measurement = parseMeasurement(body.measurement);
  } catch (error) {
    if (error instanceof RequestError) throw new RequestError(error.message.startsWith("measurement") ? error.message : `measurement: ${error.message}`);
    throw error;
  }
  const tp = body.time_precision;
  if (typeof tp !== "number" || !Number.isSafeInteger(tp) || tp < 1) {
    throw new RequestError("time_precision: expected a positive integer");
  }
  let t = body.time;
  if (t === undefined || t === null) {
    t = Math.floor(Date.now() / 1000);
  } else if (typeof t !== "number" || !Number.isSafeInteger(t) || t < 0) {
    throw new RequestError("time: expected a non-negative integer");
  }
  return { id, leader, helper, spec, measurement, tp, time: t - (t % tp), vdafKey };
}

// --- uploading ------------------------------------------------------------------------------

// One divviup-ts Task per (task, aggregators, VDAF, time precision): it caches both HPKE
// config lists, as the reference Client caches them per Aggregator and task.
const tasks = new Map();

function taskFor(req) {
  const key = JSON.stringify([req.id, req.leader, req.helper, req.vdafKey, req.tp]);
  let task = tasks.get(key);
  if (task === undefined) {
    task = new Task({ ...req.spec, id: req.id, leader: req.leader, helper: req.helper, timePrecisionSeconds: req.tp });
    tasks.set(key, task);
  }
  return task;
}

function describe(error) {
  if (error && typeof error === "object" && "shortType" in error) {
    // DAPError: the Leader's (or an hpke_config endpoint's) problem document
    return `${error.clientContext}: ${error.shortType}: HTTP ${error.status} ${error.title ?? ""} ${error.detail ?? ""}`.trim();
  }
  const cause = error?.cause ? ` (${error.cause.code ?? error.cause.message ?? error.cause})` : "";
  return `${error?.message ?? error}${cause}`;
}

async function upload(body) {
  let req;
  try {
    req = parseUpload(body);
  } catch (error) {
    if (error instanceof RequestError) return { status: "error", error: error.message };
    throw error;
  }
  const task = taskFor(req);
  const options = { timestamp: new Date(req.time * 1000) };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const report = await task.generateReport(req.measurement, options);
      await task.sendReport(report);
      return { status: "success" };
    } catch (error) {
      if (attempt === 0 && error?.shortType === "outdatedConfig") {
        task.invalidateHpkeConfig();
        continue;
      }
      return { status: "error", error: describe(error) };
    }
  }
  return { status: "error", error: "unreachable" };
}

// --- HTTP -------------------------------------------------------------------------------------

function send(res, status, obj) {
  const data = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": data.length });
  res.end(data);
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) throw new RequestError("request body too large");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

async function handle(req, res) {
  const path = new URL(req.url, "http://x").pathname;
  if (path === "/internal/test/ready" && (req.method === "POST" || req.method === "GET")) {
    await readBody(req).catch(() => "");
    return send(res, 200, {});
  }
  if (path === "/internal/test/upload" && req.method === "POST") {
    let body;
    try {
      const text = await readBody(req);
      body = JSON.parse(text);
    } catch (error) {
      return send(res, 400, { status: "error", error: `body is not JSON: ${error.message}` });
    }
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      return send(res, 400, { status: "error", error: "body must be a JSON object" });
    }
    return send(res, 200, await upload(body));
  }
  req.resume();
  return send(res, 404, { status: "error", error: "unknown test API endpoint" });
}

const args = parseArgs(process.argv.slice(2));
const server = http.createServer((req, res) => {
  handle(req, res).catch((error) => {
    process.stderr.write(`divviup-ts client: ${error?.stack ?? error}\n`);
    if (!res.headersSent) send(res, 500, { status: "error", error: String(error?.message ?? error) });
    else res.destroy();
  });
});
server.keepAliveTimeout = 30_000;
server.listen(args.port, args.host, () => {
  process.stderr.write(`${JSON.stringify({ event: "start", role: "client", impl: "divviup-ts", dap: Task.protocolVersion, host: args.host, port: args.port, note: "the /internal/test API is for testing only" })}\n`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 500).unref();
  });
}
