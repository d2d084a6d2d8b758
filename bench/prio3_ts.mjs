// Times @divviup/prio3 0.8.0 (divviup-ts) shard and full two-party preparation
// for the variants that bench/prio3.py measures. Prints one JSON object per
// variant on stdout. Usage: node bench/prio3_ts.mjs [cpu-seconds-per-phase] [variant ...]
// Rates are calls per CPU second of this process, after a JIT warm-up.
//
// Preparation = prepareInit(Leader) + prepareInit(Helper) +
// unshardPreparationShares + prepareNext x2, on the decoded objects that
// shard() returns (divviup-ts has no decoders for input shares, so the Helper's
// share arrives already expanded: this favours divviup-ts slightly).
import { randomBytes } from "node:crypto";
import {
  Prio3Count,
  Prio3Histogram,
  Prio3Sum,
  Prio3SumVec,
} from "@divviup/prio3";

const VARIANTS = {
  count: () => [new Prio3Count({ shares: 2 }), () => Math.random() < 0.5],
  sum32: () => [
    new Prio3Sum({ shares: 2, bits: 32 }),
    () => Math.floor(Math.random() * 2 ** 32),
  ],
  sumvec100: () => [
    new Prio3SumVec({ shares: 2, length: 100, bits: 8, chunkLength: 10 }),
    () => Array.from({ length: 100 }, () => Math.floor(Math.random() * 256)),
  ],
  histogram100: () => [
    new Prio3Histogram({ shares: 2, length: 100, chunkLength: 10 }),
    () => Math.floor(Math.random() * 100),
  ],
  histogram1000: () => [
    new Prio3Histogram({ shares: 2, length: 1000, chunkLength: 32 }),
    () => Math.floor(Math.random() * 1000),
  ],
};

function cpuSeconds() {
  // User + system CPU time of this process: less sensitive to other load on
  // the machine than wall time (bench/prio3.py measures Python the same way).
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

async function timeIt(seconds, fn) {
  // Warm up (the JIT needs it), then run until `seconds` of CPU time have
  // been used (at least 3 calls). Returns calls per CPU second.
  const warmUntil = cpuSeconds() + Math.min(0.5, seconds / 2);
  while (cpuSeconds() < warmUntil) await fn();
  let n = 0;
  const start = cpuSeconds();
  let elapsed = 0;
  while (n < 3 || elapsed < seconds) {
    await fn();
    n += 1;
    elapsed = cpuSeconds() - start;
  }
  return n / elapsed;
}

async function bench(name, seconds) {
  const [vdaf, gen] = VARIANTS[name]();
  const verifyKey = randomBytes(16);
  const reports = [];
  for (let i = 0; i < 8; i++) {
    const nonce = randomBytes(16);
    const { publicShare, inputShares } = await vdaf.shard(
      gen(),
      nonce,
      randomBytes(vdaf.randSize),
    );
    reports.push({ nonce, publicShare, inputShares });
  }
  let i = 0;
  const shardsPerS = await timeIt(seconds, async () => {
    await vdaf.shardEncoded(gen(), randomBytes(16), randomBytes(vdaf.randSize));
  });
  const prepsPerS = await timeIt(seconds, async () => {
    const { nonce, publicShare, inputShares } = reports[i++ % reports.length];
    const states = [];
    const shares = [];
    for (let agg = 0; agg < 2; agg++) {
      // prepareInit writes into publicShare.jointRandParts: give it a copy.
      const pub = { jointRandParts: [...publicShare.jointRandParts] };
      const { preparationState, preparationShare } = await vdaf.prepareInit(
        verifyKey, agg, null, nonce, pub, inputShares[agg],
      );
      states.push(preparationState);
      shares.push(preparationShare);
    }
    const msg = await vdaf.unshardPreparationShares(null, shares);
    for (const st of states) {
      const out = vdaf.prepareNext(st, msg);
      if (!("outputShare" in out)) throw new Error("unexpected continuation");
    }
  });
  return { variant: name, shards_per_s: shardsPerS, preps_per_s: prepsPerS };
}

const seconds = Number(process.argv[2] ?? "2");
const names = process.argv.length > 3 ? process.argv.slice(3) : Object.keys(VARIANTS);
for (const name of names) {
  if (!(name in VARIANTS)) {
    console.error(`unknown variant ${name}; known: ${Object.keys(VARIANTS).join(", ")}`);
    process.exit(2);
  }
  console.log(JSON.stringify(await bench(name, seconds)));
}
