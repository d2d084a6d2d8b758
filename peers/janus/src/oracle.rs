//! prio 0.16 (VDAF-08) as a second oracle next to the Python `dap.vdaf`: JSON on stdin,
//! JSON on stdout, byte strings in hex. Every command takes the interop VDAF object
//! (`{"type": "Prio3Sum", "bits": "8"}`, interop-api.md §2.1).
//!
//! - `shard`:   `{"vdaf", "measurements": [interop measurement...], "nonces"?: [hex]}`
//!   -> `{"reports": [{"nonce", "public_share", "input_shares": [leader, helper]}]}`
//!   (prio draws the sharding randomness; nonces are random unless given)
//! - `prepare`: `{"vdaf", "verify_key", "agg_param"?: hex, "reports": [{"nonce", "public_share",
//!   "input_shares"}]}` -> `{"reports": [{"prep_shares": [[l, h] per round],
//!   "prep_messages": [...], "out_shares": [l, h]} | {"error"}], "agg_shares": [l, h],
//!   "report_count"}`: both Aggregators' preparation, every round, then aggregation
//!   of the reports that prepared
//! - `unshard`: `{"vdaf", "agg_param"?: hex, "agg_shares": [l, h], "report_count"}` -> `{"result"}`
//!   (interop encoding)
//! - `check-prio3`: `{"vdaf", "vectors": [<VDAF-08 test vector object>...]}` -> `{"results":
//!   [{"ok": true} | {"ok": false, "error"}]}`: prio's own test-vector checker
//!   (`prio::vdaf::prio3_test`, feature test-util) shards with the vector's nonce and
//!   rand and compares every byte (public share, input shares, prep shares, prep
//!   message, output shares, aggregate shares) and the aggregate result. It is the
//!   only public way to shard with given randomness in prio 0.16.
//! - `bench SECONDS VARIANT...` (arguments, no stdin): shards/s and full two-party
//!   preparations/s per CPU second, one JSON line per variant (bench/prio3.py).

use crate::{
    vdafs::{agg_param, Interop, VdafSpec},
    with_vdaf,
};
use prio::{
    codec::{Decode, Encode, ParameterizedDecode},
    vdaf::{
        self, prio3::Prio3, prio3_test::check_test_vec_custom_de, Aggregator, Client, Collector, PrepareTransition,
    },
};
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::{json, Value};
use std::{collections::HashMap, fmt::Debug, io::Read};

fn hex_field(v: &Value, what: &str) -> Result<Vec<u8>, String> {
    hex::decode(v.as_str().ok_or_else(|| format!("{what}: expected a hex string"))?).map_err(|e| format!("{what}: {e}"))
}

fn hex_param(body: &Value) -> Result<Value, String> {
    // the oracle takes agg_param as hex; agg_param() reads base64url
    Ok(match body.get("agg_param") {
        None | Some(Value::Null) => Value::Null,
        Some(v) => json!(crate::vdafs::b64e(&hex_field(v, "agg_param")?)),
    })
}

fn nonce(v: &Value) -> Result<[u8; 16], String> {
    hex_field(v, "nonce")?
        .try_into()
        .map_err(|_| "nonce: expected 16 bytes".to_owned())
}

type Prepared<V> = (Vec<[Vec<u8>; 2]>, Vec<Vec<u8>>, [<V as vdaf::Vdaf>::OutputShare; 2]);

/// Both Aggregators' preparation of one report, every round.
fn prepare_one<V>(
    vdaf: &V,
    verify_key: &[u8; 16],
    param: &V::AggregationParam,
    report: &Value,
) -> Result<Prepared<V>, String>
where
    V: Aggregator<16, 16>,
{
    let nonce = nonce(report.get("nonce").unwrap_or(&Value::Null))?;
    let public_share = V::PublicShare::get_decoded_with_param(
        vdaf,
        &hex_field(report.get("public_share").unwrap_or(&Value::Null), "public_share")?,
    )
    .map_err(|e| format!("public_share: {e}"))?;
    let shares = report
        .get("input_shares")
        .and_then(Value::as_array)
        .filter(|a| a.len() == 2)
        .ok_or("input_shares: expected two hex strings")?;
    let mut states = Vec::new();
    let mut prep_shares = Vec::new();
    for (agg_id, share) in shares.iter().enumerate() {
        let input_share = V::InputShare::get_decoded_with_param(&(vdaf, agg_id), &hex_field(share, "input_share")?)
            .map_err(|e| format!("input_shares[{agg_id}]: {e}"))?;
        let (state, prep_share) = vdaf
            .prepare_init(verify_key, agg_id, param, &nonce, &public_share, &input_share)
            .map_err(|e| format!("prepare_init({agg_id}): {e}"))?;
        states.push(state);
        prep_shares.push(prep_share);
    }
    let mut rounds = Vec::new();
    let mut messages = Vec::new();
    loop {
        let enc = |s: &V::PrepareShare| s.get_encoded().map_err(|e| e.to_string());
        rounds.push([enc(&prep_shares[0])?, enc(&prep_shares[1])?]);
        let msg = vdaf
            .prepare_shares_to_prepare_message(param, prep_shares.drain(..))
            .map_err(|e| format!("prepare_shares_to_prepare_message: {e}"))?;
        messages.push(msg.get_encoded().map_err(|e| e.to_string())?);
        let mut outs = Vec::new();
        let mut next_states = Vec::new();
        for state in states.drain(..) {
            match vdaf
                .prepare_next(state, msg.clone())
                .map_err(|e| format!("prepare_next: {e}"))?
            {
                PrepareTransition::Continue(s, share) => {
                    next_states.push(s);
                    prep_shares.push(share);
                }
                PrepareTransition::Finish(out) => outs.push(out),
            }
        }
        match (outs.len(), next_states.len()) {
            (2, 0) => {
                let [a, b]: [V::OutputShare; 2] = outs.try_into().map_err(|_| "two output shares")?;
                return Ok((rounds, messages, [a, b]));
            }
            (0, 2) => states = next_states,
            _ => return Err("the Aggregators disagree on the number of rounds".into()),
        }
    }
}

fn prepare_typed<V>(vdaf: V, body: &Value) -> Result<Value, String>
where
    V: Interop + Aggregator<16, 16>,
{
    let verify_key: [u8; 16] = hex_field(body.get("verify_key").unwrap_or(&Value::Null), "verify_key")?
        .try_into()
        .map_err(|_| "verify_key: expected 16 bytes")?;
    let (param, _) = agg_param::<V>(Some(&hex_param(body)?))?;
    let reports = body
        .get("reports")
        .and_then(Value::as_array)
        .ok_or("reports: expected an array")?;
    let mut out = Vec::new();
    let mut leader_outs = Vec::new();
    let mut helper_outs = Vec::new();
    for report in reports {
        match prepare_one(&vdaf, &verify_key, &param, report) {
            Ok((rounds, messages, [l, h])) => {
                out.push(json!({
                    "prep_shares": rounds.iter().map(|[a, b]| [hex::encode(a), hex::encode(b)]).collect::<Vec<_>>(),
                    "prep_messages": messages.iter().map(hex::encode).collect::<Vec<_>>(),
                    "out_shares": [hex::encode(l.get_encoded().map_err(|e| e.to_string())?), hex::encode(h.get_encoded().map_err(|e| e.to_string())?)],
                }));
                leader_outs.push(l);
                helper_outs.push(h);
            }
            Err(e) => out.push(json!({"error": e})),
        }
    }
    let count = leader_outs.len();
    let agg = |outs: Vec<V::OutputShare>| -> Result<String, String> {
        let share = vdaf.aggregate(&param, outs).map_err(|e| format!("aggregate: {e}"))?;
        Ok(hex::encode(share.get_encoded().map_err(|e| e.to_string())?))
    };
    Ok(json!({"reports": out, "agg_shares": [agg(leader_outs)?, agg(helper_outs)?], "report_count": count}))
}

fn shard_typed<V>(vdaf: V, spec: &VdafSpec, body: &Value) -> Result<Value, String>
where
    V: Interop + Client<16>,
{
    let ms = body
        .get("measurements")
        .and_then(Value::as_array)
        .ok_or("measurements: expected an array")?;
    let nonces = body.get("nonces").and_then(Value::as_array);
    let mut reports = Vec::new();
    for (i, m) in ms.iter().enumerate() {
        let measurement = vdaf.measurement(spec, m)?;
        let n: [u8; 16] = match nonces.and_then(|ns| ns.get(i)) {
            Some(v) => nonce(v)?,
            None => rand::random(),
        };
        let (public_share, input_shares) = vdaf.shard(&measurement, &n).map_err(|e| format!("shard: {e}"))?;
        let shares = input_shares
            .iter()
            .map(|s| s.get_encoded().map(hex::encode).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        reports.push(json!({
            "nonce": hex::encode(n),
            "public_share": hex::encode(public_share.get_encoded().map_err(|e| e.to_string())?),
            "input_shares": shares,
        }));
    }
    Ok(json!({"reports": reports}))
}

fn unshard_typed<V>(vdaf: V, body: &Value) -> Result<Value, String>
where
    V: Interop + Collector,
{
    let (param, _) = agg_param::<V>(Some(&hex_param(body)?))?;
    let shares = body
        .get("agg_shares")
        .and_then(Value::as_array)
        .filter(|a| a.len() == 2)
        .ok_or("agg_shares: expected two hex strings")?;
    let count = body
        .get("report_count")
        .and_then(Value::as_u64)
        .ok_or("report_count: expected an integer")? as usize;
    let decoded = shares
        .iter()
        .map(|s| {
            V::AggregateShare::get_decoded_with_param(&(&vdaf, &param), &hex_field(s, "agg_share")?)
                .map_err(|e| format!("agg_share: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let result = vdaf
        .unshard(&param, decoded, count)
        .map_err(|e| format!("unshard: {e}"))?;
    Ok(json!({"result": vdaf.result(&result)}))
}

// --- check-prio3: prio's own test-vector checker ------------------------------------------------

/// Prio3Count vectors write the measurement as 0 / 1.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
struct CountMeasurement(u8);

impl From<CountMeasurement> for bool {
    fn from(m: CountMeasurement) -> bool {
        m.0 != 0
    }
}

/// Runs prio's checker on one vector; `make(shares)` builds the instance (the `_1` vectors
/// of VDAF-08 have three Aggregators).
fn check_vector<MS, MP, A, T>(text: &str, make: impl Fn(u8) -> Result<Prio3Of<T>, prio::vdaf::VdafError>) -> Value
where
    MS: DeserializeOwned + Clone,
    MP: From<MS>,
    A: DeserializeOwned + Debug + Eq,
    T: prio::flp::Type<Measurement = MP, AggregateResult = A>,
{
    let run = std::panic::AssertUnwindSafe(|| {
        check_test_vec_custom_de::<MS, MP, A, T, _, 16>(text, |_: &HashMap<String, Value>, shares| {
            make(shares).expect("the vector's VDAF parameters")
        })
    });
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(run);
    std::panic::set_hook(hook);
    match outcome {
        Ok(()) => json!({"ok": true}),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".into());
            json!({"ok": false, "error": msg})
        }
    }
}

type Prio3Of<T> = Prio3<T, prio::vdaf::xof::XofTurboShake128, 16>;

fn check_prio3(body: &Value) -> Result<Value, String> {
    let spec = VdafSpec::from_interop(body.get("vdaf").unwrap_or(&Value::Null))?;
    let vectors = body
        .get("vectors")
        .and_then(Value::as_array)
        .ok_or("vectors: expected an array")?;
    let mut results = Vec::new();
    for v in vectors {
        let text = v.to_string();
        let r = match spec {
            VdafSpec::Count => check_vector::<CountMeasurement, bool, u64, _>(&text, Prio3::new_count),
            VdafSpec::Sum { bits } => check_vector::<u128, u128, u128, _>(&text, |n| Prio3::new_sum(n, bits)),
            VdafSpec::SumVec {
                bits,
                length,
                chunk_length,
            } => check_vector::<Vec<u128>, Vec<u128>, Vec<u128>, _>(&text, |n| {
                Prio3::new_sum_vec(n, bits, length, chunk_length)
            }),
            VdafSpec::Histogram { length, chunk_length } => {
                check_vector::<usize, usize, Vec<u128>, _>(&text, |n| Prio3::new_histogram(n, length, chunk_length))
            }
            VdafSpec::Poplar1 { .. } => {
                return Err("check-prio3: Prio3 only (Poplar1: use prepare with the vector's shares)".into())
            }
        };
        results.push(r);
    }
    Ok(json!({"results": results}))
}

// --- bench ------------------------------------------------------------------------------------

fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn rate(seconds: f64, mut f: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    let warm_until = cpu_seconds() + (seconds / 2.0).min(0.5);
    while cpu_seconds() < warm_until {
        f()?;
    }
    let start = cpu_seconds();
    let (mut n, mut elapsed) = (0u64, 0.0);
    while n < 3 || elapsed < seconds {
        f()?;
        n += 1;
        elapsed = cpu_seconds() - start;
    }
    Ok(n as f64 / elapsed)
}

fn bench_typed<V>(vdaf: V, spec: &VdafSpec, seconds: f64, gen: &dyn Fn(u64) -> Value) -> Result<(f64, f64), String>
where
    V: Interop + Client<16> + Aggregator<16, 16>,
{
    let verify_key: [u8; 16] = rand::random();
    let mut reports = Vec::new();
    for i in 0..8 {
        let nonce: [u8; 16] = rand::random();
        let (p, s) = vdaf
            .shard(&vdaf.measurement(spec, &gen(i))?, &nonce)
            .map_err(|e| e.to_string())?;
        let enc = |x: &dyn Fn() -> Result<Vec<u8>, prio::codec::CodecError>| x().map_err(|e| e.to_string());
        reports.push(json!({
            "nonce": hex::encode(nonce),
            "public_share": hex::encode(enc(&|| p.get_encoded())?),
            "input_shares": [hex::encode(enc(&|| s[0].get_encoded())?), hex::encode(enc(&|| s[1].get_encoded())?)],
        }));
    }
    let mut i = 0u64;
    let shards = rate(seconds, || {
        i += 1;
        let m = vdaf.measurement(spec, &gen(i))?;
        vdaf.shard(&m, &rand::random()).map(|_| ()).map_err(|e| e.to_string())
    })?;
    let param = V::AggregationParam::get_decoded(&[]).map_err(|e| e.to_string())?;
    let mut j = 0usize;
    let preps = rate(seconds, || {
        j += 1;
        prepare_one(&vdaf, &verify_key, &param, &reports[j % reports.len()]).map(|_| ())
    })?;
    Ok((shards, preps))
}

pub fn bench(args: &[String]) -> Result<(), String> {
    let seconds: f64 = args
        .first()
        .and_then(|s| s.parse().ok())
        .ok_or("usage: bench SECONDS VARIANT...")?;
    for name in &args[1..] {
        let (obj, gen): (Value, Box<dyn Fn(u64) -> Value>) = match name.as_str() {
            "count" => (json!({"type": "Prio3Count"}), Box::new(|i| json!((i % 2).to_string()))),
            "sum32" => (
                json!({"type": "Prio3Sum", "bits": "32"}),
                Box::new(|i| json!((i.wrapping_mul(2654435761) % (1 << 32)).to_string())),
            ),
            "sumvec100" => (
                json!({"type": "Prio3SumVec", "length": "100", "bits": "8", "chunk_length": "10"}),
                Box::new(|i| json!((0..100).map(|k| ((i + k) % 256).to_string()).collect::<Vec<_>>())),
            ),
            "histogram100" => (
                json!({"type": "Prio3Histogram", "length": "100", "chunk_length": "10"}),
                Box::new(|i| json!((i % 100).to_string())),
            ),
            "histogram1000" => (
                json!({"type": "Prio3Histogram", "length": "1000", "chunk_length": "32"}),
                Box::new(|i| json!((i % 1000).to_string())),
            ),
            other => return Err(format!("bench: unknown variant {other}")),
        };
        let spec = VdafSpec::from_interop(&obj)?;
        let (shards, preps) = with_vdaf!(spec, v => bench_typed(v, &spec, seconds, &*gen))?;
        println!(
            "{}",
            json!({"variant": name, "shards_per_s": shards, "preps_per_s": preps})
        );
    }
    Ok(())
}

/// Run one stdin/stdout command.
pub fn run(command: &str) -> Result<Value, String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| format!("stdin: {e}"))?;
    let body: Value = serde_json::from_str(&text).map_err(|e| format!("stdin is not JSON: {e}"))?;
    if command == "check-prio3" {
        return check_prio3(&body);
    }
    let spec = VdafSpec::from_interop(body.get("vdaf").unwrap_or(&Value::Null))?;
    match command {
        "shard" => with_vdaf!(spec, v => shard_typed(v, &spec, &body)),
        "prepare" => with_vdaf!(spec, v => prepare_typed(v, &body)),
        "unshard" => with_vdaf!(spec, v => unshard_typed(v, &body)),
        other => Err(format!("unknown command {other}")),
    }
}
