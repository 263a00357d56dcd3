//! Arrow schemas of the tables cara archives and queries.
//!
//! Owns the column names, types and nullability of every input table (`metrics`,
//! `logs`, `spans`) and of the dead-letter table `dlq`. Decoders build batches with
//! exactly these schemas, the archive writes them, and SQL reads them; nothing else
//! may invent a column. Provenance columns (`_topic`, `_partition`, `_offset`,
//! `_index`) say which Kafka record (and which element of a JSON array) a row came
//! from, which makes exactly-once archiving checkable with a plain `GROUP BY`.
//!
//! Output tables (alerts, incidents, decisions, slo, costs) are defined by the
//! capabilities that produce them.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Arrow type used for every event-time column: milliseconds since the Unix epoch, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The `labels` column type: a map of string keys to string values.
pub fn labels_type() -> DataType {
    DataType::Map(Arc::new(labels_entries_field()), false)
}

/// The entries field of [`labels_type`], as Arrow's `MapBuilder` produces it.
pub fn labels_entries_field() -> Field {
    Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("keys", DataType::Utf8, false),
            Field::new("values", DataType::Utf8, true),
        ])),
        false,
    )
}

/// A table in cara's archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Metric points from `telemetry.metrics`.
    Metrics,
    /// Log lines from `telemetry.logs`.
    Logs,
    /// Spans from `telemetry.spans`.
    Spans,
    /// Messages that could not be decoded, with the reason.
    Dlq,
    /// Alerts (firing and resolved), as sent to `cara.alerts`.
    Alerts,
    /// Windowed aggregates of metric series, as the operators saw them.
    MetricWindows,
    /// Lines per service and log template per window.
    LogWindows,
    /// Log templates, one row per new version (created or generalised).
    LogTemplates,
    /// Per-minute SLO counts of each source partition, as exchanged between the two
    /// SLO stages (the input of the combining stage).
    SloPartials,
    /// SLO status records, one per SLO per minute, as sent to `cara.slo`.
    Slo,
    /// Per-minute trace cells of each source partition, as exchanged between the
    /// two trace stages.
    TracePartials,
    /// RED metrics per service, operation and minute.
    Red,
    /// Calls between services per caller, callee and minute.
    ServiceGraph,
    /// Per-window template counts of each log partition, as exchanged between the
    /// two log stages.
    LogPartials,
    /// Alert transitions and calls of every alert-raising stage, with its
    /// progress, as exchanged with the incident stage.
    AlertPartials,
    /// Incident transitions (open, update, merged, resolved), as sent to
    /// `cara.incidents`.
    Incidents,
    /// Verdicts people gave on `cara.approvals`.
    Approvals,
    /// The decision stage's input log: incidents, verdicts, clock ticks, action
    /// results, in the order applied.
    DecisionInputs,
    /// Decision state changes, as sent to `cara.decisions`.
    Decisions,
    /// The audit trail: every decision state change and verdict, hash-chained.
    Audit,
    /// One row per exchange record of the cost stages (`record`: its JSON).
    CostPartials,
    /// Each owner's cost of each resource per window (see `crate::cost`).
    Costs,
    /// Each forecast series' predicted values and time to exhaustion (see
    /// `crate::capacity`).
    Capacity,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 23] = [
        Table::Metrics,
        Table::Logs,
        Table::Spans,
        Table::Dlq,
        Table::Alerts,
        Table::MetricWindows,
        Table::LogWindows,
        Table::LogTemplates,
        Table::SloPartials,
        Table::Slo,
        Table::TracePartials,
        Table::Red,
        Table::ServiceGraph,
        Table::LogPartials,
        Table::AlertPartials,
        Table::Incidents,
        Table::Approvals,
        Table::DecisionInputs,
        Table::Decisions,
        Table::Audit,
        Table::CostPartials,
        Table::Costs,
        Table::Capacity,
    ];

    /// The table's name in the archive and in SQL.
    pub fn name(self) -> &'static str {
        match self {
            Table::Metrics => "metrics",
            Table::Logs => "logs",
            Table::Spans => "spans",
            Table::Dlq => "dlq",
            Table::Alerts => "alerts",
            Table::MetricWindows => "metric_windows",
            Table::LogWindows => "log_windows",
            Table::LogTemplates => "log_templates",
            Table::SloPartials => "slo_partials",
            Table::Slo => "slo",
            Table::TracePartials => "trace_partials",
            Table::Red => "red",
            Table::ServiceGraph => "service_graph",
            Table::LogPartials => "log_partials",
            Table::AlertPartials => "alert_partials",
            Table::Incidents => "incidents",
            Table::Approvals => "approvals",
            Table::DecisionInputs => "decision_inputs",
            Table::Decisions => "decisions",
            Table::Audit => "audit",
            Table::CostPartials => "cost_partials",
            Table::Costs => "costs",
            Table::Capacity => "capacity",
        }
    }

    /// Looks a table up by its SQL name.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The table's Arrow schema (shared, built once).
    pub fn schema(self) -> SchemaRef {
        static SCHEMAS: OnceLock<[SchemaRef; 23]> = OnceLock::new();
        let all = SCHEMAS.get_or_init(|| {
            [
                Arc::new(metrics_schema()),
                Arc::new(logs_schema()),
                Arc::new(spans_schema()),
                Arc::new(dlq_schema()),
                Arc::new(alerts_schema()),
                Arc::new(metric_windows_schema()),
                Arc::new(log_windows_schema()),
                Arc::new(log_templates_schema()),
                Arc::new(slo_partials_schema()),
                Arc::new(slo_schema()),
                Arc::new(trace_partials_schema()),
                Arc::new(cells_schema("service", "operation")),
                Arc::new(cells_schema("caller", "callee")),
                Arc::new(log_partials_schema()),
                Arc::new(alert_partials_schema()),
                Arc::new(incidents_schema()),
                Arc::new(approvals_schema()),
                Arc::new(decision_inputs_schema()),
                Arc::new(decisions_schema()),
                Arc::new(audit_schema()),
                Arc::new(cost_partials_schema()),
                Arc::new(costs_schema()),
                Arc::new(capacity_schema()),
            ]
        });
        all[self as usize].clone()
    }

    /// Leaf columns (dotted paths) whose values repeat a lot: service names, levels,
    /// label keys. Dictionary encoding pays off for these only; for ids, times,
    /// measurements and free text it costs time and saves nothing.
    pub fn repetitive_columns(self) -> &'static [&'static str] {
        match self {
            Table::Metrics => &[
                "name",
                "type",
                "service",
                "labels.entries.keys",
                "labels.entries.values",
                "_topic",
                "_partition",
            ],
            Table::Logs => &[
                "service",
                "level",
                "host",
                "template_id",
                "template",
                "_topic",
                "_partition",
            ],
            Table::Spans => &["service", "name", "kind", "status", "_topic", "_partition"],
            Table::Dlq => &["topic", "partition", "reason"],
            Table::Alerts => &["rule", "kind", "severity", "status", "_topic", "_partition"],
            Table::MetricWindows => &[
                "series",
                "name",
                "labels.entries.keys",
                "labels.entries.values",
                "_topic",
                "_partition",
            ],
            Table::LogWindows => &["service", "_topic", "_partition"],
            Table::LogTemplates => &["service", "_topic", "_partition"],
            Table::SloPartials => &["slo", "source_topic", "_topic", "_partition"],
            Table::Slo => &["slo"],
            Table::TracePartials => &["source_topic", "_topic", "_partition"],
            Table::Red => &["service", "operation"],
            Table::ServiceGraph => &["caller", "callee"],
            Table::LogPartials => &["source_topic", "_topic", "_partition"],
            Table::AlertPartials => &["source_topic", "_topic", "_partition"],
            Table::Incidents => &["status", "severity", "cause"],
            Table::Approvals => &["_topic", "_partition"],
            Table::DecisionInputs => &["source_topic", "_topic", "_partition"],
            Table::Decisions => &["action", "kind", "risk", "policy_rule", "state"],
            Table::Audit => &["event"],
            Table::CostPartials => &["source_topic", "_topic", "_partition"],
            Table::Costs => &["owner", "resource", "unit", "currency"],
            Table::Capacity => &["series", "metric", "labels"],
        }
    }

    /// The column whose value decides the `date=`/`hour=` partition of a row.
    pub fn time_column(self) -> &'static str {
        match self {
            Table::Metrics | Table::Logs => "ts",
            Table::Spans => "start",
            Table::Dlq => "kafka_ts",
            Table::Alerts => "at",
            Table::MetricWindows | Table::LogWindows => "window_start",
            Table::LogTemplates => "version_at",
            Table::SloPartials => "through",
            Table::Slo => "ts",
            Table::TracePartials => "through",
            Table::Red | Table::ServiceGraph => "window_start",
            Table::LogPartials | Table::AlertPartials => "through",
            Table::Incidents => "at",
            Table::Approvals => "received_at",
            Table::DecisionInputs => "through",
            Table::Decisions | Table::Audit => "at",
            Table::CostPartials => "through",
            Table::Costs => "window_start",
            Table::Capacity => "at",
        }
    }
}

fn provenance_fields() -> Vec<Field> {
    vec![
        Field::new("_topic", DataType::Utf8, false),
        Field::new("_partition", DataType::Int32, false),
        Field::new("_offset", DataType::Int64, false),
        Field::new("_index", DataType::Int32, false),
    ]
}

fn with_provenance(mut fields: Vec<Field>) -> Schema {
    fields.extend(provenance_fields());
    Schema::new(fields)
}

fn metrics_schema() -> Schema {
    with_provenance(vec![
        Field::new("ts", timestamp_type(), false),
        Field::new("name", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("service", DataType::Utf8, true),
        Field::new("labels", labels_type(), false),
        Field::new("extra", DataType::Utf8, true),
    ])
}

fn logs_schema() -> Schema {
    with_provenance(vec![
        Field::new("ts", timestamp_type(), false),
        Field::new("service", DataType::Utf8, false),
        Field::new("level", DataType::Utf8, false),
        // The level as the line wrote it (null without one) and OpenTelemetry's
        // severity number of it (0 when `level` is `unknown`). Nullable: archives
        // written before they existed read them as null.
        Field::new("level_text", DataType::Utf8, true),
        Field::new("severity_number", DataType::Int32, true),
        Field::new("message", DataType::Utf8, false),
        Field::new("trace_id", DataType::Utf8, true),
        Field::new("host", DataType::Utf8, true),
        Field::new("attributes", DataType::Utf8, true),
        Field::new("extra", DataType::Utf8, true),
        // Filled by the log operator (null when it is off).
        Field::new("template_id", DataType::Int64, true),
        Field::new("template", DataType::Utf8, true),
        Field::new(
            "params",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ])
}

/// One row per service and log template per fired tumbling window.
fn log_windows_schema() -> Schema {
    Schema::new(vec![
        Field::new("service", DataType::Utf8, false),
        Field::new("template_id", DataType::Int64, false),
        Field::new("window_start", timestamp_type(), false),
        Field::new("window_end", timestamp_type(), false),
        Field::new("lines", DataType::Int64, false),
        Field::new("error_lines", DataType::Int64, false),
        Field::new("first_seen", DataType::Boolean, false),
        Field::new("_topic", DataType::Utf8, false),
        Field::new("_partition", DataType::Int32, false),
    ])
}

/// One row per version of a log template: when a line created it or made one of
/// its tokens a variable. The latest version of a template is the row with the
/// largest `version_at` (ties: largest `count`).
fn log_templates_schema() -> Schema {
    Schema::new(vec![
        Field::new("service", DataType::Utf8, false),
        Field::new("template_id", DataType::Int64, false),
        Field::new("template", DataType::Utf8, false),
        Field::new("version_at", timestamp_type(), false),
        Field::new("first_seen", timestamp_type(), false),
        Field::new("count", DataType::Int64, false),
        Field::new("_topic", DataType::Utf8, false),
        Field::new("_partition", DataType::Int32, false),
    ])
}

fn spans_schema() -> Schema {
    with_provenance(vec![
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("span_id", DataType::Utf8, false),
        Field::new("parent_span_id", DataType::Utf8, true),
        Field::new("service", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, true),
        Field::new("start", timestamp_type(), false),
        Field::new("end", timestamp_type(), false),
        Field::new("duration_ms", DataType::Float64, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("attributes", DataType::Utf8, true),
        Field::new("extra", DataType::Utf8, true),
    ])
}

/// Alert records (DESIGN.md, "Output records"), one row per transition. `at` is the
/// event time of the transition (`starts_at` when firing, `ends_at` when resolved);
/// the provenance columns locate the input row that caused it.
fn alerts_schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("at", timestamp_type(), false),
        Field::new("starts_at", timestamp_type(), false),
        Field::new("ends_at", timestamp_type(), true),
        Field::new("labels", labels_type(), false),
        Field::new("summary", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("value", DataType::Float64, false),
        Field::new("threshold", DataType::Float64, false),
        Field::new("window_start", timestamp_type(), false),
        Field::new("window_end", timestamp_type(), false),
        Field::new("evidence", DataType::Utf8, false),
        Field::new("_topic", DataType::Utf8, false),
        Field::new("_partition", DataType::Int32, false),
        Field::new("_offset", DataType::Int64, false),
    ])
}

/// One row per metric series per fired tumbling window: what the operators aggregated.
fn metric_windows_schema() -> Schema {
    Schema::new(vec![
        Field::new("series", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("labels", labels_type(), false),
        Field::new("window_start", timestamp_type(), false),
        Field::new("window_end", timestamp_type(), false),
        Field::new("count", DataType::Int64, false),
        Field::new("sum", DataType::Float64, false),
        Field::new("min", DataType::Float64, false),
        Field::new("max", DataType::Float64, false),
        Field::new("mean", DataType::Float64, false),
        Field::new("_topic", DataType::Utf8, false),
        Field::new("_partition", DataType::Int32, false),
    ])
}

/// One row per minute of one SLO from one source partition (a record with no
/// minutes, which only says how far the source has got, is one row with null
/// `minute`, `good` and `total`). `through`: every minute before it is final for the
/// source. Provenance: the exchange topic's record (`_index`: the minute's place in it).
fn slo_partials_schema() -> Schema {
    with_provenance(vec![
        Field::new("slo", DataType::Utf8, false),
        Field::new("source_topic", DataType::Utf8, false),
        Field::new("source_partition", DataType::Int32, false),
        Field::new("through", timestamp_type(), false),
        Field::new("minute", timestamp_type(), true),
        Field::new("good", DataType::Int64, true),
        Field::new("total", DataType::Int64, true),
    ])
}

/// The good/total/burn-rate struct of one SLO window.
pub fn slo_window_type() -> DataType {
    DataType::Struct(Fields::from(vec![
        Field::new("good", DataType::Int64, false),
        Field::new("total", DataType::Int64, false),
        Field::new("burn_rate", DataType::Float64, false),
    ]))
}

/// The `windows` column of table `slo`: one [`slo_window_type`] field per burn-rate
/// window (`5m` … `3d`).
pub fn slo_windows_type() -> DataType {
    DataType::Struct(Fields::from(
        crate::slo::WINDOWS
            .iter()
            .map(|(name, _)| Field::new(*name, slo_window_type(), false))
            .collect::<Vec<_>>(),
    ))
}

/// SLO status records (DESIGN.md: one per SLO per minute): window `w` of the row at
/// `ts` covers event times in `[ts - w, ts)`; `budget_remaining` covers the period.
fn slo_schema() -> Schema {
    Schema::new(vec![
        Field::new("slo", DataType::Utf8, false),
        Field::new("ts", timestamp_type(), false),
        Field::new("windows", slo_windows_type(), false),
        Field::new("budget_remaining", DataType::Float64, false),
    ])
}

/// One row per exchange record of the trace stages (`record`: its JSON, cells
/// included; `minute` null for a record that only reports progress).
fn trace_partials_schema() -> Schema {
    with_provenance(vec![
        Field::new("source_topic", DataType::Utf8, false),
        Field::new("source_partition", DataType::Int32, false),
        Field::new("through", timestamp_type(), false),
        Field::new("minute", timestamp_type(), true),
        Field::new("red_cells", DataType::Int64, false),
        Field::new("edge_cells", DataType::Int64, false),
        Field::new("record", DataType::Utf8, false),
    ])
}

/// One row per exchange record of the log stages (`record`: its JSON, template
/// counts included; `window_start` null for a record that only reports progress).
fn log_partials_schema() -> Schema {
    with_provenance(vec![
        Field::new("source_topic", DataType::Utf8, false),
        Field::new("source_partition", DataType::Int32, false),
        Field::new("through", timestamp_type(), false),
        Field::new("window_start", timestamp_type(), true),
        Field::new("templates", DataType::Int64, false),
        Field::new("record", DataType::Utf8, false),
    ])
}

/// One row per exchange record of the cost stages (`record`: its JSON, usage
/// included; `window_start` null for a record that only reports progress).
fn cost_partials_schema() -> Schema {
    with_provenance(vec![
        Field::new("source_topic", DataType::Utf8, false),
        Field::new("source_partition", DataType::Int32, false),
        Field::new("through", timestamp_type(), false),
        Field::new("window_start", timestamp_type(), true),
        Field::new("amounts", DataType::Int64, false),
        Field::new("record", DataType::Utf8, false),
    ])
}

/// Money: exact decimals with six places (micro-units of the currency).
pub fn money_type() -> DataType {
    DataType::Decimal128(18, 6)
}

/// One row per window, owner and resource: what the owner used (in `unit`), the
/// cost of that use, and its parts of the shared and idle cost, exact to the
/// micro-unit; a window's rows of a resource add up to its bill.
fn costs_schema() -> Schema {
    Schema::new(vec![
        Field::new("window_start", timestamp_type(), false),
        Field::new("window_end", timestamp_type(), false),
        Field::new("owner", DataType::Utf8, false),
        Field::new("resource", DataType::Utf8, false),
        Field::new("usage", DataType::Float64, false),
        Field::new("unit", DataType::Utf8, false),
        Field::new("cost", money_type(), false),
        Field::new("shared", money_type(), false),
        Field::new("idle", money_type(), false),
        Field::new("total", money_type(), false),
        Field::new("currency", DataType::Utf8, false),
    ])
}

/// One row per forecast series, horizon and report: the forecast made at `at` (the
/// end of the last bucket learnt) for `at + horizon_ms`, its interval, the series'
/// limit and when it is forecast to be reached (earliest and latest: the
/// interval's; null when not within the look-ahead).
fn capacity_schema() -> Schema {
    Schema::new(vec![
        Field::new("series", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("labels", DataType::Utf8, false),
        Field::new("at", timestamp_type(), false),
        Field::new("horizon_ms", DataType::Int64, false),
        Field::new("predicted", DataType::Float64, false),
        Field::new("lower", DataType::Float64, true),
        Field::new("upper", DataType::Float64, true),
        Field::new("limit", DataType::Float64, true),
        Field::new("exhaustion_at", timestamp_type(), true),
        Field::new("exhaustion_earliest", timestamp_type(), true),
        Field::new("exhaustion_latest", timestamp_type(), true),
    ])
}

/// One row per exchange record of the alert-raising stages to the incident stage
/// (`record`: its JSON, alerts and calls included; `at` the earliest alert's time,
/// null for a record that only reports progress and calls).
fn alert_partials_schema() -> Schema {
    with_provenance(vec![
        Field::new("source_topic", DataType::Utf8, false),
        Field::new("source_partition", DataType::Int32, false),
        Field::new("through", timestamp_type(), false),
        Field::new("at", timestamp_type(), true),
        Field::new("alerts", DataType::Int64, false),
        Field::new("calls", DataType::Int64, false),
        Field::new("record", DataType::Utf8, false),
    ])
}

/// One row per incident transition: the record sent to `cara.incidents`, with the
/// top cause and its score as columns of their own and the ranked causes (with
/// their reasons) as JSON.
fn incidents_schema() -> Schema {
    let strings = || DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("at", timestamp_type(), false),
        Field::new("opened_at", timestamp_type(), false),
        Field::new("resolved_at", timestamp_type(), true),
        Field::new("severity", DataType::Utf8, false),
        Field::new("alert_ids", strings(), false),
        Field::new("rules", strings(), false),
        Field::new("services", strings(), false),
        Field::new("cause", DataType::Utf8, true),
        Field::new("cause_score", DataType::Float64, true),
        Field::new("probable_root_cause", DataType::Utf8, false),
        Field::new("merged_into", DataType::Utf8, true),
        Field::new("summary", DataType::Utf8, false),
    ])
}

/// One row per verdict read from `cara.approvals`: the decision, whether it
/// approves (1) or rejects (0), when the broker received it (the verdict's time),
/// the verdict as given (JSON), and provenance. (Built by the whole-record builder
/// `exchange::RecordRows`, whose first four columns these are.)
fn approvals_schema() -> Schema {
    with_provenance(vec![
        Field::new("decision_id", DataType::Utf8, false),
        Field::new("approve", DataType::Int32, false),
        Field::new("received_at", timestamp_type(), false),
        Field::new("at", timestamp_type(), true),
        Field::new("record", DataType::Utf8, false),
    ])
}

/// One row per record of the decision stage's input log (`record`: its JSON).
fn decision_inputs_schema() -> Schema {
    with_provenance(vec![
        Field::new("source_topic", DataType::Utf8, false),
        Field::new("source_partition", DataType::Int32, false),
        Field::new("through", timestamp_type(), false),
        Field::new("at", timestamp_type(), true),
        Field::new("record", DataType::Utf8, false),
    ])
}

/// One row per decision state change, as sent to `cara.decisions`.
fn decisions_schema() -> Schema {
    let strings = || DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("at", timestamp_type(), false),
        Field::new("incident_id", DataType::Utf8, false),
        Field::new("alert_ids", strings(), false),
        Field::new("action", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("target", DataType::Utf8, false),
        Field::new("rationale", DataType::Utf8, false),
        Field::new("risk", DataType::Utf8, false),
        Field::new("requires_approval", DataType::Boolean, false),
        Field::new("policy_rule", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("approved_by", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("expires_at", timestamp_type(), false),
        Field::new("escalation_of", DataType::Utf8, true),
        Field::new("prev_hash", DataType::Utf8, false),
        Field::new("hash", DataType::Utf8, false),
    ])
}

/// One row per audit entry, in chain order.
fn audit_schema() -> Schema {
    Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        Field::new("at", timestamp_type(), false),
        Field::new("event", DataType::Utf8, false),
        Field::new("decision_id", DataType::Utf8, false),
        Field::new("by", DataType::Utf8, false),
        Field::new("payload", DataType::Utf8, false),
        Field::new("prev_hash", DataType::Utf8, false),
        Field::new("hash", DataType::Utf8, false),
    ])
}

/// Tables `red` (`service`, `operation`) and `service_graph` (`caller`, `callee`):
/// one row per pair and minute of span start; `requests` counts spans (calls: child
/// spans whose parent is in another service), durations are the child spans', in
/// ms, percentiles within one part in a thousand.
fn cells_schema(first: &str, second: &str) -> Schema {
    Schema::new(vec![
        Field::new(first, DataType::Utf8, false),
        Field::new(second, DataType::Utf8, false),
        Field::new("window_start", timestamp_type(), false),
        Field::new("window_end", timestamp_type(), false),
        Field::new("requests", DataType::Int64, false),
        Field::new("errors", DataType::Int64, false),
        Field::new("rate_per_s", DataType::Float64, false),
        Field::new("error_ratio", DataType::Float64, false),
        Field::new("p50_ms", DataType::Float64, false),
        Field::new("p90_ms", DataType::Float64, false),
        Field::new("p99_ms", DataType::Float64, false),
        Field::new("p999_ms", DataType::Float64, false),
        Field::new("max_ms", DataType::Float64, false),
    ])
}

fn dlq_schema() -> Schema {
    Schema::new(vec![
        Field::new("kafka_ts", timestamp_type(), false),
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("payload", DataType::Binary, true),
        Field::new("payload_bytes", DataType::Int64, false),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_round_trips_its_name() {
        for table in Table::ALL {
            assert_eq!(Table::from_name(table.name()), Some(table));
        }
        assert_eq!(Table::from_name("nope"), None);
    }

    #[test]
    fn time_column_exists_and_is_a_timestamp() {
        for table in Table::ALL {
            let schema = table.schema();
            let field = schema.field_with_name(table.time_column()).unwrap();
            assert_eq!(field.data_type(), &timestamp_type(), "{}", table.name());
        }
    }

    #[test]
    fn input_tables_carry_provenance() {
        for table in [
            Table::Metrics,
            Table::Logs,
            Table::Spans,
            Table::SloPartials,
        ] {
            let schema = table.schema();
            for col in ["_topic", "_partition", "_offset", "_index"] {
                assert!(
                    schema.field_with_name(col).is_ok(),
                    "{} lacks {col}",
                    table.name()
                );
            }
        }
    }
}
