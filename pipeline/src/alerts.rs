//! The alert path: alert records from the metric operators, as rows of table `alerts`
//! and as JSON messages on `cara.alerts` (key: the alert id).
//!
//! Alerts are made durable with the flush of the partition whose rows raised them:
//! the file in the same commit, the messages acknowledged before the checkpoint. A
//! replay after a crash recomputes the same alerts from the checkpointed operator
//! state, so the table holds each exactly once and the topic may repeat one, with
//! the same id.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, Int64Builder, MapBuilder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::record_batch::RecordBatch;
use cara_operators::alert::AlertRecord;
use cara_operators::schema::Table;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord};
use serde::Serialize;

use crate::delivery::{acknowledged_producer, send_acknowledged, DeliveryTracker};

/// Where in the input an alert's triggering row came from.
#[derive(Debug, Clone)]
pub struct SourceRef {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// An alert with the input row that caused it.
#[derive(Debug, Clone)]
pub struct RaisedAlert {
    /// The record.
    pub record: AlertRecord,
    /// Its source row.
    pub source: SourceRef,
}

/// The message body on `cara.alerts`: the record with Alertmanager-style fields
/// (`labels`, `annotations`, `startsAt`, `endsAt`) as RFC 3339 strings beside cara's own.
#[derive(Serialize)]
struct AlertMessage<'a> {
    id: &'a str,
    rule: &'a str,
    kind: &'a str,
    severity: &'a str,
    status: &'a str,
    at: String,
    starts_at: String,
    ends_at: Option<String>,
    labels: std::collections::BTreeMap<&'a str, &'a str>,
    annotations: Annotations<'a>,
    score: f64,
    value: f64,
    threshold: f64,
    window_start: String,
    window_end: String,
    evidence: &'a cara_operators::anomaly::PointScore,
    source: Source<'a>,
}

#[derive(Serialize)]
struct Annotations<'a> {
    summary: &'a str,
    description: &'a str,
}

#[derive(Serialize)]
struct Source<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The JSON body of an alert message (deterministic: event-time fields only).
pub fn alert_json(alert: &RaisedAlert) -> Vec<u8> {
    let r = &alert.record;
    let message = AlertMessage {
        id: &r.id,
        rule: &r.rule,
        kind: &r.kind,
        severity: &r.severity,
        status: r.status.as_str(),
        at: rfc3339(r.at),
        starts_at: rfc3339(r.starts_at),
        ends_at: r.ends_at.map(rfc3339),
        labels: r
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        annotations: Annotations {
            summary: &r.summary,
            description: &r.description,
        },
        score: r.score,
        value: r.value,
        threshold: r.threshold,
        window_start: rfc3339(r.window_start),
        window_end: rfc3339(r.window_end),
        evidence: &r.evidence,
        source: Source {
            topic: &alert.source.topic,
            partition: alert.source.partition,
            offset: alert.source.offset,
        },
    };
    serde_json::to_vec(&message).unwrap_or_default()
}

/// Builds the `alerts` table rows of some alerts.
pub fn alert_batch(alerts: &[RaisedAlert]) -> RecordBatch {
    let n = alerts.len();
    let mut id = StringBuilder::new();
    let mut rule = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut severity = StringBuilder::new();
    let mut status = StringBuilder::new();
    let mut at = TimestampMillisecondBuilder::with_capacity(n);
    let mut starts_at = TimestampMillisecondBuilder::with_capacity(n);
    let mut ends_at = TimestampMillisecondBuilder::with_capacity(n);
    let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    let mut summary = StringBuilder::new();
    let mut description = StringBuilder::new();
    let mut score = Float64Builder::with_capacity(n);
    let mut value = Float64Builder::with_capacity(n);
    let mut threshold = Float64Builder::with_capacity(n);
    let mut window_start = TimestampMillisecondBuilder::with_capacity(n);
    let mut window_end = TimestampMillisecondBuilder::with_capacity(n);
    let mut evidence = StringBuilder::new();
    let mut topic = StringBuilder::new();
    let mut partition = Int32Builder::with_capacity(n);
    let mut offset = Int64Builder::with_capacity(n);
    for a in alerts {
        let r = &a.record;
        id.append_value(&r.id);
        rule.append_value(&r.rule);
        kind.append_value(&r.kind);
        severity.append_value(&r.severity);
        status.append_value(r.status.as_str());
        at.append_value(r.at);
        starts_at.append_value(r.starts_at);
        ends_at.append_option(r.ends_at);
        for (k, v) in &r.labels {
            labels.keys().append_value(k);
            labels.values().append_value(v);
        }
        // A map entry list cannot fail to close: keys and values were appended in pairs.
        let _ = labels.append(true);
        summary.append_value(&r.summary);
        description.append_value(&r.description);
        score.append_value(r.score);
        value.append_value(r.value);
        threshold.append_value(r.threshold);
        window_start.append_value(r.window_start);
        window_end.append_value(r.window_end);
        evidence.append_value(serde_json::to_string(&r.evidence).unwrap_or_default());
        topic.append_value(&*a.source.topic);
        partition.append_value(a.source.partition);
        offset.append_value(a.source.offset);
    }
    let utc = |b: &mut TimestampMillisecondBuilder| -> ArrayRef {
        Arc::new(b.finish().with_timezone("UTC"))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(rule.finish()),
        Arc::new(kind.finish()),
        Arc::new(severity.finish()),
        Arc::new(status.finish()),
        utc(&mut at),
        utc(&mut starts_at),
        utc(&mut ends_at),
        Arc::new(labels.finish()),
        Arc::new(summary.finish()),
        Arc::new(description.finish()),
        Arc::new(score.finish()),
        Arc::new(value.finish()),
        Arc::new(threshold.finish()),
        utc(&mut window_start),
        utc(&mut window_end),
        Arc::new(evidence.finish()),
        Arc::new(topic.finish()),
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
    ];
    RecordBatch::try_new(Table::Alerts.schema(), columns)
        .unwrap_or_else(|e| panic!("alert columns do not match the alerts schema: {e}"))
}

/// Produces alerts to the alerts topic.
pub struct AlertSink {
    producer: BaseProducer<DeliveryTracker>,
    topic: String,
}

impl AlertSink {
    /// A sink producing to `topic` through a client made from `config`.
    pub fn new(config: ClientConfig, topic: &str) -> Result<AlertSink, KafkaError> {
        let producer = acknowledged_producer(config, "alerts")?;
        Ok(AlertSink {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// The topic produced to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends every alert and waits until the broker acknowledged all of them.
    pub fn send_all(&self, alerts: &[RaisedAlert], timeout: Duration) -> Result<(), KafkaError> {
        send_acknowledged(&self.producer, alerts, timeout, |alert| {
            let body = alert_json(alert);
            let record = BaseRecord::to(&self.topic)
                .key(alert.record.id.as_bytes())
                .payload(&body);
            self.producer.send(record).map_err(|(e, _)| e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cara_operators::alert::AlertStatus;
    use cara_operators::anomaly::{Detector, PointScore};

    fn alert() -> RaisedAlert {
        RaisedAlert {
            record: AlertRecord {
                id: "00ff".into(),
                rule: "metric_anomaly".into(),
                kind: "anomaly".into(),
                severity: "ticket".into(),
                status: AlertStatus::Resolved,
                at: 1_700_000_060_000,
                starts_at: 1_700_000_000_000,
                ends_at: Some(1_700_000_060_000),
                labels: vec![("alertname".into(), "metric_anomaly".into())],
                summary: "s".into(),
                description: "d".into(),
                score: 0.9,
                value: 3.0,
                threshold: 0.35,
                window_start: 1_700_000_000_000,
                window_end: 1_700_000_060_000,
                evidence: PointScore {
                    score: 0.9,
                    baseline: 1.0,
                    deviation: 7.0,
                    detector: Detector::Level,
                },
                row: 0,
            },
            source: SourceRef {
                topic: Arc::from("telemetry.metrics"),
                partition: 3,
                offset: 42,
            },
        }
    }

    #[test]
    fn alert_rows_match_the_schema_and_keep_times() {
        let batch = alert_batch(&[alert(), alert()]);
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), Table::Alerts.schema());
    }

    #[test]
    fn alert_messages_carry_alertmanager_fields_and_no_wall_clock() {
        let json: serde_json::Value = serde_json::from_slice(&alert_json(&alert())).unwrap();
        assert_eq!(json["status"], "resolved");
        assert_eq!(json["starts_at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(json["ends_at"], "2023-11-14T22:14:20.000Z");
        assert_eq!(json["labels"]["alertname"], "metric_anomaly");
        assert_eq!(json["annotations"]["summary"], "s");
        assert_eq!(json["source"]["offset"], 42);
        assert_eq!(alert_json(&alert()), alert_json(&alert()), "deterministic");
    }
}
