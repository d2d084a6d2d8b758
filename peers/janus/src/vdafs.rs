//! The interop API's VDAF objects, measurements, results and aggregation parameters
//! (interop-api.md §2.1, §3.1, §3.3) mapped to prio 0.16 (VDAF-08) instances.
//!
//! The checks mirror the reference implementation's `dap/vdaf/params.py` so that both
//! peers refuse the same requests: parameters are decimal strings or JSON integers,
//! `bits` in [1, 127] (Poplar1: [1, 65536]), `length` and `chunk_length` in [1, 65536],
//! SumVec `length * bits <= 65536`, unknown keys are refused.

use base64::{
    alphabet::URL_SAFE,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine,
};
use prio::{
    codec::Decode,
    idpf::IdpfInput,
    vdaf::{
        self,
        poplar1::Poplar1,
        prio3::{Prio3Count, Prio3Histogram, Prio3Sum, Prio3SumVec},
        xof::XofTurboShake128,
    },
};
use serde_json::{json, Value};

pub type Poplar1Vdaf = Poplar1<XofTurboShake128, 16>;

/// A parsed interop VDAF object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VdafSpec {
    Count,
    Sum {
        bits: usize,
    },
    SumVec {
        bits: usize,
        length: usize,
        chunk_length: usize,
    },
    Histogram {
        length: usize,
        chunk_length: usize,
    },
    Poplar1 {
        bits: usize,
    },
}

const MAX_PARAM: u128 = 1 << 16;

fn uint(value: &Value, what: &str) -> Result<u128, String> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .map(u128::from)
            .ok_or_else(|| format!("{what}: expected a decimal string, got {value}")),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<u128>().map_err(|_| format!("{what}: {s} is too large"))
        }
        _ => Err(format!("{what}: expected a decimal string, got {value}")),
    }
}

fn uint_list(value: &Value, what: &str) -> Result<Vec<u128>, String> {
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| uint(v, &format!("{what}[{i}]")))
            .collect(),
        _ => Err(format!("{what}: expected an array of decimal strings, got {value}")),
    }
}

impl VdafSpec {
    pub fn from_interop(obj: &Value) -> Result<Self, String> {
        let map = obj.as_object().ok_or("vdaf: expected an object")?;
        let kind = match map.get("type") {
            Some(Value::String(s)) => s.as_str(),
            other => {
                return Err(format!(
                    "vdaf.type: expected a string, got {}",
                    other.unwrap_or(&Value::Null)
                ))
            }
        };
        let names: &[&str] = match kind {
            "Prio3Count" => &[],
            "Prio3Sum" | "Poplar1" => &["bits"],
            "Prio3SumVec" => &["bits", "length", "chunk_length"],
            "Prio3Histogram" => &["length", "chunk_length"],
            _ => {
                return Err(format!(
                    "vdaf.type: unsupported VDAF type {kind:?}; known: Prio3Count, Prio3Sum, Prio3SumVec, Prio3Histogram, Poplar1"
                ))
            }
        };
        let mut unknown: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "type" && !names.contains(k))
            .collect();
        unknown.sort_unstable();
        if !unknown.is_empty() {
            return Err(format!("vdaf: unexpected key(s) {} for {kind}", unknown.join(", ")));
        }
        let param = |name: &str| -> Result<usize, String> {
            let v = map
                .get(name)
                .ok_or_else(|| format!("vdaf.{name}: required for {kind}"))?;
            let n = uint(v, &format!("vdaf.{name}"))?;
            let high = if name == "bits" && kind != "Poplar1" {
                127
            } else {
                MAX_PARAM
            };
            if n < 1 || n > high {
                return Err(format!("vdaf.{name}: must be an integer in [1, {high}], got {n}"));
            }
            Ok(n as usize)
        };
        Ok(match kind {
            "Prio3Count" => VdafSpec::Count,
            "Prio3Sum" => VdafSpec::Sum { bits: param("bits")? },
            "Prio3SumVec" => {
                let (bits, length, chunk_length) = (param("bits")?, param("length")?, param("chunk_length")?);
                if (length as u128) * (bits as u128) > MAX_PARAM {
                    return Err(format!(
                        "vdaf: length * bits must be at most {MAX_PARAM}, got {length}*{bits}"
                    ));
                }
                VdafSpec::SumVec {
                    bits,
                    length,
                    chunk_length,
                }
            }
            "Prio3Histogram" => VdafSpec::Histogram {
                length: param("length")?,
                chunk_length: param("chunk_length")?,
            },
            _ => VdafSpec::Poplar1 { bits: param("bits")? },
        })
    }
}

/// What the peer needs from each VDAF type beyond prio's traits: the interop encodings.
pub trait Interop: vdaf::Vdaf + Send + Sync + 'static {
    fn measurement(&self, spec: &VdafSpec, value: &Value) -> Result<Self::Measurement, String>;
    fn result(&self, result: &Self::AggregateResult) -> Value;
}

fn check_below_pow2(n: u128, bits: usize, what: &str) -> Result<u128, String> {
    if bits < 128 && n >> bits != 0 {
        return Err(format!("{what}: {n} is out of range [0, 2^{bits})"));
    }
    Ok(n)
}

impl Interop for Prio3Count {
    fn measurement(&self, _: &VdafSpec, value: &Value) -> Result<bool, String> {
        match value {
            Value::String(s) if s == "0" => Ok(false),
            Value::String(s) if s == "1" => Ok(true),
            Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
            Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
            _ => Err(format!("measurement: Prio3Count takes \"0\" or \"1\", got {value}")),
        }
    }
    fn result(&self, result: &u64) -> Value {
        json!(result.to_string())
    }
}

impl Interop for Prio3Sum {
    fn measurement(&self, spec: &VdafSpec, value: &Value) -> Result<u128, String> {
        let VdafSpec::Sum { bits } = spec else { unreachable!() };
        check_below_pow2(uint(value, "measurement")?, *bits, "measurement")
    }
    fn result(&self, result: &u128) -> Value {
        json!(result.to_string())
    }
}

impl Interop for Prio3SumVec {
    fn measurement(&self, spec: &VdafSpec, value: &Value) -> Result<Vec<u128>, String> {
        let VdafSpec::SumVec { bits, length, .. } = spec else {
            unreachable!()
        };
        let v = uint_list(value, "measurement")?;
        if v.len() != *length {
            return Err(format!("measurement: expected {length} elements, got {}", v.len()));
        }
        v.into_iter()
            .enumerate()
            .map(|(i, x)| check_below_pow2(x, *bits, &format!("measurement[{i}]")))
            .collect()
    }
    fn result(&self, result: &Vec<u128>) -> Value {
        json!(result.iter().map(u128::to_string).collect::<Vec<_>>())
    }
}

impl Interop for Prio3Histogram {
    fn measurement(&self, spec: &VdafSpec, value: &Value) -> Result<usize, String> {
        let VdafSpec::Histogram { length, .. } = spec else {
            unreachable!()
        };
        let n = uint(value, "measurement")?;
        if n >= *length as u128 {
            return Err(format!("measurement: {n} is out of range [0, {length})"));
        }
        Ok(n as usize)
    }
    fn result(&self, result: &Vec<u128>) -> Value {
        json!(result.iter().map(u128::to_string).collect::<Vec<_>>())
    }
}

impl Interop for Poplar1Vdaf {
    /// An array of `bits` booleans, element 0 = the most significant bit (tree level 0).
    fn measurement(&self, spec: &VdafSpec, value: &Value) -> Result<IdpfInput, String> {
        let VdafSpec::Poplar1 { bits } = spec else {
            unreachable!()
        };
        let items = value
            .as_array()
            .ok_or_else(|| format!("measurement: expected an array of booleans, got {value}"))?;
        let bools = items
            .iter()
            .enumerate()
            .map(|(i, b)| {
                b.as_bool()
                    .ok_or_else(|| format!("measurement[{i}]: expected a boolean, got {b}"))
            })
            .collect::<Result<Vec<bool>, String>>()?;
        if bools.len() != *bits {
            return Err(format!("measurement: expected {bits} booleans, got {}", bools.len()));
        }
        Ok(IdpfInput::from_bools(&bools))
    }
    fn result(&self, result: &Vec<u64>) -> Value {
        json!(result.iter().map(u64::to_string).collect::<Vec<_>>())
    }
}

/// Runs `$body` with `$v` bound to the prio instance of `$spec` (each arm its own type); a
/// construction error returns `Err(String)` from the enclosing function.
#[macro_export]
macro_rules! with_vdaf {
    ($spec:expr, $v:ident => $body:expr) => {{
        use prio::vdaf::prio3::Prio3;
        let spec: $crate::vdafs::VdafSpec = $spec;
        match spec {
            $crate::vdafs::VdafSpec::Count => {
                let $v = Prio3::new_count(2).map_err(|e| format!("vdaf: {e}"))?;
                $body
            }
            $crate::vdafs::VdafSpec::Sum { bits } => {
                let $v = Prio3::new_sum(2, bits).map_err(|e| format!("vdaf: {e}"))?;
                $body
            }
            $crate::vdafs::VdafSpec::SumVec {
                bits,
                length,
                chunk_length,
            } => {
                let $v = Prio3::new_sum_vec(2, bits, length, chunk_length).map_err(|e| format!("vdaf: {e}"))?;
                $body
            }
            $crate::vdafs::VdafSpec::Histogram { length, chunk_length } => {
                let $v = Prio3::new_histogram(2, length, chunk_length).map_err(|e| format!("vdaf: {e}"))?;
                $body
            }
            $crate::vdafs::VdafSpec::Poplar1 { bits } => {
                let $v: $crate::vdafs::Poplar1Vdaf = prio::vdaf::poplar1::Poplar1::new_turboshake128(bits);
                $body
            }
        }
    }};
}

/// base64url: unpadded on output; padded or not, and (like Python's decoder, which the
/// reference roles use) ignoring non-zero trailing bits on input (interop-api.md §1).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

pub fn b64d(value: &Value, what: &str) -> Result<Vec<u8>, String> {
    let s = value
        .as_str()
        .ok_or_else(|| format!("{what}: expected a base64url string"))?;
    B64URL.decode(s).map_err(|e| format!("{what}: not base64url: {e}"))
}

pub fn b64e(bytes: &[u8]) -> String {
    B64URL.encode(bytes)
}

/// The interop `agg_param` (base64url of the VDAF encoding, `""` for Prio3) decoded for `V`.
pub fn agg_param<V: vdaf::Vdaf>(value: Option<&Value>) -> Result<(V::AggregationParam, Vec<u8>), String> {
    let bytes = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => b64d(v, "agg_param")?,
    };
    let param = V::AggregationParam::get_decoded(&bytes).map_err(|e| format!("agg_param: {e}"))?;
    Ok((param, bytes))
}
