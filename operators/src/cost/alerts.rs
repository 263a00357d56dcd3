//! The alerts of the cost stage: budgets forecast to be exceeded, and owners'
//! costs out of their usual range.
//!
//! Owns, for the combining stage, as functions of the billed windows in order:
//! - `cost_budget`: per owner and calendar month (UTC), the month's spend so far
//!   and its forecast at the running rate (spend per hour since the month's first
//!   billed window, times the hours left). When the forecast passes the owner's
//!   budget the alert fires, once per owner and month, stamped at the end of the
//!   window that showed it; it resolves when the month ends (a window of the next
//!   month is billed for the owner). The id names the owner and month, so a replay
//!   after a crash sends the same one.
//! - `cost_anomaly`: each owner's cost of each resource per window is a series
//!   (`cara_cost_per_window{owner=…,resource=…}`, stamped at the window's end; the
//!   resources of a window are billed as their sources pass it) scored by the
//!   metric anomaly detectors; an alert fires when the score passes the policy's
//!   threshold upwards (costs falling are not paged about).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::ledger::CostRow;
use super::money::{decimal_text, Micros};
use super::CostSettings;
use crate::alert::{alert_id, AlertRecord, AlertRule, AlertStatus};
use crate::anomaly::alerting::MetricAlerting;
use crate::anomaly::operator::SchemaMismatch;
use crate::anomaly::{Detector, PointScore};
use crate::series::{gauge_batch, DerivedPoint};

/// The rule of the alert that a month's spend is forecast to pass its budget.
pub const BUDGET_RULE: &str = "cost_budget";

/// The series each owner's cost per window is scored as.
pub const COST_PER_WINDOW: &str = "cara_cost_per_window";

/// The rule scoring [`COST_PER_WINDOW`].
pub fn anomaly_rule(settings: &CostSettings) -> AlertRule {
    AlertRule {
        name: "cost_anomaly".into(),
        metric: Some(COST_PER_WINDOW.into()),
        labels: BTreeMap::new(),
        severity: "ticket".into(),
        policy: settings.policy,
    }
}

/// One owner's spend in one month.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct MonthSpend {
    /// Start of the month's first window billed for the owner, ms.
    first_window_ms: i64,
    spent: Micros,
    /// The budget alert that fired this month, to resolve at its end.
    fired: Option<AlertRecord>,
}

/// What the cost alerts keep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostAlerts {
    /// Spend per owner and month start (ms).
    #[serde(with = "crate::map_as_list")]
    months: BTreeMap<(String, i64), MonthSpend>,
    scoring: MetricAlerting,
    /// Ids of downward anomalies, whose resolution is not reported either.
    suppressed: Vec<String>,
}

impl CostAlerts {
    /// Fresh state.
    pub fn new(settings: &CostSettings) -> CostAlerts {
        CostAlerts {
            months: BTreeMap::new(),
            scoring: MetricAlerting::new(
                settings.scorer,
                settings.limits,
                vec![anomaly_rule(settings)],
            ),
            suppressed: Vec::new(),
        }
    }

    /// Restored state with the current settings applied.
    pub fn reconfigured(self, settings: &CostSettings) -> CostAlerts {
        CostAlerts {
            scoring: self.scoring.reconfigured(
                settings.scorer,
                settings.limits,
                vec![anomaly_rule(settings)],
            ),
            ..self
        }
    }

    /// The alerts the billed `rows` (whole windows, in time order) raise or resolve.
    pub fn observe(
        &mut self,
        rows: &[CostRow],
        settings: &CostSettings,
        context: (&str, i32),
        row: usize,
    ) -> Result<Vec<AlertRecord>, SchemaMismatch> {
        let mut alerts = Vec::new();
        // Each owner's total per window, in window order.
        let mut per_window: BTreeMap<(i64, i64, &str), Micros> = BTreeMap::new();
        for r in rows {
            *per_window
                .entry((r.window_start_ms, r.window_end_ms, r.owner.as_str()))
                .or_default() += r.total();
        }
        for ((start, end, owner), total) in per_window {
            self.budget(owner, (start, end), total, settings, row, &mut alerts);
        }
        let points: Vec<DerivedPoint> = rows
            .iter()
            .map(|r| DerivedPoint {
                ts_ms: r.window_end_ms,
                name: COST_PER_WINDOW.into(),
                labels: vec![
                    ("owner".into(), r.owner.clone()),
                    ("resource".into(), r.resource.name().into()),
                ],
                value: r.total() as f64 / 1e6,
                source_row: row as i64,
            })
            .collect();
        if !points.is_empty() {
            let batch = gauge_batch(&points, context.0, context.1)
                .map_err(|_| SchemaMismatch("cost series"))?;
            let mut scored = Vec::new();
            self.scoring.score(&batch, &mut scored)?;
            for mut record in scored {
                let upward = record.value > record.evidence.baseline;
                match record.status {
                    AlertStatus::Firing if !upward => {
                        self.suppressed.push(record.id.clone());
                        continue;
                    }
                    AlertStatus::Resolved => {
                        if let Some(i) = self.suppressed.iter().position(|id| *id == record.id) {
                            self.suppressed.remove(i);
                            continue;
                        }
                    }
                    _ => {}
                }
                record.kind = "cost_anomaly".into();
                record.row = row;
                alerts.push(record);
            }
        }
        Ok(alerts)
    }

    /// Adds an owner's window to its month, resolving last months' alerts and
    /// firing this month's when its forecast passes the budget.
    fn budget(
        &mut self,
        owner: &str,
        (start, end): (i64, i64),
        total: Micros,
        settings: &CostSettings,
        row: usize,
        alerts: &mut Vec<AlertRecord>,
    ) {
        let month = month_start(start);
        // Months before this one have ended for the owner.
        let ended: Vec<(String, i64)> = self
            .months
            .range((owner.to_owned(), i64::MIN)..(owner.to_owned(), month))
            .map(|(k, _)| k.clone())
            .collect();
        for key in ended {
            if let Some(MonthSpend {
                fired: Some(mut record),
                ..
            }) = self.months.remove(&key)
            {
                let month_end = next_month_start(key.1);
                record.status = AlertStatus::Resolved;
                record.at = month_end;
                record.ends_at = Some(month_end);
                record.summary = format!("{} (the month ended)", record.summary);
                record.row = row;
                alerts.push(record);
            }
        }
        let Some(&budget) = settings.budgets.get(owner) else {
            return;
        };
        let spend = self
            .months
            .entry((owner.to_owned(), month))
            .or_insert_with(|| MonthSpend {
                first_window_ms: start,
                ..MonthSpend::default()
            });
        spend.spent = spend.spent.saturating_add(total);
        if spend.fired.is_some() {
            return;
        }
        let elapsed = (end - spend.first_window_ms).max(1) as f64;
        let left = (next_month_start(month) - end).max(0) as f64;
        let forecast = spend.spent as f64 * (1.0 + left / elapsed);
        if forecast <= budget as f64 {
            return;
        }
        let forecast = forecast.round() as Micros;
        let rule = BUDGET_RULE;
        let currency = &settings.currency;
        let month_name = DateTime::<Utc>::from_timestamp_millis(month)
            .map_or_else(|| month.to_string(), |t| t.format("%Y-%m").to_string());
        let mut labels = vec![
            ("alertname".to_owned(), rule.to_owned()),
            ("owner".to_owned(), owner.to_owned()),
        ];
        if settings.owner_label != "owner" {
            labels.push((settings.owner_label.clone(), owner.to_owned()));
        }
        let record = AlertRecord {
            id: alert_id(rule, owner, month),
            rule: rule.into(),
            kind: BUDGET_RULE.into(),
            severity: "ticket".into(),
            status: AlertStatus::Firing,
            at: end,
            starts_at: end,
            ends_at: None,
            labels,
            summary: format!("{owner} is forecast to exceed its {month_name} budget"),
            description: format!(
                "forecast {} {currency} against a budget of {} {currency}: {} spent by {}",
                decimal_text(forecast),
                decimal_text(budget),
                decimal_text(spend.spent),
                crate::time::rfc3339_ms::to_text(end),
            ),
            score: 1.0,
            value: forecast as f64 / 1e6,
            threshold: budget as f64 / 1e6,
            window_start: spend.first_window_ms,
            window_end: end,
            evidence: PointScore {
                score: 1.0,
                baseline: budget as f64 / 1e6,
                deviation: 0.0,
                detector: Detector::Warmup,
            },
            row,
        };
        spend.fired = Some(record.clone());
        alerts.push(record);
    }
}

/// The start (UTC) of the calendar month holding `ms`.
fn month_start(ms: i64) -> i64 {
    let Some(t) = DateTime::<Utc>::from_timestamp_millis(ms) else {
        return ms;
    };
    Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .map_or(ms, |m| m.timestamp_millis())
}

/// The start of the month after the one starting at `month_ms`.
fn next_month_start(month_ms: i64) -> i64 {
    // 32 days on is always in the next month.
    month_start(month_ms + 32 * 86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::ledger::tests::settings;
    use crate::cost::Resource;

    const HOUR: i64 = 3_600_000;
    /// 2026-12-01T00:00:00Z.
    const DEC: i64 = 1_796_083_200_000;

    fn row(start: i64, owner: &str, total: Micros) -> CostRow {
        CostRow {
            window_start_ms: start,
            window_end_ms: start + HOUR,
            owner: owner.into(),
            resource: Resource::Cpu,
            usage: 1.0,
            unit: "core_hours",
            cost: total,
            shared: 0,
            idle: 0,
        }
    }

    #[test]
    fn months_start_on_the_first_at_midnight_utc() {
        assert_eq!(month_start(DEC + 17 * 86_400_000 + 5), DEC);
        assert_eq!(next_month_start(DEC), DEC + 31 * 86_400_000);
        assert_eq!(month_start(DEC - 1), DEC - 30 * 86_400_000);
    }

    /// 1.00 an hour over a 31-day month forecasts 744.00: a budget of 700 fires at
    /// the first window (the rate is known from it), one of 800 never; the alert
    /// fires once and resolves when the owner's next month is billed.
    #[test]
    fn a_budget_fires_once_on_its_forecast_and_resolves_with_the_month() {
        let mut s = settings();
        s.budgets = BTreeMap::from([("a".into(), 700_000_000), ("b".into(), 800_000_000)]);
        let mut alerts = CostAlerts::new(&s);
        let mut raised = Vec::new();
        for h in 0..48 {
            let rows = [
                row(DEC + h * HOUR, "a", 1_000_000),
                row(DEC + h * HOUR, "b", 1_000_000),
            ];
            raised.extend(alerts.observe(&rows, &s, ("x", 0), 0).unwrap());
        }
        let budget: Vec<&AlertRecord> = raised.iter().filter(|a| a.kind == "cost_budget").collect();
        assert_eq!(budget.len(), 1, "{budget:?}");
        assert_eq!(budget[0].labels[1], ("owner".into(), "a".into()));
        assert_eq!(budget[0].at, DEC + HOUR);
        assert!(
            budget[0]
                .description
                .contains("forecast 744.000000 USD against a budget of 700.000000 USD"),
            "{}",
            budget[0].description
        );
        let next = [row(DEC + 31 * 86_400_000, "a", 1)];
        let resolved = alerts.observe(&next, &s, ("x", 0), 0).unwrap();
        let resolved: Vec<&AlertRecord> = resolved
            .iter()
            .filter(|a| a.kind == "cost_budget")
            .collect();
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].status, AlertStatus::Resolved);
        assert_eq!(
            (resolved[0].id.as_str(), resolved[0].at),
            (budget[0].id.as_str(), DEC + 31 * 86_400_000)
        );
    }

    /// A steady cost for two days, then an hour costing ten times as much: one
    /// `cost_anomaly` alert for that owner; a fall is not alerted.
    #[test]
    fn a_jump_in_an_owners_cost_is_an_anomaly_and_a_fall_is_not() {
        let s = settings();
        let mut alerts = CostAlerts::new(&s);
        let mut raised = Vec::new();
        for h in 0..60 {
            let wobble = (h % 5) * 10_000;
            let a = if h == 55 {
                10_000_000
            } else {
                1_000_000 + wobble
            };
            let b = if h == 55 { 10_000 } else { 1_000_000 + wobble };
            let rows = [row(DEC + h * HOUR, "a", a), row(DEC + h * HOUR, "b", b)];
            raised.extend(alerts.observe(&rows, &s, ("x", 0), 0).unwrap());
        }
        let firing: Vec<(String, i64)> = raised
            .iter()
            .filter(|a| a.kind == "cost_anomaly" && a.status == AlertStatus::Firing)
            .map(|a| {
                (
                    a.labels
                        .iter()
                        .find(|(k, _)| k == "owner")
                        .unwrap()
                        .1
                        .clone(),
                    a.at,
                )
            })
            .collect();
        assert_eq!(firing, vec![("a".to_string(), DEC + 56 * HOUR)]);
    }
}
