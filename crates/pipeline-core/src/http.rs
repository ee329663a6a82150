//! A worker's HTTP endpoint: `/metrics` (Prometheus text), `/healthz` (the process is alive) and
//! `/readyz` (connected to the broker and consuming; `degraded:` lines name what works but needs
//! an operator, such as a misconfigured LLM provider).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::telemetry::Telemetry;

/// The three routes, for binaries that serve more (the upload API merges them into its app).
pub fn router(telemetry: Arc<Telemetry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(telemetry)
}

async fn metrics(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], t.metrics.encode())
}

async fn readyz(State(t): State<Arc<Telemetry>>) -> impl IntoResponse {
    let (status, mut body) = if t.health.is_ready() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", t.health.reason()))
    };
    for detail in t.health.details() {
        body.push_str(&format!("degraded: {detail}\n"));
    }
    (status, body)
}

/// A bound endpoint; the address is known before serving starts (useful with port 0).
#[derive(Debug)]
pub struct HealthServer {
    listener: TcpListener,
    app: Router,
}

impl HealthServer {
    /// Binds `listen` (port 0 picks a free port).
    pub async fn bind(listen: &str, telemetry: Arc<Telemetry>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        Ok(Self { listener, app: router(telemetry) })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes.
    pub fn spawn(self, shutdown: impl Future<Output = ()> + Send + 'static) -> JoinHandle<std::io::Result<()>> {
        tokio::spawn(async move { axum::serve(self.listener, self.app).with_graceful_shutdown(shutdown).await })
    }
}
