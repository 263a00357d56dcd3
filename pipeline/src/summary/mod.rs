//! The on-call summary `cara run --demo` draws on the terminal: the open incidents
//! with their probable cause; what is firing, by rule and service; each SLO's budget
//! and burn rates; log templates per service; and, for the demo, the generator's
//! injected faults beside whether cara caught them.
//!
//! Owns the [`Board`] (the state the summary is drawn from, fed by the records a user
//! would subscribe to: `cara.incidents`, `cara.alerts` and `cara.slo`, see
//! [`subscription`]) and the pure
//! rendering of one [`Frame`]. It does not read the archive, and it does not decide
//! anything: it only shows the output topics as they are.
//!
//! ```
//! use cara_pipeline::summary::{Board, Frame, Style};
//! let mut board = Board::default();
//! board.apply_alert(br#"{"id":"a1","rule":"latency","kind":"anomaly","severity":"page",
//!   "status":"firing","starts_at":"2026-12-01T10:00:00.000Z",
//!   "labels":{"service":"checkout"},"annotations":{"summary":"p99 up","description":""}}"#).unwrap();
//! let text = board.render(&Frame::default(), Style::Plain);
//! assert!(text.contains("checkout"));
//! ```

pub mod subscription;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use cara_operators::decisions::{DecisionRecord, DecisionState};
use cara_operators::incidents::{IncidentRecord, IncidentStatus};
use cara_operators::slo::SloStatus;
use serde::Deserialize;

use crate::gen::incidents::Incident;

/// How many grouped alert rows the summary shows before "… more".
const ALERT_ROWS: usize = 12;
/// How many open incidents the summary shows before "… more".
const INCIDENT_ROWS: usize = 5;

/// Whether the text may carry ANSI styles (a terminal) or must be plain (a file, a pipe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// No escape codes at all.
    Plain,
    /// Bold headings and coloured severities.
    Terminal,
}

/// One firing alert as `cara.alerts` carried it.
#[derive(Debug, Clone, PartialEq)]
pub struct FiringAlert {
    /// Rule name.
    pub rule: String,
    /// `anomaly`, `slo_burn`, `log_pattern`, ...
    pub kind: String,
    /// `page`, `ticket` or `info`.
    pub severity: String,
    /// Its `service` label, else its `slo` label, else `-`.
    pub subject: String,
    /// One line for humans.
    pub summary: String,
    /// When it started firing (event time, ms).
    pub starts_at_ms: i64,
}

/// The fields of an alert message the summary reads (the rest is ignored).
#[derive(Deserialize)]
struct AlertMessage {
    id: String,
    rule: String,
    kind: String,
    severity: String,
    status: String,
    starts_at: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    annotations: Annotations,
}

#[derive(Deserialize)]
struct Annotations {
    summary: String,
}

/// What the output topics said so far.
#[derive(Debug, Default)]
pub struct Board {
    /// Firing alerts by id; a resolution removes one, a repeat replaces it.
    firing: BTreeMap<String, FiringAlert>,
    /// The latest status of each SLO.
    slos: BTreeMap<String, SloStatus>,
    /// The starts of every alert per subject (service or SLO), with its rule.
    alert_starts: BTreeMap<String, BTreeSet<(i64, String)>>,
    /// Ids of the alerts seen firing and seen resolved (the topic may repeat one).
    fired: BTreeSet<String>,
    resolved: BTreeSet<String>,
    /// Each incident's latest transition, by id.
    incidents: BTreeMap<String, IncidentRecord>,
    /// Each decision's latest change, by id.
    decisions: BTreeMap<String, DecisionRecord>,
}

/// Why a record could not be taken into the board.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// The payload is not the JSON the topic carries.
    #[error("not an alert or SLO status record: {0}")]
    Json(#[from] serde_json::Error),
    /// A time field is not RFC 3339.
    #[error("bad time {0:?} in an alert record")]
    Time(String),
}

/// Everything else a frame shows, gathered by the caller.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// Wall-clock time of the frame (ms); the demo's event time follows it.
    pub now_ms: i64,
    /// `None` when ready, else why not.
    pub not_ready: Option<String>,
    /// Records read per signal: metrics, logs, spans.
    pub records_in: [u64; 3],
    /// Messages dead-lettered.
    pub dead_lettered: u64,
    /// Archive files and bytes written.
    pub archive: (u64, u64),
    /// Distinct log templates per service.
    pub templates: BTreeMap<String, usize>,
    /// The faults the demo's generator injects (empty outside the demo).
    pub faults: Vec<Incident>,
    /// What cara handled but an operator must know (as `/readyz` shows it).
    pub notices: Vec<String>,
}

impl Board {
    /// Takes in one `cara.alerts` message.
    pub fn apply_alert(&mut self, payload: &[u8]) -> Result<(), BoardError> {
        let message: AlertMessage = serde_json::from_slice(payload)?;
        let starts_at_ms = chrono::DateTime::parse_from_rfc3339(&message.starts_at)
            .map_err(|_| BoardError::Time(message.starts_at.clone()))?
            .timestamp_millis();
        let subject = message
            .labels
            .get("service")
            .or_else(|| message.labels.get("slo"))
            .cloned()
            .unwrap_or_else(|| "-".to_owned());
        if message.status == "resolved" {
            self.firing.remove(&message.id);
            self.resolved.insert(message.id);
            return Ok(());
        }
        if self.resolved.contains(&message.id) {
            // A repeat of a firing record whose resolution came first.
            return Ok(());
        }
        self.fired.insert(message.id.clone());
        self.alert_starts
            .entry(subject.clone())
            .or_default()
            .insert((starts_at_ms, message.rule.clone()));
        self.firing.insert(
            message.id,
            FiringAlert {
                rule: message.rule,
                kind: message.kind,
                severity: message.severity,
                subject,
                summary: message.annotations.summary,
                starts_at_ms,
            },
        );
        Ok(())
    }

    /// Takes in one `cara.incidents` message; a transition older than the one held
    /// (the topic may repeat one) is ignored.
    pub fn apply_incident(&mut self, payload: &[u8]) -> Result<(), BoardError> {
        let record: IncidentRecord = serde_json::from_slice(payload)?;
        let order =
            |r: &IncidentRecord| (r.at, r.status != IncidentStatus::Open, r.alert_ids.len());
        keep_later(&mut self.incidents, record.id.clone(), record, order);
        Ok(())
    }

    /// Takes in one `cara.decisions` message; a change that does not move the
    /// decision on (a repeat) is ignored.
    pub fn apply_decision(&mut self, payload: &[u8]) -> Result<(), BoardError> {
        let record: DecisionRecord = serde_json::from_slice(payload)?;
        let step = |d: &DecisionRecord| match d.state {
            DecisionState::Proposed => 0,
            DecisionState::Approved => 1,
            _ => 2,
        };
        keep_later(&mut self.decisions, record.id.clone(), record, step);
        Ok(())
    }

    /// Takes in one `cara.slo` message; an older status than the one held is ignored.
    pub fn apply_slo(&mut self, payload: &[u8]) -> Result<(), BoardError> {
        let status: SloStatus = serde_json::from_slice(payload)?;
        keep_later(&mut self.slos, status.slo.clone(), status, |s| s.ts);
        Ok(())
    }

    /// The alerts firing now.
    pub fn firing(&self) -> impl Iterator<Item = &FiringAlert> {
        self.firing.values()
    }

    /// Draws one frame.
    pub fn render(&self, frame: &Frame, style: Style) -> String {
        let mut out = String::new();
        let heading = |text: &str| match style {
            Style::Plain => text.to_owned(),
            Style::Terminal => console::style(text).bold().to_string(),
        };
        let state = match &frame.not_ready {
            None => "ready".to_owned(),
            Some(reason) => format!("NOT READY: {reason}"),
        };
        let _ = writeln!(
            out,
            "{}",
            heading(&format!("cara · {} · {state}", clock(frame.now_ms)))
        );
        let [metrics, logs, spans] = frame.records_in;
        let _ = writeln!(
            out,
            "  in: {metrics} metric points, {logs} log lines, {spans} spans · dead-lettered {} · archive {} files, {:.1} MB",
            frame.dead_lettered,
            frame.archive.0,
            frame.archive.1 as f64 / 1e6
        );
        for notice in &frame.notices {
            let _ = writeln!(out, "  notice: {notice}");
        }
        out.push('\n');
        self.render_incidents(&mut out, &heading);
        out.push('\n');
        self.render_decisions(&mut out, &heading);
        out.push('\n');
        self.render_alerts(&mut out, style, &heading);
        out.push('\n');
        self.render_slos(&mut out, &heading);
        out.push('\n');
        render_templates(&mut out, &frame.templates, &heading);
        if !frame.faults.is_empty() {
            out.push('\n');
            self.render_faults(&mut out, frame, &heading);
        }
        out
    }

    fn render_alerts(&self, out: &mut String, style: Style, heading: &dyn Fn(&str) -> String) {
        // One row per (severity, rule, subject): partitions and windows of one fact
        // share a row, with how many alerts it stands for.
        let mut groups: BTreeMap<(u8, &str, &str), (usize, &FiringAlert)> = BTreeMap::new();
        for alert in self.firing.values() {
            let key = (
                severity_rank(&alert.severity),
                alert.rule.as_str(),
                alert.subject.as_str(),
            );
            let entry = groups.entry(key).or_insert((0, alert));
            entry.0 += 1;
            if alert.starts_at_ms < entry.1.starts_at_ms {
                entry.1 = alert;
            }
        }
        let _ = writeln!(
            out,
            "{}",
            heading(&format!(
                "FIRING ALERTS: {} ({} fired, {} resolved so far)",
                self.firing.len(),
                self.fired.len(),
                self.resolved.len()
            ))
        );
        if groups.is_empty() {
            let _ = writeln!(out, "  none");
            return;
        }
        let _ = writeln!(
            out,
            "  {:<8} {:<24} {:<22} {:>5}  {:<8}  SUMMARY",
            "SEVERITY", "RULE", "SERVICE / SLO", "COUNT", "SINCE"
        );
        for ((_, rule, subject), (count, alert)) in groups.iter().take(ALERT_ROWS) {
            let severity = format!("{:<8}", alert.severity);
            let severity = match (style, alert.severity.as_str()) {
                (Style::Terminal, "page") => console::style(severity).red().bold().to_string(),
                (Style::Terminal, "ticket") => console::style(severity).yellow().to_string(),
                _ => severity,
            };
            let _ = writeln!(
                out,
                "  {severity} {:<24} {:<22} {count:>5}  {}  {}",
                truncate(rule, 24),
                truncate(subject, 22),
                clock(alert.starts_at_ms),
                truncate(&alert.summary, 44)
            );
        }
        if groups.len() > ALERT_ROWS {
            let _ = writeln!(out, "  … {} more", groups.len() - ALERT_ROWS);
        }
    }

    fn render_incidents(&self, out: &mut String, heading: &dyn Fn(&str) -> String) {
        let closed = |r: &&IncidentRecord| {
            matches!(r.status, IncidentStatus::Resolved | IncidentStatus::Merged)
        };
        let mut open: Vec<&IncidentRecord> =
            self.incidents.values().filter(|r| !closed(r)).collect();
        open.sort_by_key(|r| std::cmp::Reverse((r.opened_at, r.id.as_str())));
        let resolved = self
            .incidents
            .values()
            .filter(|r| r.status == IncidentStatus::Resolved)
            .count();
        let _ = writeln!(
            out,
            "{}",
            heading(&format!(
                "INCIDENTS: {} open ({} opened, {resolved} resolved so far)",
                open.len(),
                self.incidents.len()
            ))
        );
        if open.is_empty() {
            let _ = writeln!(
                out,
                "  none (alerts on services connected by calls within 5 minutes make one)"
            );
            return;
        }
        for incident in open.iter().take(INCIDENT_ROWS) {
            let _ = writeln!(
                out,
                "  {}  since {}  {:<8} {} alerts on {}",
                incident.id,
                clock(incident.opened_at),
                incident.severity,
                incident.alert_ids.len(),
                truncate(&incident.services.join(", "), 40)
            );
            for (rank, cause) in incident.probable_root_cause.iter().enumerate() {
                let reason = cause.reasons.first().map(String::as_str).unwrap_or("");
                let _ = writeln!(
                    out,
                    "      {}. {:<12} {:.2}  {}",
                    rank + 1,
                    truncate(&cause.service, 12),
                    cause.score,
                    truncate(reason, 70)
                );
            }
        }
        if open.len() > INCIDENT_ROWS {
            let _ = writeln!(out, "  … {} more", open.len() - INCIDENT_ROWS);
        }
    }

    fn render_decisions(&self, out: &mut String, heading: &dyn Fn(&str) -> String) {
        let count =
            |state: DecisionState| self.decisions.values().filter(|d| d.state == state).count();
        let waiting: Vec<&DecisionRecord> = self
            .decisions
            .values()
            .filter(|d| d.state == DecisionState::Proposed)
            .collect();
        let _ = writeln!(
            out,
            "{}",
            heading(&format!(
                "DECISIONS: {} waiting for approval ({} made: {} executed, {} rejected, {} expired, {} failed)",
                waiting.len(),
                self.decisions.len(),
                count(DecisionState::Executed),
                count(DecisionState::Rejected),
                count(DecisionState::Expired),
                count(DecisionState::Failed),
            ))
        );
        if self.decisions.is_empty() {
            let _ = writeln!(out, "  none yet (the policy decides on each incident)");
            return;
        }
        for d in waiting.iter().take(INCIDENT_ROWS) {
            let _ = writeln!(
                out,
                "  {}  {} {} ({} risk) for {}, expires {}",
                d.id,
                d.action,
                truncate(&d.target, 30),
                d.risk.as_str(),
                d.incident_id,
                clock(d.expires_at)
            );
            let _ = writeln!(
                out,
                "      approve: echo '{{\"decision_id\":\"{}\",\"verdict\":\"approve\",\"by\":\"you\"}}' | kcat -P -b 127.0.0.1:9092 -t cara.approvals",
                d.id
            );
        }
        if waiting.len() > INCIDENT_ROWS {
            let _ = writeln!(out, "  … {} more", waiting.len() - INCIDENT_ROWS);
        }
    }

    fn render_slos(&self, out: &mut String, heading: &dyn Fn(&str) -> String) {
        let _ = writeln!(out, "{}", heading("SLOS (error budget left, burn rates)"));
        if self.slos.is_empty() {
            let _ = writeln!(out, "  no status yet (the first one closes a minute of event time after the first span)");
            return;
        }
        let _ = writeln!(
            out,
            "  {:<28} {:>8} {:>8} {:>8} {:>8} {:>8}  AT",
            "SLO", "BUDGET", "5m", "1h", "6h", "3d"
        );
        for status in self.slos.values() {
            let burn = |window: &str| {
                status
                    .windows
                    .get(window)
                    .map(|w| format!("{:.2}x", w.burn_rate))
                    .unwrap_or_else(|| "-".to_owned())
            };
            let _ = writeln!(
                out,
                "  {:<28} {:>7.1}% {:>8} {:>8} {:>8} {:>8}  {}",
                truncate(&status.slo, 28),
                status.budget_remaining * 100.0,
                burn("5m"),
                burn("1h"),
                burn("6h"),
                burn("3d"),
                clock(status.ts)
            );
        }
    }

    fn render_faults(&self, out: &mut String, frame: &Frame, heading: &dyn Fn(&str) -> String) {
        let _ = writeln!(
            out,
            "{}",
            heading("INJECTED FAULTS (the demo generator's ground truth)")
        );
        let now = frame.now_ms;
        let mut shown = 0;
        for fault in frame.faults.iter().filter(|f| f.start_ms <= now) {
            let when = if fault.covers(now) { "now " } else { "past" };
            // The first alert on the service that started while the fault lasted.
            let first = self.alert_starts.get(&fault.service).and_then(|starts| {
                starts
                    .range((fault.start_ms, String::new())..)
                    .next()
                    .filter(|(at, _)| *at < fault.end_ms)
            });
            let caught = match first {
                Some((at, rule)) => format!(
                    "{rule} alert at {} ({} s in)",
                    clock(*at),
                    (at - fault.start_ms) / 1000
                ),
                None if fault.covers(now) => "no alert on it yet".to_owned(),
                None => "missed: no alert on it while it lasted".to_owned(),
            };
            let _ = writeln!(
                out,
                "  {when}  {} {:?} on {} {}–{}: {caught}",
                fault.id,
                fault.kind,
                fault.service,
                clock(fault.start_ms),
                clock(fault.end_ms)
            );
            shown += 1;
        }
        if let Some(next) = frame.faults.iter().find(|f| f.start_ms > now) {
            let _ = writeln!(
                out,
                "  next  {} {:?} on {} at {} (in {} s)",
                next.id,
                next.kind,
                next.service,
                clock(next.start_ms),
                (next.start_ms - now) / 1000
            );
            shown += 1;
        }
        if shown == 0 {
            let _ = writeln!(out, "  none planned");
        }
    }
}

fn render_templates(
    out: &mut String,
    templates: &BTreeMap<String, usize>,
    heading: &dyn Fn(&str) -> String,
) {
    let total: usize = templates.values().sum();
    let _ = writeln!(
        out,
        "{}",
        heading(&format!(
            "LOG TEMPLATES: {total} over {} services",
            templates.len()
        ))
    );
    if templates.is_empty() {
        let _ = writeln!(out, "  none mined yet");
        return;
    }
    let listed: Vec<String> = templates
        .iter()
        .map(|(service, n)| format!("{service} {n}"))
        .collect();
    let _ = writeln!(out, "  {}", listed.join(" · "));
}

/// Holds `value` under `key` unless the record held there is at least as far on
/// by `order` (a topic may repeat a record, or deliver an older one late).
fn keep_later<V, O: Ord>(
    map: &mut BTreeMap<String, V>,
    key: String,
    value: V,
    order: impl Fn(&V) -> O,
) {
    if map.get(&key).is_none_or(|held| order(held) < order(&value)) {
        map.insert(key, value);
    }
}

/// `page` first, then `ticket`, then anything else.
fn severity_rank(severity: &str) -> u8 {
    3 - cara_operators::alert::severity_rank(severity)
}

/// `HH:MM:SS` UTC of an epoch-ms time.
fn clock(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_else(|| "--:--:--".to_owned())
}

/// At most `width` characters, with an ellipsis when cut.
fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::incidents::IncidentKind;

    const T0: i64 = 1_764_583_200_000; // 2025-12-01T10:00:00Z

    fn alert(
        id: &str,
        rule: &str,
        severity: &str,
        status: &str,
        service: &str,
        start: &str,
    ) -> Vec<u8> {
        format!(
            r#"{{"id":"{id}","rule":"{rule}","kind":"anomaly","severity":"{severity}","status":"{status}",
               "starts_at":"{start}","labels":{{"service":"{service}"}},
               "annotations":{{"summary":"{rule} on {service}","description":"d"}},"score":0.5}}"#
        )
        .into_bytes()
    }

    fn slo(name: &str, ts: i64, budget: f64, burn_5m: f64) -> Vec<u8> {
        format!(
            r#"{{"slo":"{name}","ts":{ts},"budget_remaining":{budget},
               "windows":{{"5m":{{"good":90,"total":100,"burn_rate":{burn_5m}}},
                           "1h":{{"good":990,"total":1000,"burn_rate":1.0}}}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn repeats_collapse_resolutions_remove_and_rows_group_by_rule_and_service() {
        let mut board = Board::default();
        let start = "2025-12-01T10:00:05.000Z";
        board
            .apply_alert(&alert("a", "p99", "ticket", "firing", "cart", start))
            .unwrap();
        board
            .apply_alert(&alert("a", "p99", "ticket", "firing", "cart", start))
            .unwrap();
        board
            .apply_alert(&alert(
                "b",
                "p99",
                "ticket",
                "firing",
                "cart",
                "2025-12-01T10:00:01.000Z",
            ))
            .unwrap();
        board
            .apply_alert(&alert("c", "errors", "page", "firing", "payments", start))
            .unwrap();
        board
            .apply_alert(&alert("d", "errors", "page", "firing", "auth", start))
            .unwrap();
        board
            .apply_alert(&alert("d", "errors", "page", "resolved", "auth", start))
            .unwrap();
        // A replay may repeat d's firing record after its resolution.
        board
            .apply_alert(&alert("d", "errors", "page", "firing", "auth", start))
            .unwrap();
        assert_eq!(
            board.firing().count(),
            3,
            "a twice is one alert; d resolved"
        );
        let text = board.render(
            &Frame {
                now_ms: T0,
                ..Frame::default()
            },
            Style::Plain,
        );
        assert!(
            text.contains("FIRING ALERTS: 3 (4 fired, 1 resolved so far)"),
            "{text}"
        );
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("  page") || l.starts_with("  ticket"))
            .collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert!(
            rows[0].contains("errors") && rows[0].contains("payments"),
            "pages first: {text}"
        );
        assert!(
            rows[1].contains("cart") && rows[1].contains("    2  10:00:01"),
            "two alerts, earliest start: {text}"
        );
        assert!(!text.contains("auth"), "resolved alerts are gone: {text}");
    }

    #[test]
    fn slos_keep_their_latest_status() {
        let mut board = Board::default();
        board
            .apply_slo(&slo("checkout-availability", T0 + 120_000, 0.5, 14.4))
            .unwrap();
        board
            .apply_slo(&slo("checkout-availability", T0 + 60_000, 0.9, 1.0))
            .unwrap();
        let text = board.render(&Frame::default(), Style::Plain);
        let row = text
            .lines()
            .find(|l| l.contains("checkout-availability"))
            .unwrap();
        assert!(
            row.contains("50.0%") && row.contains("14.40x") && row.contains("1.00x"),
            "{row}"
        );
        assert!(row.contains("10:02:00"), "{row}");
        assert!(
            row.split_whitespace().nth(4) == Some("-"),
            "no 6h window: {row}"
        );
    }

    #[test]
    fn faults_say_whether_and_when_cara_alerted() {
        let mut board = Board::default();
        board
            .apply_alert(&alert(
                "x",
                "error_ratio",
                "page",
                "firing",
                "payments",
                "2025-12-01T10:01:30.000Z",
            ))
            .unwrap();
        // An alert on the service before the fault does not count for it.
        board
            .apply_alert(&alert(
                "w",
                "log_new_error_template",
                "ticket",
                "firing",
                "payments",
                "2025-12-01T10:00:30.000Z",
            ))
            .unwrap();
        let fault = |id: &str, service: &str, start: i64, end: i64| Incident {
            id: id.into(),
            kind: IncidentKind::ErrorBurst,
            service: service.into(),
            start_ms: start,
            end_ms: end,
            affected: Vec::new(),
        };
        let frame = Frame {
            now_ms: T0 + 120_000,
            faults: vec![
                fault("inc-1", "payments", T0 + 60_000, T0 + 180_000),
                fault("inc-2", "cart", T0 + 600_000, T0 + 700_000),
                fault("inc-0", "auth", T0 - 60_000, T0 + 10_000),
            ],
            ..Frame::default()
        };
        let text = board.render(&frame, Style::Plain);
        assert!(text.contains("now   inc-1 ErrorBurst on payments 10:01:00–10:03:00: error_ratio alert at 10:01:30 (30 s in)"), "{text}");
        assert!(
            text.contains("next  inc-2 ErrorBurst on cart at 10:10:00 (in 480 s)"),
            "{text}"
        );
        assert!(
            text.contains("past  inc-0 ErrorBurst on auth 09:59:00–10:00:10: missed"),
            "{text}"
        );
    }

    #[test]
    fn plain_text_has_no_escape_codes_and_the_terminal_style_does() {
        console::set_colors_enabled(true);
        let mut board = Board::default();
        board
            .apply_alert(&alert(
                "a",
                "p99",
                "page",
                "firing",
                "cart",
                "2025-12-01T10:00:05.000Z",
            ))
            .unwrap();
        let frame = Frame {
            templates: BTreeMap::from([("cart".to_owned(), 3), ("api".to_owned(), 5)]),
            ..Frame::default()
        };
        let plain = board.render(&frame, Style::Plain);
        assert!(!plain.contains('\x1b'), "{plain:?}");
        assert!(
            plain.contains("LOG TEMPLATES: 8 over 2 services\n  api 5 · cart 3"),
            "{plain}"
        );
        assert!(board.render(&frame, Style::Terminal).contains('\x1b'));
    }

    #[test]
    fn records_that_are_not_alerts_are_refused() {
        let mut board = Board::default();
        assert!(board.apply_alert(b"{}").is_err());
        assert!(board
            .apply_alert(&alert("a", "r", "page", "firing", "s", "yesterday"))
            .is_err());
        assert!(board.apply_slo(b"[1,2]").is_err());
        assert_eq!(board.firing().count(), 0);
    }

    #[test]
    fn open_incidents_show_their_ranked_causes_and_closed_ones_only_count() {
        use cara_operators::incidents::Cause;
        let incident = |id: &str, status: IncidentStatus, at: i64, services: &[&str]| {
            let record = IncidentRecord {
                id: id.into(),
                status,
                at,
                opened_at: 1_764_583_200_000,
                resolved_at: (status == IncidentStatus::Resolved).then_some(at),
                severity: "page".into(),
                alert_ids: services.iter().map(|s| format!("a-{s}")).collect(),
                rules: vec!["metric_anomaly".into()],
                services: services.iter().map(|s| s.to_string()).collect(),
                probable_root_cause: vec![Cause {
                    service: services[0].into(),
                    score: 0.9,
                    reasons: vec![format!("none of its dependencies is anomalous ({id})")],
                }],
                merged_into: None,
                summary: String::new(),
            };
            serde_json::to_vec(&record).unwrap()
        };
        let mut board = Board::default();
        board
            .apply_incident(&incident(
                "inc-a",
                IncidentStatus::Open,
                1_764_583_200_000,
                &["db"],
            ))
            .unwrap();
        board
            .apply_incident(&incident(
                "inc-a",
                IncidentStatus::Update,
                1_764_583_260_000,
                &["db", "web"],
            ))
            .unwrap();
        // A repeat of the open record, read after the update, changes nothing.
        board
            .apply_incident(&incident(
                "inc-a",
                IncidentStatus::Open,
                1_764_583_200_000,
                &["db"],
            ))
            .unwrap();
        board
            .apply_incident(&incident(
                "inc-b",
                IncidentStatus::Open,
                1_764_583_200_000,
                &["cart"],
            ))
            .unwrap();
        board
            .apply_incident(&incident(
                "inc-b",
                IncidentStatus::Resolved,
                1_764_583_900_000,
                &["cart"],
            ))
            .unwrap();
        let text = board.render(&Frame::default(), Style::Plain);
        assert!(
            text.contains("INCIDENTS: 1 open (2 opened, 1 resolved so far)"),
            "{text}"
        );
        assert!(
            text.contains("inc-a  since 10:00:00  page     2 alerts on db, web"),
            "{text}"
        );
        assert!(
            text.contains("1. db           0.90  none of its dependencies is anomalous (inc-a)"),
            "{text}"
        );
        assert!(!text.contains("inc-b"), "{text}");
        assert!(board.apply_incident(b"{}").is_err());
    }

    #[test]
    fn decisions_waiting_are_listed_with_how_to_approve_and_the_rest_counted() {
        use cara_operators::decisions::policy::Risk;
        let decision = |id: &str, action: &str, state: DecisionState| {
            let record = DecisionRecord {
                id: id.into(),
                at: 0,
                incident_id: "inc-1".into(),
                alert_ids: vec![],
                action: action.into(),
                kind: "kafka".into(),
                target: "deploy/api".into(),
                rationale: String::new(),
                risk: Risk::High,
                requires_approval: true,
                policy_rule: "r".into(),
                state,
                approved_by: String::new(),
                detail: String::new(),
                expires_at: 1_764_583_200_000,
                escalation_of: None,
                prev_hash: String::new(),
                hash: String::new(),
            };
            serde_json::to_vec(&record).unwrap()
        };
        let mut board = Board::default();
        board
            .apply_decision(&decision("dec-1", "open_ticket", DecisionState::Proposed))
            .unwrap();
        board
            .apply_decision(&decision("dec-1", "open_ticket", DecisionState::Executed))
            .unwrap();
        // A repeat of an earlier change, read late, does not move it back.
        board
            .apply_decision(&decision("dec-1", "open_ticket", DecisionState::Approved))
            .unwrap();
        board
            .apply_decision(&decision("dec-2", "rollback", DecisionState::Proposed))
            .unwrap();
        let text = board.render(&Frame::default(), Style::Plain);
        assert!(
            text.contains("DECISIONS: 1 waiting for approval (2 made: 1 executed, 0 rejected, 0 expired, 0 failed)"),
            "{text}"
        );
        assert!(
            text.contains("dec-2  rollback deploy/api (high risk) for inc-1, expires 10:00:00"),
            "{text}"
        );
        assert!(
            text.contains(r#"{"decision_id":"dec-2","verdict":"approve","by":"you"}"#),
            "{text}"
        );
        assert!(!text.contains("dec-1  "), "{text}");
    }
}
