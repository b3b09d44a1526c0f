//! HTTP endpoints: `/metrics` on the metrics address; `/healthz` and `/readyz` on the health
//! address. Ready means every watch has delivered its first list.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::errors::ShellError;
use super::runtime::EngineQuery;

/// Readiness source for `/readyz`.
#[derive(Clone)]
pub struct Health {
    synced: tokio::sync::watch::Receiver<bool>,
}

impl Health {
    /// Health that turns ready when `synced` becomes true.
    pub fn new(synced: tokio::sync::watch::Receiver<bool>) -> Health {
        Health { synced }
    }
}

/// Binds a listener, with an error that names the address.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, ShellError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ShellError::Bind {
            address: address.to_string(),
            source,
        })
}

async fn metrics(State(queries): State<mpsc::Sender<EngineQuery>>) -> impl IntoResponse {
    let (reply, answer) = oneshot::channel();
    if queries.send(EngineQuery::Metrics(reply)).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            String::from("engine stopped\n"),
        )
            .into_response();
    }
    match answer.await {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            String::from("engine stopped\n"),
        )
            .into_response(),
    }
}

/// Serves `/metrics` until cancelled.
pub async fn serve_metrics(
    listener: TcpListener,
    queries: mpsc::Sender<EngineQuery>,
    cancel: CancellationToken,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(queries);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "metrics server failed");
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    if *health.synced.borrow() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced\n")
    }
}

/// Serves `/healthz` and `/readyz` until cancelled.
pub async fn serve_health(listener: TcpListener, health: Health, cancel: CancellationToken) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "health server failed");
    }
}
