//! The admin endpoint: `/metrics` (Prometheus text), `/healthz` (alive), `/readyz` (ready to do
//! its job: nothing blocked).
//!
//! It binds `admin.listen` (loopback by default: metrics name sites and sinks, which is
//! internal information) and runs until the cancellation token fires. The two health answers
//! are read from the [`Health`] handle the scheduler keeps current; this module writes none of
//! it but the heartbeat at start.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::telemetry::metrics;

/// The scheduler's heartbeat is considered stalled after this long.
const HEARTBEAT_STALE_SECS: i64 = 120;

/// Installs the global Prometheus recorder and describes every metric. Call once, before the
/// first metric is recorded; a second call (tests) returns `None`.
pub fn install_recorder() -> Option<PrometheusHandle> {
    let handle = PrometheusBuilder::new().install_recorder().ok()?;
    metrics::describe();
    Some(handle)
}

/// Binds the admin listener. Separate from [`serve`] so a port in use fails start-up with a
/// clear error instead of later in a background task.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the endpoints on `listener` until `cancel` fires, answering health from `health`.
pub async fn serve(
    listener: TcpListener,
    handle: Option<PrometheusHandle>,
    health: Health,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    health.beat();
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state((handle, health));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}

/// What every handler may read.
type Shared = (Option<PrometheusHandle>, Health);

async fn render_metrics(State((handle, _)): State<Shared>) -> impl IntoResponse {
    match handle {
        Some(h) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "metrics recorder not installed\n".to_string(),
        ),
    }
}

async fn healthz(State((_, health)): State<Shared>) -> impl IntoResponse {
    let age = health.since_beat(crate::time::now());
    if age > HEARTBEAT_STALE_SECS {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stalled: no scheduler heartbeat for {age} s\n"),
        )
    } else {
        (StatusCode::OK, "ok\n".to_string())
    }
}

async fn readyz(State((_, health)): State<Shared>) -> impl IntoResponse {
    let blocked = health.blocked();
    if blocked.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        let mut body = String::from("not ready:\n");
        for (component, reason) in blocked {
            body.push_str(&format!("{component}: {reason}\n"));
        }
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}
