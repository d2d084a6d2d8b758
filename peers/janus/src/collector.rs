//! The interop Collector (interop-api.md §3.3) over `janus_collector` 0.7.
//!
//! `add_task` generates an X25519 / HKDF-SHA256 / AES-128-GCM key pair (a random config ID)
//! and returns its `HpkeConfig` as unpadded base64url; registering the same task again with
//! the same body returns the same config, another body is an error (as the reference
//! Collector). `collection_start` draws a collection job ID and has `janus_collector` PUT the
//! CollectionReq (`DAP-Auth-Token`; the query and the interop `agg_param` as given); the handle
//! is the job ID in base64url. `collection_poll` has it POST once: 202 -> `"in progress"`,
//! 200 -> both aggregate shares opened (AAD: the query's interval, or the Collection's batch
//! ID), unsharded with prio 0.16, result in the interop encoding; anything else -> `"error"`.
//! HTTP retries (connection errors, 5xx but 501, 429) use a short exponential backoff: 10 s for
//! the PUT, 1 s per poll (a failed job is a 5xx at the reference Leader and at Janus).
//! State is in memory: a restarted Collector knows no tasks.

use crate::{
    client::{http_backoff, task_id},
    http::{Api, HandlerFuture},
    vdafs::{agg_param, b64d, b64e, Interop, VdafSpec},
    with_vdaf,
};
use janus_collector::{AuthenticationToken, CollectionJob, Collector, ExponentialBackoff, PollResult};
use janus_core::hpke::HpkeKeypair;
use janus_messages::{
    query_type::{FixedSize, QueryType, TimeInterval},
    BatchId, CollectionJobId, Duration, FixedSizeQuery, HpkeAeadId, HpkeConfigId, HpkeKdfId, HpkeKemId, Interval,
    Query, TaskId, Time,
};
use prio::{
    codec::{Decode, Encode},
    vdaf,
};
use serde_json::{json, Value};
use std::{collections::HashMap, sync::Arc};
use tokio::sync::Mutex;
use url::Url;

/// One poll retries for at most a second: janus_collector treats every 5xx (but 501) as
/// transient, and the reference Leader answers a failed collection job with 502 (Janus's with
/// 500), so a longer budget would only delay the `"error"` the caller polls for anyway.
fn poll_backoff() -> ExponentialBackoff {
    ExponentialBackoff {
        initial_interval: std::time::Duration::from_millis(100),
        max_interval: std::time::Duration::from_millis(500),
        multiplier: 2.0,
        max_elapsed_time: Some(std::time::Duration::from_secs(1)),
        ..Default::default()
    }
}

struct CollectorTask {
    task_id: TaskId,
    leader: Url,
    spec: VdafSpec,
    token: AuthenticationToken,
    keypair: HpkeKeypair,
    /// The add_task body's fields, to tell a repeated registration from a conflicting one.
    fingerprint: String,
}

#[derive(Clone)]
enum AnyQuery {
    TimeInterval(Query<TimeInterval>),
    FixedSize(Query<FixedSize>),
}

#[derive(Clone)]
struct Job {
    task: String,
    job_id: CollectionJobId,
    query: AnyQuery,
    agg_param: Vec<u8>,
}

#[derive(Default)]
struct State {
    tasks: HashMap<String, Arc<CollectorTask>>,
    jobs: HashMap<String, Job>,
}

pub struct CollectorApi {
    http: reqwest::Client,
    state: Mutex<State>,
}

fn error(message: impl Into<String>) -> Value {
    json!({"status": "error", "error": message.into()})
}

fn num(obj: &Value, key: &str) -> Result<u64, String> {
    obj.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("query.{key}: expected a non-negative integer"))
}

fn parse_query(obj: &Value) -> Result<AnyQuery, String> {
    if !obj.is_object() {
        return Err("query: expected an object".into());
    }
    match obj.get("type").and_then(Value::as_u64) {
        Some(1) => {
            let interval = Interval::new(
                Time::from_seconds_since_epoch(num(obj, "batch_interval_start")?),
                Duration::from_seconds(num(obj, "batch_interval_duration")?),
            )
            .map_err(|e| format!("query: {e}"))?;
            Ok(AnyQuery::TimeInterval(Query::new_time_interval(interval)))
        }
        Some(2) => match obj.get("subtype").and_then(Value::as_u64) {
            Some(1) => Ok(AnyQuery::FixedSize(Query::new_fixed_size(FixedSizeQuery::CurrentBatch))),
            Some(0) => {
                let raw = b64d(obj.get("batch_id").unwrap_or(&Value::Null), "query.batch_id")?;
                let batch_id = BatchId::try_from(raw.as_slice())
                    .map_err(|_| format!("query.batch_id: {} bytes, expected 32", raw.len()))?;
                Ok(AnyQuery::FixedSize(Query::new_fixed_size(FixedSizeQuery::ByBatchId {
                    batch_id,
                })))
            }
            _ => Err("query.subtype: expected 0 (by_batch_id) or 1 (current_batch)".into()),
        },
        _ => Err("query.type: expected 1 or 2".into()),
    }
}

fn token(body: &Value) -> Result<(String, AuthenticationToken), String> {
    let key = "collector_authentication_token";
    let s = body
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("{key}: expected a non-empty string"))?;
    if s.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return Err(format!("{key}: not a valid HTTP header value"));
    }
    let t = AuthenticationToken::new_dap_auth_token_from_string(s).map_err(|e| format!("{key}: {e}"))?;
    Ok((s.to_owned(), t))
}

impl CollectorApi {
    pub fn new() -> Result<Self, String> {
        Ok(Self {
            http: janus_collector::default_http_client().map_err(|e| e.to_string())?,
            state: Mutex::new(State::default()),
        })
    }

    fn collector<V: vdaf::Collector>(
        &self,
        task: &CollectorTask,
        vdaf: V,
        backoff: ExponentialBackoff,
    ) -> Result<Collector<V>, String> {
        Collector::builder(
            task.task_id,
            task.leader.clone(),
            task.token.clone(),
            task.keypair.clone(),
            vdaf,
        )
        .with_http_client(self.http.clone())
        .with_http_request_backoff(backoff)
        .build()
        .map_err(|e| e.to_string())
    }

    async fn add_task(self: Arc<Self>, body: Value) -> Result<Value, String> {
        let (task_id, task_b64) = task_id(&body)?;
        let leader = body.get("leader").and_then(Value::as_str).unwrap_or("");
        if !(leader.starts_with("http://") || leader.starts_with("https://")) {
            return Err("leader: expected an absolute http(s) URL".into());
        }
        let leader = Url::parse(leader).map_err(|e| format!("leader: {e}"))?;
        let vdaf_obj = body.get("vdaf").cloned().unwrap_or(Value::Null);
        let spec = VdafSpec::from_interop(&vdaf_obj)?;
        let (token_text, token) = token(&body)?;
        let key = if body.get("batch_mode").is_some() && body.get("query_type").is_none() {
            "batch_mode"
        } else {
            "query_type"
        };
        let query_type = match body.get(key).and_then(Value::as_u64) {
            Some(q @ (1 | 2)) => q,
            _ => return Err(format!("{key}: expected 1 (time_interval) or 2 (fixed_size)")),
        };
        let fingerprint = json!([task_b64, leader.as_str(), vdaf_obj, token_text, query_type]).to_string();
        let mut state = self.state.lock().await;
        if let Some(existing) = state.tasks.get(&task_b64) {
            if existing.fingerprint != fingerprint {
                return Err("task_id: already registered with another configuration".into());
            }
        } else {
            let keypair = HpkeKeypair::generate(
                rand::random::<HpkeConfigId>(),
                HpkeKemId::X25519HkdfSha256,
                HpkeKdfId::HkdfSha256,
                HpkeAeadId::Aes128Gcm,
            )
            .map_err(|e| format!("HPKE key generation: {e}"))?;
            let task = CollectorTask {
                task_id,
                leader,
                spec,
                token,
                keypair,
                fingerprint,
            };
            state.tasks.insert(task_b64.clone(), Arc::new(task));
        }
        let config = state.tasks[&task_b64]
            .keypair
            .config()
            .get_encoded()
            .map_err(|e| e.to_string())?;
        Ok(json!({"status": "success", "collector_hpke_config": b64e(&config)}))
    }

    async fn start_typed<V, Q>(
        &self,
        task: &CollectorTask,
        vdaf: V,
        job_id: CollectionJobId,
        query: Query<Q>,
        body: &Value,
    ) -> Result<Vec<u8>, String>
    where
        V: Interop + vdaf::Collector,
        Q: QueryType,
    {
        let (param, param_bytes) = agg_param::<V>(body.get("agg_param"))?;
        let collector = self.collector(task, vdaf, http_backoff())?;
        collector
            .start_collection_with_id(job_id, query, &param)
            .await
            .map_err(|e| format!("PUT collection job: {}", describe(&e)))?;
        Ok(param_bytes)
    }

    async fn collection_start(self: Arc<Self>, body: Value) -> Result<Value, String> {
        let (_, task_b64) = task_id(&body)?;
        let task = self
            .state
            .lock()
            .await
            .tasks
            .get(&task_b64)
            .cloned()
            .ok_or("task_id: unknown task")?;
        let query = parse_query(body.get("query").unwrap_or(&Value::Null))?;
        let job_id: CollectionJobId = rand::random();
        let agg_param = match query.clone() {
            AnyQuery::TimeInterval(q) => {
                with_vdaf!(task.spec, v => self.start_typed(&task, v, job_id, q, &body).await)?
            }
            AnyQuery::FixedSize(q) => with_vdaf!(task.spec, v => self.start_typed(&task, v, job_id, q, &body).await)?,
        };
        let handle = b64e(job_id.as_ref());
        self.state.lock().await.jobs.insert(
            handle.clone(),
            Job {
                task: task_b64,
                job_id,
                query,
                agg_param,
            },
        );
        Ok(json!({"status": "success", "handle": handle}))
    }

    async fn poll_typed<V, Q>(&self, task: &CollectorTask, vdaf: V, job: &Job, query: Query<Q>) -> Result<Value, String>
    where
        V: Interop + vdaf::Collector,
        Q: QueryType,
    {
        let param = V::AggregationParam::get_decoded(&job.agg_param).map_err(|e| format!("agg_param: {e}"))?;
        let collector = self.collector(task, vdaf.clone(), poll_backoff())?;
        let cj = CollectionJob::new(job.job_id, query, param);
        match collector
            .poll_once(&cj)
            .await
            .map_err(|e| format!("POST collection job: {}", describe(&e)))?
        {
            PollResult::NotReady(_) => Ok(json!({"status": "in progress"})),
            PollResult::CollectionResult(c) => {
                let (start, duration) = c.interval();
                let mut out = json!({
                    "status": "complete",
                    "report_count": c.report_count(),
                    "interval_start": start.timestamp(),
                    "interval_duration": duration.num_seconds(),
                    "result": vdaf.result(c.aggregate_result()),
                });
                let batch = c
                    .partial_batch_selector()
                    .batch_identifier()
                    .get_encoded()
                    .map_err(|e| e.to_string())?;
                if !batch.is_empty() {
                    out["batch_id"] = json!(b64e(&batch));
                }
                Ok(out)
            }
        }
    }

    async fn collection_poll(self: Arc<Self>, body: Value) -> Result<Value, String> {
        let handle = body.get("handle").and_then(Value::as_str).unwrap_or("");
        let (job, task) = {
            let state = self.state.lock().await;
            let job = state.jobs.get(handle).cloned().ok_or("unknown handle")?;
            let task = state.tasks[&job.task].clone();
            (job, task)
        };
        match job.query.clone() {
            AnyQuery::TimeInterval(q) => with_vdaf!(task.spec, v => self.poll_typed(&task, v, &job, q).await),
            AnyQuery::FixedSize(q) => with_vdaf!(task.spec, v => self.poll_typed(&task, v, &job, q).await),
        }
    }
}

fn describe(e: &janus_collector::Error) -> String {
    match e {
        janus_collector::Error::Http(resp) => format!(
            "HTTP {} {} {}",
            resp.status(),
            resp.type_uri().and_then(|t| t.rsplit(':').next()).unwrap_or(""),
            resp.detail().or(resp.title()).unwrap_or("")
        )
        .trim_end()
        .to_owned(),
        other => other.to_string(),
    }
}

impl Api for CollectorApi {
    fn names(&self) -> &'static [&'static str] {
        &["add_task", "collection_start", "collection_poll"]
    }

    fn call(self: Arc<Self>, name: &str, body: Value) -> HandlerFuture {
        let name = name.to_owned();
        Box::pin(async move {
            let result = match name.as_str() {
                "add_task" => self.add_task(body).await,
                "collection_start" => self.collection_start(body).await,
                "collection_poll" => self.collection_poll(body).await,
                _ => Err("unknown endpoint".into()),
            };
            result.unwrap_or_else(error)
        })
    }
}
