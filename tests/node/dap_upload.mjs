// Upload real DAP-09 reports with the independent divviup-ts client (@divviup/dap 0.9.1).
//
// Input (stdin, JSON):
//   { "leader": URL, "helper": URL,
//     "tasks": [ { "id": base64url task id, "timePrecisionSeconds": n,
//                  "vdaf": { "type": "count" | "sum" | "histogram" | "sumVec", ...params },
//                  "measurements": [ ... ] } ] }
// Measurements are JSON values of the VDAF's type (count: boolean, sum/histogram: number,
// sumVec: number[]). Each one goes through Task#sendMeasurement, i.e. the client fetches both
// hpke_config lists, shards, seals and PUTs the Report to the Leader.
// Output (stdout, JSON): { "uploaded": [ { "id": task id, "reports": n } ] }.
// Any failure: message on stderr, exit status 1.

import { Task } from "@divviup/dap";

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

async function main() {
  const plan = await readStdin();
  const uploaded = [];
  for (const spec of plan.tasks) {
    const task = new Task({
      ...spec.vdaf,
      id: spec.id,
      leader: plan.leader,
      helper: plan.helper,
      timePrecisionSeconds: spec.timePrecisionSeconds,
    });
    for (const measurement of spec.measurements) {
      await task.sendMeasurement(measurement);
    }
    uploaded.push({ id: spec.id, reports: spec.measurements.length });
  }
  process.stdout.write(JSON.stringify({ uploaded }) + "\n");
}

main().catch((error) => {
  process.stderr.write(`dap_upload.mjs: ${error?.stack ?? error}\n`);
  process.exit(1);
});
