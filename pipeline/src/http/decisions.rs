//! `POST /api/decisions/{id}/approve` and `/reject`: a verdict over HTTP, for a
//! person or a chat bot, with the API's bearer token.
//!
//! The handler decides nothing: it produces the verdict on `cara.approvals`, as a
//! tool with Kafka access would, and answers 202 once the broker has it. The
//! decision stage applies it in the order of its input log, so a verdict given over
//! HTTP replays like any other. Without `http.token` the endpoint refuses (403):
//! approving a risky action must not be open to anyone who reaches the port.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cara_operators::decisions::records::VerdictRecord;
use cara_operators::decisions::VerdictKind;
use serde::Deserialize;

use super::AppState;
use crate::outbound::OutboundSink;

/// How long producing a verdict may wait for the broker.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Where verdicts given over HTTP go.
pub struct ApprovalsEndpoint {
    /// A producer.
    pub sink: OutboundSink,
    /// `cara.approvals`.
    pub topic: String,
}

/// The body of a verdict.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VerdictBody {
    by: String,
    #[serde(default)]
    reason: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Produces the verdict on the approvals topic; 202 once acknowledged.
pub(super) async fn post_verdict(
    State(state): State<AppState>,
    Path((decision_id, verdict)): Path<(String, String)>,
    body: Result<Json<VerdictBody>, JsonRejection>,
) -> Response {
    let Some(endpoint) = state.approvals.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "no decisions here: the config has no [[policy]]",
        );
    };
    if !state.token_required {
        return error(
            StatusCode::FORBIDDEN,
            "approving over HTTP needs http.token (or CARA_HTTP_TOKEN) set, so that not everyone who reaches the port can",
        );
    }
    let verdict = match verdict.as_str() {
        "approve" => VerdictKind::Approve,
        "reject" => VerdictKind::Reject,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "`{other}` is not a verdict: POST /api/decisions/{{id}}/approve or /reject"
                ),
            )
        }
    };
    let body = match body {
        Ok(Json(body)) => body,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{rejection}; send {{\"by\": \"who\", \"reason\": \"why\"}}"),
            )
        }
    };
    let record = VerdictRecord {
        decision_id,
        verdict,
        by: body.by,
        reason: body.reason,
    };
    use cara_operators::exchange::ExchangeRecord;
    let bounds = cara_operators::time::EventTimeBounds {
        oldest_ms: i64::MIN,
        newest_ms: i64::MAX,
    };
    if let Err(reason) = record.validate(&bounds) {
        return error(StatusCode::BAD_REQUEST, reason);
    }
    // Strings and an enum: serialising cannot fail.
    let payload = serde_json::to_vec(&record).unwrap_or_default();
    let key = record.decision_id.clone();
    let sent = tokio::task::spawn_blocking({
        let endpoint = Arc::clone(&endpoint);
        move || {
            endpoint
                .sink
                .send_raw(&endpoint.topic, &key, &payload, SEND_TIMEOUT)
        }
    })
    .await;
    match sent {
        Ok(Ok(())) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({
                "decision_id": record.decision_id,
                "verdict": verdict,
                "by": record.by,
                "topic": endpoint.topic,
                "note": "recorded; the decision stage applies it in order (see table decisions)",
            })),
        )
            .into_response(),
        Ok(Err(e)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the verdict could not be recorded on {}: {e}; try again",
                endpoint.topic
            ),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
