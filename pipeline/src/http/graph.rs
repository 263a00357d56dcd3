//! `GET /api/graph?minutes=`: the service dependency graph of the last minutes of
//! event time, read from table `service_graph` with SQL (built with feature `sql`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use super::AppState;

/// What a query behind an API may use: it runs inside the pipeline's process.
pub(super) const API_QUERY_LIMITS: cara_sql::QueryLimits = cara_sql::QueryLimits {
    memory_bytes: 256 << 20,
    timeout: std::time::Duration::from_secs(30),
    max_result_bytes: 64 << 20,
};

/// The longest look-back `/api/graph` takes: a year of minutes.
const MAX_GRAPH_MINUTES: u32 = 366 * 24 * 60;

/// Query of `GET /api/graph`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GraphQuery {
    /// Minutes of event time before the latest archived minute (default 15).
    minutes: Option<u32>,
}

/// The edges of the last `minutes` of table `service_graph`: per caller and callee,
/// calls, errors, error ratio and the worst minute's p99.
pub(super) async fn service_graph(
    State(state): State<AppState>,
    query: Result<Query<GraphQuery>, QueryRejection>,
) -> impl IntoResponse {
    let minutes = match query {
        Ok(Query(q)) if q.minutes.is_some_and(|m| m > MAX_GRAPH_MINUTES) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(
                    serde_json::json!({ "error": format!("minutes must be at most {MAX_GRAPH_MINUTES} (a year)") }),
                ),
            )
        }
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
        let archive =
            cara_sql::ArchiveQuery::open_with(state.archive.as_path(), API_QUERY_LIMITS).await?;
        let rows = archive.query(&sql).await?;
        cara_sql::format(&rows, cara_sql::OutputFormat::Json)
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
