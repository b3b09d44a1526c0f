//! HTTP endpoints: `/metrics` on the metrics address; `/healthz` and `/readyz` on the health
//! address. Ready means every watch has delivered its first list.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt as _;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::errors::ShellError;
use crate::core::metrics_model::ExpositionCursor;

/// Requests the HTTP server sends to the engine task.
pub enum EngineQuery {
    /// Render the chunk of `/metrics` that starts at the cursor; the answer carries where the
    /// next one starts (`None` after the last).
    MetricsChunk {
        /// Where the chunk starts.
        cursor: ExpositionCursor,
        /// Where the chunk goes.
        reply: oneshot::Sender<(String, Option<ExpositionCursor>)>,
    },
}

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

/// Asks the engine task for the chunk of `/metrics` at `cursor`; `None` when it has stopped.
async fn metrics_chunk(
    queries: &mpsc::Sender<EngineQuery>,
    cursor: ExpositionCursor,
) -> Option<(String, Option<ExpositionCursor>)> {
    let (reply, answer) = oneshot::channel();
    queries
        .send(EngineQuery::MetricsChunk { cursor, reply })
        .await
        .ok()?;
    answer.await.ok()
}

/// `/metrics`, streamed: each chunk is rendered by the engine task when the previous one has
/// been taken, so a scrape holds one chunk, not the whole exposition. The first chunk is
/// fetched before the status line, so a stopped engine still answers 503.
async fn metrics(State(queries): State<mpsc::Sender<EngineQuery>>) -> Response {
    let Some((first, next)) = metrics_chunk(&queries, ExpositionCursor::default()).await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            String::from("engine stopped\n"),
        )
            .into_response();
    };
    let rest = futures::stream::unfold((next, queries), |(next, queries)| async move {
        match metrics_chunk(&queries, next?).await {
            Some((text, next)) => Some((Ok(text), (next, queries))),
            // Cut the body short: the client sees an incomplete response, not a partial
            // exposition that looks whole.
            None => Some((
                Err(std::io::Error::other("engine stopped")),
                (None, queries),
            )),
        }
    });
    let chunks = futures::stream::once(async { Ok(first) }).chain(rest);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        Body::from_stream(chunks),
    )
        .into_response()
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
