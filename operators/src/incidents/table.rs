//! Rows of table `incidents`: one per incident transition, the record sent to
//! `cara.incidents` with its top cause as columns of their own (so
//! `SELECT cause, count(*) FROM incidents WHERE status = 'open' GROUP BY cause`
//! needs no JSON) and the ranked causes with their reasons as JSON.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, ListBuilder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::error::ArrowError;

use super::IncidentRecord;
use crate::schema::Table;

/// The rows of `records`, in order.
pub fn incidents_batch(records: &[IncidentRecord]) -> Result<RecordBatch, ArrowError> {
    let schema = Table::Incidents.schema();
    let timestamps = || TimestampMillisecondBuilder::new().with_timezone("UTC");
    let lists = || ListBuilder::new(StringBuilder::new());
    let (mut id, mut status, mut severity) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut at, mut opened_at, mut resolved_at) = (timestamps(), timestamps(), timestamps());
    let (mut alert_ids, mut rules, mut services) = (lists(), lists(), lists());
    let (mut cause, mut cause_score) = (StringBuilder::new(), Float64Builder::new());
    let (mut causes, mut merged_into, mut summary) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    for r in records {
        id.append_value(&r.id);
        status.append_value(r.status.as_str());
        at.append_value(r.at);
        opened_at.append_value(r.opened_at);
        resolved_at.append_option(r.resolved_at);
        severity.append_value(&r.severity);
        for (builder, values) in [
            (&mut alert_ids, &r.alert_ids),
            (&mut rules, &r.rules),
            (&mut services, &r.services),
        ] {
            for value in values {
                builder.values().append_value(value);
            }
            builder.append(true);
        }
        let top = r.probable_root_cause.first();
        cause.append_option(top.map(|c| c.service.as_str()));
        cause_score.append_option(top.map(|c| c.score));
        // Strings and finite scores: serialising cannot fail.
        causes.append_value(serde_json::to_string(&r.probable_root_cause).unwrap_or_default());
        merged_into.append_option(r.merged_into.as_deref());
        summary.append_value(&r.summary);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(status.finish()),
        Arc::new(at.finish()),
        Arc::new(opened_at.finish()),
        Arc::new(resolved_at.finish()),
        Arc::new(severity.finish()),
        Arc::new(alert_ids.finish()),
        Arc::new(rules.finish()),
        Arc::new(services.finish()),
        Arc::new(cause.finish()),
        Arc::new(cause_score.finish()),
        Arc::new(causes.finish()),
        Arc::new(merged_into.finish()),
        Arc::new(summary.finish()),
    ];
    RecordBatch::try_new(schema, columns)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};

    use super::*;
    use crate::incidents::{Cause, IncidentStatus};

    #[test]
    fn a_record_becomes_a_row_with_its_top_cause_in_columns() {
        let record = IncidentRecord {
            id: "inc-1".into(),
            status: IncidentStatus::Update,
            at: 120_000,
            opened_at: 60_000,
            resolved_at: None,
            severity: "page".into(),
            alert_ids: vec!["a1".into(), "a2".into()],
            rules: vec!["metric_anomaly".into()],
            services: vec!["db".into(), "web".into()],
            probable_root_cause: vec![Cause {
                service: "db".into(),
                score: 0.9,
                reasons: vec!["its alert started first".into()],
            }],
            merged_into: None,
            summary: "2 alerts".into(),
        };
        let batch = incidents_batch(std::slice::from_ref(&record)).unwrap();
        assert_eq!(batch.num_rows(), 1);
        let string = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_string::<i32>()
                .clone()
        };
        assert_eq!(string("status").value(0), "update");
        assert_eq!(string("cause").value(0), "db");
        assert!(string("merged_into").is_null(0));
        let causes: Vec<Cause> =
            serde_json::from_str(string("probable_root_cause").value(0)).unwrap();
        assert_eq!(causes, record.probable_root_cause);
        let services = batch
            .column_by_name("services")
            .unwrap()
            .as_list::<i32>()
            .value(0);
        assert_eq!(
            services
                .as_string::<i32>()
                .iter()
                .flatten()
                .collect::<Vec<_>>(),
            ["db", "web"]
        );
        assert!(batch.column_by_name("resolved_at").unwrap().is_null(0));
    }
}
