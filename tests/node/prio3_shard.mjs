// Shard measurements with the independent divviup-ts Prio3 (@divviup/prio3 0.8.0).
//
// Input (stdin, JSON):
//   { "tasks": [ { "vdaf": <interop VDAF object, decimal strings or numbers>,
//                  "measurements": [ ... ] } ] }
// Measurements use the interop encodings: Prio3Count "0"/"1", Prio3Sum a decimal
// string (passed to divviup-ts as a BigInt, so 64-bit values stay exact),
// Prio3Histogram a decimal string (bucket index), Prio3SumVec an array of
// decimal strings (JS numbers: divviup-ts shifts them with 32-bit operators).
// Nonces and sharding randomness come from node's CSPRNG.
// Output (stdout, JSON):
//   { "tasks": [ { "reports": [ { "nonce": hex, "public_share": hex,
//                                 "input_shares": [hex, hex] } ] } ] }
// Any failure: message on stderr, exit status 1.

import { randomBytes } from "node:crypto";
import {
  Prio3Count,
  Prio3Histogram,
  Prio3Sum,
  Prio3SumVec,
} from "@divviup/prio3";

function int(value) {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new Error(`not a safe integer: ${value}`);
  return n;
}

function build(vdaf) {
  switch (vdaf.type) {
    case "Prio3Count":
      return [new Prio3Count({ shares: 2 }), (m) => String(m) === "1"];
    case "Prio3Sum":
      return [new Prio3Sum({ shares: 2, bits: int(vdaf.bits) }), (m) => BigInt(m)];
    case "Prio3SumVec":
      return [
        new Prio3SumVec({
          shares: 2,
          length: int(vdaf.length),
          bits: int(vdaf.bits),
          chunkLength: int(vdaf.chunk_length),
        }),
        (m) => m.map(int),
      ];
    case "Prio3Histogram":
      return [
        new Prio3Histogram({
          shares: 2,
          length: int(vdaf.length),
          chunkLength: int(vdaf.chunk_length),
        }),
        int,
      ];
    default:
      throw new Error(`unsupported VDAF type ${vdaf.type}`);
  }
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

async function main() {
  const plan = await readStdin();
  const tasks = [];
  for (const spec of plan.tasks) {
    const [vdaf, convert] = build(spec.vdaf);
    const reports = [];
    for (const measurement of spec.measurements) {
      const nonce = randomBytes(vdaf.nonceSize);
      const { publicShare, inputShares } = await vdaf.shardEncoded(
        convert(measurement),
        nonce,
        randomBytes(vdaf.randSize),
      );
      reports.push({
        nonce: nonce.toString("hex"),
        public_share: Buffer.from(publicShare).toString("hex"),
        input_shares: inputShares.map((s) => Buffer.from(s).toString("hex")),
      });
    }
    tasks.push({ reports });
  }
  process.stdout.write(JSON.stringify({ tasks }) + "\n");
}

main().catch((err) => {
  console.error(err?.stack ?? String(err));
  process.exit(1);
});
