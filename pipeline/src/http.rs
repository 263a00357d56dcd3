//! The HTTP listener: `/healthz` (process alive), `/readyz` (consuming, broker
//! reachable, archive writable), `/metrics` (Prometheus text) and
//! `/api/templates?service=&limit=` (the log templates mined so far, as JSON).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::telemetry::Telemetry;
use crate::templates::TemplateCatalog;

/// What the handlers read.
#[derive(Clone)]
struct AppState {
    telemetry: Arc<Telemetry>,
    templates: Arc<TemplateCatalog>,
}

/// The router serving cara's endpoints.
pub fn router(telemetry: Arc<Telemetry>, templates: Arc<TemplateCatalog>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/templates", get(list_templates))
        .with_state(AppState {
            telemetry,
            templates,
        })
}

/// Query of `GET /api/templates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplatesQuery {
    /// Only this service's templates.
    service: Option<String>,
    /// At most this many (default 1000), most frequent first.
    limit: Option<usize>,
}

async fn list_templates(
    State(state): State<AppState>,
    query: Result<Query<TemplatesQuery>, QueryRejection>,
) -> impl IntoResponse {
    match query {
        Ok(Query(q)) => {
            let list = state
                .templates
                .list(q.service.as_deref(), q.limit.unwrap_or(1000));
            (
                StatusCode::OK,
                Json(serde_json::json!({ "templates": list })),
            )
        }
        Err(rejection) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({
                "error": format!("{rejection}; use ?service=NAME&limit=N"),
            })),
        ),
    }
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let t = &state.telemetry;
    match t.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let t = &state.telemetry;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        t.encode(),
    )
}

/// Binds `addr`; the caller serves the returned listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
