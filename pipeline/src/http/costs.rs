//! `GET /api/costs?by=&from=&to=`: what owners' usage cost, summed from table
//! `costs` with SQL (built with feature `sql`).
//!
//! `by` is a comma-separated list of `owner` (also spelt as the configured owner
//! label, e.g. `team`), `resource` and `window` (default: `owner`); `from` and `to`
//! bound the windows (RFC 3339 or epoch milliseconds; a window counts when it
//! starts at or after `from` and ends at or before `to`). Money is returned as exact
//! decimal strings, summed in micro-units, so the groups add up to `total`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use cara_operators::cost::money::decimal_text;
use serde::Deserialize;

use super::graph::API_QUERY_LIMITS;
use super::AppState;

/// Query of `GET /api/costs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CostsQuery {
    by: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// A grouping column of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Owner,
    Resource,
    Window,
}

impl Group {
    fn select(self) -> &'static str {
        match self {
            Group::Owner => "owner",
            Group::Resource => "resource, unit",
            Group::Window => "CAST(window_start AS BIGINT) AS window_start_ms",
        }
    }

    fn group_by(self) -> &'static str {
        match self {
            Group::Owner => "owner",
            Group::Resource => "resource, unit",
            Group::Window => "window_start",
        }
    }
}

/// The groups `by` names; the reason when it names something else.
fn groups(by: Option<&str>, owner_label: &str) -> Result<Vec<Group>, String> {
    let mut groups = Vec::new();
    for name in by.unwrap_or("owner").split(',').map(str::trim) {
        let group = match name {
            "owner" => Group::Owner,
            label if label == owner_label => Group::Owner,
            "resource" => Group::Resource,
            "window" => Group::Window,
            other => {
                return Err(format!(
                    "by={other}: group by owner (or {owner_label}), resource or window"
                ))
            }
        };
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    Ok(groups)
}

/// Milliseconds since the epoch of `text`: an integer, or an RFC 3339 time.
fn instant(key: &str, text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{key}={text}: not epoch milliseconds or an RFC 3339 time ({e})"))
}

/// The SQL of a request.
fn costs_sql(groups: &[Group], from_ms: Option<i64>, to_ms: Option<i64>) -> String {
    let select: Vec<&str> = groups.iter().map(|g| g.select()).collect();
    let group_by: Vec<&str> = groups.iter().map(|g| g.group_by()).collect();
    let mut filters = vec!["true".to_owned()];
    if let Some(from) = from_ms {
        filters.push(format!("CAST(window_start AS BIGINT) >= {from}"));
    }
    if let Some(to) = to_ms {
        filters.push(format!("CAST(window_end AS BIGINT) <= {to}"));
    }
    let usage = if groups.contains(&Group::Resource) {
        "sum(usage) AS usage, "
    } else {
        ""
    };
    format!(
        "SELECT {}, {usage}\
         CAST(sum(cost) * 1000000 AS BIGINT) AS cost, CAST(sum(shared) * 1000000 AS BIGINT) AS shared, \
         CAST(sum(idle) * 1000000 AS BIGINT) AS idle, CAST(sum(total) * 1000000 AS BIGINT) AS total, \
         min(currency) AS currency \
         FROM costs WHERE {} GROUP BY {} ORDER BY {}",
        select.join(", "),
        filters.join(" AND "),
        group_by.join(", "),
        group_by.join(", "),
    )
}

fn bad_request(error: String) -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": error })),
    )
}

/// The costs of the windows between `from` and `to`, grouped as `by` says.
pub(super) async fn costs(
    State(state): State<AppState>,
    query: Result<Query<CostsQuery>, QueryRejection>,
) -> impl IntoResponse {
    let q = match query {
        Ok(Query(q)) => q,
        Err(rejection) => {
            return bad_request(format!("{rejection}; use ?by=owner,resource&from=&to="))
        }
    };
    let parsed = (|| {
        let groups = groups(q.by.as_deref(), &state.cost_owner_label)?;
        let from = q.from.as_deref().map(|t| instant("from", t)).transpose()?;
        let to = q.to.as_deref().map(|t| instant("to", t)).transpose()?;
        Ok::<_, String>((groups, from, to))
    })();
    let (groups, from, to) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return bad_request(error),
    };
    if !state.archive.join("costs").is_dir() {
        return (
            StatusCode::OK,
            Json(serde_json::json!({ "groups": [], "total": "0.000000" })),
        );
    }
    let sql = costs_sql(&groups, from, to);
    let result = async {
        let archive =
            cara_sql::ArchiveQuery::open_with(state.archive.as_path(), API_QUERY_LIMITS).await?;
        let rows = archive.query(&sql).await?;
        cara_sql::format(&rows, cara_sql::OutputFormat::Json)
    }
    .await;
    let lines = match result {
        Ok(lines) => lines,
        Err(error) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({ "error": format!("reading table costs: {error}") })),
            )
        }
    };
    let mut total: i64 = 0;
    let rows: Vec<serde_json::Value> = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|mut row| {
            for money in ["cost", "shared", "idle", "total"] {
                let micros = row[money].as_i64().unwrap_or(0);
                if money == "total" {
                    total = total.saturating_add(micros);
                }
                row[money] = serde_json::Value::String(decimal_text(micros));
            }
            row
        })
        .collect();
    (
        StatusCode::OK,
        Json(serde_json::json!({ "groups": rows, "total": decimal_text(total) })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_times_are_read_or_refused_with_the_reason() {
        assert_eq!(groups(None, "team"), Ok(vec![Group::Owner]));
        assert_eq!(
            groups(Some("team,resource,window,owner"), "team"),
            Ok(vec![Group::Owner, Group::Resource, Group::Window])
        );
        let e = groups(Some("service"), "team").unwrap_err();
        assert!(e.contains("by=service") && e.contains("team"), "{e}");
        assert_eq!(instant("from", "1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(
            instant("from", "2023-11-14T22:13:20Z"),
            Ok(1_700_000_000_000)
        );
        assert!(instant("to", "yesterday")
            .unwrap_err()
            .starts_with("to=yesterday"));
        let sql = costs_sql(&[Group::Resource], Some(1), Some(2));
        assert!(
            sql.contains("sum(usage)") && sql.contains(">= 1") && sql.contains("<= 2"),
            "{sql}"
        );
        assert!(!costs_sql(&[Group::Owner], None, None).contains("usage"));
    }
}
