//! A minimal HTTP/1.1 server for the interop test API (interop-api.md §1): every endpoint is
//! `POST /internal/test/<name>` with a JSON object body and a JSON answer.
//!
//! - `ready` (POST or GET, with or without a body) -> 200 `{}`;
//! - a known endpoint -> 200 with the handler's JSON (`status` says what happened at the DAP
//!   level); a body that is not a JSON object -> 400 `{"status": "error", ...}`;
//! - any other path -> 404 `{"status": "error", "error": "unknown test API endpoint"}`.
//!
//! These are the reference roles' answers (dap/roles/server.py).

use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    body::{Bytes, Incoming},
    header::{HeaderValue, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc};
use tokio::net::TcpListener;

const MAX_BODY: usize = 1 << 20;

pub type HandlerFuture = Pin<Box<dyn Future<Output = Value> + Send>>;

/// The role's endpoints: `names()` lists them (besides `ready`), `call` runs one.
pub trait Api: Send + Sync + 'static {
    fn names(&self) -> &'static [&'static str];
    fn call(self: Arc<Self>, name: &str, body: Value) -> HandlerFuture;
}

fn reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

async fn route<A: Api>(api: Arc<A>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let name = path.strip_prefix("/internal/test/").unwrap_or("");
    let method = req.method().clone();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                &json!({"status": "error", "error": format!("request body: {e}")}),
            )
        }
    };
    if name == "ready" && (method == Method::POST || method == Method::GET) {
        return reply(StatusCode::OK, &json!({}));
    }
    if method != Method::POST || !api.names().contains(&name) {
        return reply(
            StatusCode::NOT_FOUND,
            &json!({"status": "error", "error": "unknown test API endpoint"}),
        );
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                &json!({"status": "error", "error": format!("body is not JSON: {e}")}),
            )
        }
    };
    if !parsed.is_object() {
        return reply(
            StatusCode::BAD_REQUEST,
            &json!({"status": "error", "error": "body must be a JSON object"}),
        );
    }
    let name = name.to_owned();
    let out = api.call(&name, parsed).await;
    reply(StatusCode::OK, &out)
}

/// Serve `api` on `addr` until SIGTERM / SIGINT.
pub async fn serve<A: Api>(addr: SocketAddr, api: Arc<A>, role: &str) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    eprintln!(
        "{}",
        json!({"event": "start", "role": role, "impl": "janus", "crates": "janus_client/janus_collector 0.7.145, prio 0.16.8",
               "host": addr.ip().to_string(), "port": addr.port(), "note": "the /internal/test API is for testing only"})
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let api = api.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, std::convert::Infallible>(route(api, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
