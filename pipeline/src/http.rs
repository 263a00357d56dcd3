//! The HTTP listener: `/healthz` (process alive), `/readyz` (consuming, broker
//! reachable, archive writable), `/metrics` (Prometheus text),
//! `/api/templates?service=&limit=` (the log templates mined so far, as JSON) and
//! `/api/graph?minutes=` (the service dependency graph of the last minutes of event
//! time, read from table `service_graph` with SQL).

use std::net::SocketAddr;
use std::path::PathBuf;
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
    archive: Arc<PathBuf>,
}

/// The router serving cara's endpoints over the archive at `archive`.
pub fn router(
    telemetry: Arc<Telemetry>,
    templates: Arc<TemplateCatalog>,
    archive: PathBuf,
) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/templates", get(list_templates))
        .route("/api/graph", get(service_graph))
        .with_state(AppState {
            telemetry,
            templates,
            archive: Arc::new(archive),
        })
}

/// Query of `GET /api/graph`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphQuery {
    /// Minutes of event time before the latest archived minute (default 15).
    minutes: Option<u32>,
}

/// The edges of the last `minutes` of table `service_graph`: per caller and callee,
/// calls, errors, error ratio and the worst minute's p99.
async fn service_graph(
    State(state): State<AppState>,
    query: Result<Query<GraphQuery>, QueryRejection>,
) -> impl IntoResponse {
    let minutes = match query {
        Ok(Query(q)) => q.minutes.unwrap_or(15).max(1),
        Err(rejection) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({ "error": format!("{rejection}; use ?minutes=N") })),
            )
        }
    };
    let sql = format!(
        "SELECT caller, callee, CAST(sum(requests) AS BIGINT) AS calls, \
         CAST(sum(errors) AS BIGINT) AS errors, max(p99_ms) AS p99_ms, \
         CAST(min(window_start) AS BIGINT) AS from_ms, CAST(max(window_end) AS BIGINT) AS to_ms \
         FROM service_graph \
         WHERE window_start >= (SELECT max(window_start) FROM service_graph) - INTERVAL '{minutes} minutes' \
         GROUP BY caller, callee ORDER BY caller, callee"
    );
    let result = async {
        let archive = cara_sql::ArchiveQuery::open(state.archive.as_path()).await?;
        let batches = archive.query(&sql).await?;
        cara_sql::format(&batches, cara_sql::OutputFormat::Json)
    }
    .await;
    match result {
        Ok(lines) => {
            let edges: Vec<serde_json::Value> = lines
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .map(|mut edge: serde_json::Value| {
                    let calls = edge["calls"].as_f64().unwrap_or(0.0);
                    let errors = edge["errors"].as_f64().unwrap_or(0.0);
                    edge["error_ratio"] =
                        serde_json::json!(if calls > 0.0 { errors / calls } else { 0.0 });
                    edge
                })
                .collect();
            (
                StatusCode::OK,
                Json(serde_json::json!({ "minutes": minutes, "edges": edges })),
            )
        }
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({ "error": format!("reading table service_graph: {error}") })),
        ),
    }
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
