//! The interop Client (interop-api.md §3.1) over `janus_client` 0.7.
//!
//! `upload` checks the request like the reference Client (dap/roles/client.py), then
//! `janus_client` does the DAP part: it fetches both `hpke_config` lists (`?task_id=`),
//! picks the first supported config, shards with prio 0.16 (VDAF-08), seals both input
//! shares, rounds the time down to `time_precision` and PUTs the Report to the Leader,
//! retrying connection errors, 5xx and 429 with a short exponential backoff (10 s budget).
//! One `janus_client::Client` per (task, Leader, Helper, VDAF, time precision) keeps the
//! config lists (it honours their Cache-Control). An `outdatedConfig` answer drops that
//! Client and retries once with freshly fetched configs and a new report at the same time
//! (the reference Client's behaviour; `janus_client` itself does not retry on it).

use crate::{
    http::{Api, HandlerFuture},
    vdafs::{Interop, VdafSpec},
    with_vdaf,
};
use janus_collector::ExponentialBackoff;
use janus_messages::{Duration, TaskId, Time};
use prio::{codec::Decode, vdaf};
use serde_json::{json, Value};
use std::{
    any::Any,
    collections::HashMap,
    sync::Arc,
    time::{Duration as StdDuration, SystemTime, UNIX_EPOCH},
};
use tokio::sync::Mutex;
use url::Url;

const OUTDATED_CONFIG: &str = "urn:ietf:params:ppm:dap:error:outdatedConfig";

pub fn http_backoff() -> ExponentialBackoff {
    ExponentialBackoff {
        initial_interval: StdDuration::from_millis(100),
        max_interval: StdDuration::from_secs(1),
        multiplier: 2.0,
        max_elapsed_time: Some(StdDuration::from_secs(10)),
        ..Default::default()
    }
}

pub struct ClientApi {
    http: reqwest::Client,
    clients: Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>,
}

struct UploadReq {
    task_id: TaskId,
    task_b64: String,
    leader: Url,
    helper: Url,
    spec: VdafSpec,
    time_precision: u64,
    time: u64,
}

fn url(body: &Value, key: &str) -> Result<Url, String> {
    let s = body
        .get(key)
        .and_then(Value::as_str)
        .ok_or("leader/helper: expected URLs")?;
    if !(s.starts_with("http://") || s.starts_with("https://")) {
        return Err(format!("{key}: expected an absolute http(s) URL"));
    }
    Url::parse(s).map_err(|e| format!("{key}: {e}"))
}

pub fn task_id(body: &Value) -> Result<(TaskId, String), String> {
    let raw = crate::vdafs::b64d(body.get("task_id").unwrap_or(&Value::Null), "task_id")?;
    if raw.len() != 32 {
        return Err(format!("task_id: {} bytes, expected 32", raw.len()));
    }
    let id = TaskId::get_decoded(&raw).map_err(|e| format!("task_id: {e}"))?;
    Ok((id, crate::vdafs::b64e(&raw)))
}

fn parse(body: &Value) -> Result<UploadReq, String> {
    let (task_id, task_b64) = task_id(body)?;
    let leader = url(body, "leader")?;
    let helper = url(body, "helper")?;
    let spec = VdafSpec::from_interop(body.get("vdaf").unwrap_or(&Value::Null))?;
    let time_precision = match body.get("time_precision") {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v >= 1) => n.as_u64().unwrap(),
        _ => return Err("time_precision: expected a positive integer".into()),
    };
    let time = match body.get("time") {
        None | Some(Value::Null) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs(),
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap(),
        _ => return Err("time: expected a non-negative integer".into()),
    };
    Ok(UploadReq {
        task_id,
        task_b64,
        leader,
        helper,
        spec,
        time_precision,
        time: time - time % time_precision,
    })
}

fn describe(e: &janus_client::Error) -> String {
    match e {
        janus_client::Error::Http(resp) => format!(
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

impl ClientApi {
    pub fn new() -> Result<Self, String> {
        Ok(Self {
            http: janus_client::default_http_client().map_err(|e| e.to_string())?,
            clients: Mutex::new(HashMap::new()),
        })
    }

    async fn client_for<V>(&self, key: &str, req: &UploadReq, vdaf: V) -> Result<Arc<janus_client::Client<V>>, String>
    where
        V: Interop + vdaf::Client<16>,
    {
        if let Some(hit) = self.clients.lock().await.get(key).cloned() {
            if let Ok(client) = hit.downcast::<janus_client::Client<V>>() {
                return Ok(client);
            }
        }
        let client = janus_client::Client::builder(
            req.task_id,
            req.leader.clone(),
            req.helper.clone(),
            Duration::from_seconds(req.time_precision),
            vdaf,
        )
        .with_http_client(self.http.clone())
        .with_backoff(http_backoff())
        .build()
        .await
        .map_err(|e| format!("fetching HPKE configs: {}", describe(&e)))?;
        let client = Arc::new(client);
        self.clients.lock().await.insert(key.to_owned(), client.clone());
        Ok(client)
    }

    async fn upload_typed<V>(&self, req: &UploadReq, vdaf: V, body: &Value) -> Result<(), String>
    where
        V: Interop + vdaf::Client<16>,
        V::Measurement: Send + Sync,
    {
        let measurement = vdaf.measurement(&req.spec, body.get("measurement").unwrap_or(&Value::Null))?;
        let key = format!(
            "{}|{}|{}|{:?}|{}",
            req.task_b64, req.leader, req.helper, req.spec, req.time_precision
        );
        for attempt in 0..2 {
            let client = self.client_for(&key, req, vdaf.clone()).await?;
            match client
                .upload_with_time(&measurement, Time::from_seconds_since_epoch(req.time))
                .await
            {
                Ok(()) => return Ok(()),
                Err(janus_client::Error::Http(resp)) if attempt == 0 && resp.type_uri() == Some(OUTDATED_CONFIG) => {
                    self.clients.lock().await.remove(&key);
                }
                Err(e) => {
                    return Err(format!(
                        "PUT {}tasks/{}/reports: {}",
                        req.leader,
                        req.task_b64,
                        describe(&e)
                    ))
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    async fn upload(self: Arc<Self>, body: Value) -> Value {
        let result = async {
            let req = parse(&body)?;
            with_vdaf!(req.spec, v => self.upload_typed(&req, v, &body).await)
        }
        .await;
        match result {
            Ok(()) => json!({"status": "success"}),
            Err(e) => json!({"status": "error", "error": e}),
        }
    }
}

impl Api for ClientApi {
    fn names(&self) -> &'static [&'static str] {
        &["upload"]
    }

    fn call(self: Arc<Self>, name: &str, body: Value) -> HandlerFuture {
        match name {
            "upload" => Box::pin(self.upload(body)),
            _ => Box::pin(async { json!({"status": "error", "error": "unknown endpoint"}) }),
        }
    }
}
