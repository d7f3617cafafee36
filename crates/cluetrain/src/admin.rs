//! The admin HTTP server: `/metrics` (OpenMetrics, or the Prometheus text format for clients
//! that do not ask for OpenMetrics), `/livez` and `/readyz`. Binds to `admin.listen`,
//! 127.0.0.1:9464 by default: metrics reveal brand names and volumes, so exposing them beyond
//! the host is a deliberate setting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

/// What `/readyz` looks at; the pipeline updates it after every batch.
#[derive(Debug, Default)]
pub struct Health {
    /// Partitions assigned to this instance.
    pub assigned: AtomicUsize,
    /// Wall time (ms since the epoch) of the last processed batch; 0 = none yet.
    pub last_batch_ms: AtomicI64,
    /// Wall time (ms) when the watermark last moved forward; 0 = never.
    pub watermark_moved_ms: AtomicI64,
    /// The last watermark, µs; `i64::MIN` = none.
    pub watermark: AtomicI64,
    /// Set once the consumer is running.
    pub consuming: AtomicBool,
}

impl Health {
    /// A fresh state: not ready.
    pub fn new() -> Self {
        Health {
            watermark: AtomicI64::new(i64::MIN),
            ..Default::default()
        }
    }

    /// Records a processed batch with the pipeline watermark after it.
    pub fn batch(&self, assigned: usize, watermark: Option<i64>) {
        let now = chrono::Utc::now().timestamp_millis();
        self.consuming.store(true, Ordering::Relaxed);
        self.assigned.store(assigned, Ordering::Relaxed);
        self.last_batch_ms.store(now, Ordering::Relaxed);
        self.moved(watermark, now);
    }

    /// The watermark moved without a batch from the source (the tick's heartbeat).
    pub fn watermark(&self, watermark: Option<i64>) {
        self.moved(watermark, chrono::Utc::now().timestamp_millis());
    }

    fn moved(&self, watermark: Option<i64>, now_ms: i64) {
        if let Some(w) = watermark
            && w > self.watermark.swap(w, Ordering::Relaxed)
        {
            self.watermark_moved_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    /// Ready, or why not. `stall` is how long the watermark may stand still while batches
    /// keep arriving (idle input is not a failure: no batches, nothing to advance).
    pub fn readiness(&self, stall: Duration) -> Result<(), String> {
        if !self.consuming.load(Ordering::Relaxed) {
            return Err("not consuming yet (no batch processed)".into());
        }
        if self.assigned.load(Ordering::Relaxed) == 0 {
            return Err("no input partitions assigned".into());
        }
        if self.watermark.load(Ordering::Relaxed) == i64::MIN {
            return Err("no watermark yet".into());
        }
        let now = chrono::Utc::now().timestamp_millis();
        let stall_ms = i64::try_from(stall.as_millis()).unwrap_or(i64::MAX);
        let moved = self.watermark_moved_ms.load(Ordering::Relaxed);
        let last_batch = self.last_batch_ms.load(Ordering::Relaxed);
        if now - moved > stall_ms && now - last_batch <= stall_ms {
            return Err(format!(
                "the watermark has not advanced for {}s while batches arrive",
                (now - moved) / 1000
            ));
        }
        Ok(())
    }
}

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    health: Arc<Health>,
    stall: Duration,
}

/// OpenMetrics content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus text format content type.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encoding metrics failed: {e}"),
        );
    }
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let ct = if openmetrics {
        OPENMETRICS
    } else {
        PROMETHEUS_TEXT
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, ct)], body)
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    match s.health.readiness(s.stall) {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

/// A bound admin server; [`AdminServer::serve`] runs it until `shutdown` resolves.
pub struct AdminServer {
    listener: tokio::net::TcpListener,
    app: Router,
}

impl AdminServer {
    /// Binds `addr` (errors name the setting).
    pub async fn bind(
        addr: SocketAddr,
        registry: Arc<Registry>,
        health: Arc<Health>,
        stall: Duration,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("admin.listen {addr}: cannot bind the admin HTTP server"))?;
        let state = AppState {
            registry,
            health,
            stall,
        };
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/livez", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .with_state(state);
        Ok(AdminServer { listener, app })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, self.app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("admin HTTP server")
    }
}
