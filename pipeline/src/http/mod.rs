//! The HTTP listener: `/healthz` (process alive), `/readyz` (consuming, broker
//! reachable, archive writable), `/metrics` (Prometheus text),
//! `/api/templates?service=&limit=` (the log templates mined so far, as JSON) and
//! `/api/graph?minutes=` (the service dependency graph of the last minutes of event
//! time, read from table `service_graph` with SQL), `/api/costs?by=&from=&to=`
//! (costs per owner, resource or window from table `costs`, see `costs`) and
//! `POST /api/decisions/{id}/approve|reject` (a verdict, see [`decisions`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::net::TcpListener;

#[cfg(feature = "sql")]
mod costs;
pub mod decisions;
#[cfg(feature = "sql")]
mod graph;

use crate::telemetry::Telemetry;
use crate::templates::TemplateCatalog;

/// What the handlers read.
#[derive(Clone)]
struct AppState {
    telemetry: Arc<Telemetry>,
    templates: Arc<TemplateCatalog>,
    /// Read by the SQL-backed APIs (feature `sql`).
    #[cfg_attr(not(feature = "sql"), allow(dead_code))]
    archive: Arc<PathBuf>,
    /// Where verdicts go, when the config has a policy.
    approvals: Option<Arc<decisions::ApprovalsEndpoint>>,
    /// Whether `/api/` requires the bearer token.
    token_required: bool,
    /// The label naming a cost's owner (`/api/costs?by=` takes it for `owner`).
    #[cfg_attr(not(feature = "sql"), allow(dead_code))]
    cost_owner_label: Arc<str>,
}

/// The router serving cara's endpoints over the archive at `archive`. With a
/// `token`, every `/api/` endpoint requires `Authorization: Bearer <token>`;
/// `/healthz`, `/readyz` and `/metrics` stay open for probes and scrapers.
pub fn router(
    telemetry: Arc<Telemetry>,
    templates: Arc<TemplateCatalog>,
    archive: PathBuf,
    token: Option<String>,
    approvals: Option<decisions::ApprovalsEndpoint>,
    cost_owner_label: &str,
) -> Router {
    let token_required = token.is_some();
    let api = Router::new()
        .route("/api/templates", get(list_templates))
        .route(
            "/api/decisions/{id}/{verdict}",
            post(decisions::post_verdict),
        );
    #[cfg(feature = "sql")]
    let api = api
        .route("/api/graph", get(graph::service_graph))
        .route("/api/costs", get(costs::costs));
    let mut api = api;
    if let Some(token) = token {
        let token: Arc<str> = token.into();
        api = api.layer(axum::middleware::from_fn(move |request, next| {
            require_token(token.clone(), request, next)
        }));
    }
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api)
        .with_state(AppState {
            telemetry,
            templates,
            archive: Arc::new(archive),
            approvals: approvals.map(Arc::new),
            token_required,
            cost_owner_label: cost_owner_label.into(),
        })
}

/// Lets a request through only with `Authorization: Bearer <token>`.
async fn require_token(
    token: Arc<str>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented.is_some_and(|p| same_secret(p.as_bytes(), token.as_bytes())) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({
            "error": "missing or wrong bearer token; send `Authorization: Bearer <http.token>` (the token of the config's http.token or CARA_HTTP_TOKEN)"
        })),
    )
        .into_response()
}

/// Compares two secrets in time that depends on their lengths only.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    let notices: String = t
        .notices()
        .iter()
        .map(|n| format!("notice: {n}\n"))
        .collect();
    match t.readiness() {
        Ok(()) => (StatusCode::OK, format!("ready\n{notices}")),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(same_secret(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same_secret(b"0123456789abcdef", b"0123456789abcdeg"));
        assert!(!same_secret(b"0123456789abcdef", b"0123456789abcde"));
        assert!(!same_secret(b"", b"x"));
    }
}
