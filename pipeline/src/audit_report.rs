//! `cara audit report`: the compliance summary an auditor asks for, computed from
//! the archived audit trail (not from the decisions table: the trail is what is
//! tamper-evident, and the report says whether it verifies).
//!
//! For the decisions proposed in a time range: per policy and risk, how many were
//! approved by the policy or by a person, rejected, expired, carried out or failed;
//! who approved or rejected what, and how long people took; expiries and the
//! escalations they caused; failed actions with the receiver's answer. As Markdown,
//! or as one self-contained HTML page with a bar chart drawn by plotters.

use std::collections::BTreeMap;
use std::fmt::Write;

use cara_operators::decisions::audit::AuditEntry;
use cara_operators::decisions::{DecisionRecord, DecisionState};
use plotters::prelude::*;

use crate::backtest::labels::{markdown, Cells};
use crate::backtest::report::{escape, html_table};
use crate::sample::quantile;

/// One decision's history within the trail.
#[derive(Debug, Clone, Default)]
struct History {
    proposed: Option<DecisionRecord>,
    /// Its later changes, in order, each with who made it (the entry's `by`).
    changes: Vec<(DecisionRecord, String)>,
}

impl History {
    fn last_state(&self) -> Option<DecisionState> {
        self.changes
            .last()
            .map(|(d, _)| d)
            .or(self.proposed.as_ref())
            .map(|d| d.state)
    }

    fn change(&self, state: DecisionState) -> Option<&DecisionRecord> {
        self.changes
            .iter()
            .map(|(d, _)| d)
            .find(|d| d.state == state)
    }
}

/// What the report says, computed once for both formats.
#[derive(Debug, Clone, Default)]
pub struct AuditSummary {
    /// Decisions proposed in the range, by id.
    histories: BTreeMap<String, History>,
    /// Verdicts that found no decision waiting.
    pub ignored_verdicts: usize,
    /// Entries read.
    pub entries: usize,
    /// `verifies`, or the break `cara audit verify` reports.
    pub verification: String,
    /// The range, ms (`None`: open).
    pub range: (Option<i64>, Option<i64>),
}

/// The summary of `entries` (in chain order) for decisions proposed in `range`.
pub fn summarise(
    entries: &[AuditEntry],
    range: (Option<i64>, Option<i64>),
    verification: String,
) -> AuditSummary {
    let in_range = |at: i64| range.0.is_none_or(|f| at >= f) && range.1.is_none_or(|t| at < t);
    let mut summary = AuditSummary {
        entries: entries.len(),
        verification,
        range,
        ..AuditSummary::default()
    };
    for entry in entries {
        if entry.event == "verdict_ignored" {
            summary.ignored_verdicts += usize::from(in_range(entry.at));
            continue;
        }
        let Ok(record) = serde_json::from_str::<DecisionRecord>(&entry.payload) else {
            continue;
        };
        if record.state == DecisionState::Proposed {
            if in_range(record.at) {
                let id = record.id.clone();
                summary.histories.entry(id).or_default().proposed = Some(record);
            }
        } else if let Some(history) = summary.histories.get_mut(&record.id) {
            history.changes.push((record, entry.by.clone()));
        }
    }
    summary
}

fn seconds(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

impl AuditSummary {
    fn decided(&self) -> impl Iterator<Item = (&DecisionRecord, &History)> {
        self.histories
            .values()
            .filter_map(|h| Some((h.proposed.as_ref()?, h)))
    }

    /// Per policy and risk: outcomes.
    pub fn policy_table(&self) -> Cells {
        let mut rows: BTreeMap<(String, String), [usize; 8]> = BTreeMap::new();
        for (proposed, history) in self.decided() {
            let row = rows
                .entry((
                    proposed.policy_rule.clone(),
                    proposed.risk.as_str().to_owned(),
                ))
                .or_default();
            row[0] += 1;
            match history.change(DecisionState::Approved) {
                Some(a) if a.approved_by == "policy" => row[1] += 1,
                Some(_) => row[2] += 1,
                None => {}
            }
            for (i, state) in [
                DecisionState::Rejected,
                DecisionState::Expired,
                DecisionState::Executed,
                DecisionState::Failed,
            ]
            .into_iter()
            .enumerate()
            {
                row[3 + i] += usize::from(history.change(state).is_some());
            }
            row[7] += usize::from(history.last_state() == Some(DecisionState::Proposed));
        }
        let header = vec![
            "policy",
            "risk",
            "proposed",
            "approved by policy",
            "approved by a person",
            "rejected",
            "expired",
            "executed",
            "failed",
            "waiting",
        ];
        let rows = rows
            .into_iter()
            .map(|((policy, risk), counts)| {
                let mut cells = vec![policy, risk];
                cells.extend(counts.iter().map(|c| c.to_string()));
                cells
            })
            .collect();
        (header, rows)
    }

    /// Per person: verdicts, and how long after the proposal they came.
    pub fn approver_table(&self) -> Cells {
        let mut by: BTreeMap<String, (usize, usize, Vec<i64>)> = BTreeMap::new();
        for (proposed, history) in self.decided() {
            for (change, who) in &history.changes {
                let human = match change.state {
                    DecisionState::Approved => who != "policy",
                    DecisionState::Rejected => true,
                    _ => false,
                };
                if !human {
                    continue;
                }
                let entry = by.entry(who.clone()).or_default();
                match change.state {
                    DecisionState::Approved => entry.0 += 1,
                    _ => entry.1 += 1,
                }
                entry.2.push(change.at - proposed.at);
            }
        }
        let header = vec![
            "who",
            "approved",
            "rejected",
            "median time to verdict",
            "max",
        ];
        let rows = by
            .into_iter()
            .map(|(who, (approved, rejected, mut times))| {
                times.sort_unstable();
                vec![
                    who,
                    approved.to_string(),
                    rejected.to_string(),
                    quantile(&times, 0.5).map_or("—".into(), seconds),
                    times.last().copied().map_or("—".into(), seconds),
                ]
            })
            .collect();
        (header, rows)
    }

    /// Expired decisions and what they escalated to.
    pub fn expiry_table(&self) -> Cells {
        let escalations: BTreeMap<&str, &DecisionRecord> = self
            .decided()
            .filter_map(|(p, _)| Some((p.escalation_of.as_deref()?, p)))
            .collect();
        let header = vec!["decision", "action", "incident", "expired", "escalated to"];
        let rows = self
            .decided()
            .filter_map(|(p, h)| {
                let expired = h.change(DecisionState::Expired)?;
                let escalated = escalations
                    .get(p.id.as_str())
                    .map_or("—".to_owned(), |e| format!("{} ({})", e.action, e.id));
                Some(vec![
                    p.id.clone(),
                    p.action.clone(),
                    p.incident_id.clone(),
                    cara_operators::time::rfc3339_ms::to_text(expired.at),
                    escalated,
                ])
            })
            .collect();
        (header, rows)
    }

    /// Actions that failed, with what the receiver answered.
    pub fn failure_table(&self) -> Cells {
        let header = vec!["decision", "action", "target", "failed", "detail"];
        let rows = self
            .decided()
            .filter_map(|(p, h)| {
                let failed = h.change(DecisionState::Failed)?;
                Some(vec![
                    p.id.clone(),
                    p.action.clone(),
                    p.target.clone(),
                    cara_operators::time::rfc3339_ms::to_text(failed.at),
                    failed.detail.clone(),
                ])
            })
            .collect();
        (header, rows)
    }

    /// Decisions, automatic and by people, and people's time to approve.
    pub fn headline(&self) -> String {
        let all = self.decided().count();
        let automatic = self
            .decided()
            .filter(|(_, h)| {
                h.change(DecisionState::Approved)
                    .is_some_and(|a| a.approved_by == "policy")
            })
            .count();
        let mut human: Vec<i64> = self
            .decided()
            .filter_map(|(p, h)| {
                let a = h.change(DecisionState::Approved)?;
                (a.approved_by != "policy").then_some(a.at - p.at)
            })
            .collect();
        human.sort_unstable();
        let range = |ms: Option<i64>| {
            ms.map_or("open".to_owned(), cara_operators::time::rfc3339_ms::to_text)
        };
        format!(
            "{all} decisions proposed from {} to {}: {automatic} approved by the policy, {} by a person \
             (time to approve: median {}, p90 {}, max {}); verdicts that found no decision waiting: {}. \
             Audit trail: {} entries, {}.",
            range(self.range.0),
            range(self.range.1),
            human.len(),
            quantile(&human, 0.5).map_or("—".into(), seconds),
            quantile(&human, 0.9).map_or("—".into(), seconds),
            human.last().copied().map_or("—".into(), seconds),
            self.ignored_verdicts,
            self.entries,
            self.verification,
        )
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut text = format!("# cara audit report\n\n{}\n", self.headline());
        for (title, table) in self.sections() {
            let _ = write!(text, "\n## {title}\n\n{}", markdown(&table));
        }
        text
    }

    fn sections(&self) -> [(&'static str, Cells); 4] {
        [
            ("Decisions by policy and risk", self.policy_table()),
            ("Who approved or rejected", self.approver_table()),
            ("Expiries and escalations", self.expiry_table()),
            ("Failed actions", self.failure_table()),
        ]
    }

    /// The report as one HTML page (inline SVG chart, no external resources).
    pub fn to_html(&self) -> Result<String, String> {
        let mut page = String::from(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>cara audit report</title>\n<style>\n\
             body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1040px; }\n\
             h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }\n\
             table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }\n\
             th, td { border: 1px solid #ccc; padding: 3px 8px; } td.n { text-align: right; } th { background: #f4f4f4; }\n\
             </style>\n</head>\n<body>\n<h1>cara audit report</h1>\n",
        );
        let _ = writeln!(page, "<p id=\"headline\">{}</p>", escape(&self.headline()));
        page.push_str("<div class=\"plot\" id=\"outcomes\">\n");
        page.push_str(&self.outcome_chart()?);
        page.push_str("</div>\n");
        let ids = ["by-policy", "approvers", "expiries", "failures"];
        for ((title, table), id) in self.sections().into_iter().zip(ids) {
            let _ = writeln!(page, "<h2>{}</h2>", escape(title));
            html_table(&mut page, id, &table);
        }
        page.push_str("</body>\n</html>\n");
        Ok(page)
    }

    /// Stacked bars per policy: automatic and human approvals, rejections,
    /// expiries, failures, still waiting.
    fn outcome_chart(&self) -> Result<String, String> {
        let (_, rows) = self.policy_table();
        let parts: [(usize, &str, RGBColor); 6] = [
            (3, "approved by policy", RGBColor(44, 160, 44)),
            (4, "approved by a person", RGBColor(31, 119, 180)),
            (5, "rejected", RGBColor(140, 86, 75)),
            (6, "expired", RGBColor(255, 127, 14)),
            (8, "failed", RGBColor(214, 39, 40)),
            (9, "waiting", RGBColor(160, 160, 160)),
        ];
        let count = |row: &Vec<String>, column: usize| row[column].parse::<u32>().unwrap_or(0);
        let highest = rows
            .iter()
            .map(|r| parts.iter().map(|(c, _, _)| count(r, *c)).sum::<u32>())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (1000, 340)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let n = rows.len().max(1);
            // Room above the tallest bar for the legend.
            let top = f64::from(highest) * 2.4 + 1.0;
            let labels: Vec<String> = rows
                .iter()
                .map(|r| format!("{} ({})", r[0], r[1]))
                .collect();
            let mut chart = ChartBuilder::on(&root)
                .margin(12)
                .caption("decisions per policy, by outcome", ("sans-serif", 16))
                .x_label_area_size(30)
                .y_label_area_size(40)
                .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..top)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(n + 1)
                .x_label_formatter(&|x| {
                    let i = x.round();
                    match (x - i).abs() < 1e-6 && i >= 0.0 {
                        true => labels.get(i as usize).cloned().unwrap_or_default(),
                        false => String::new(),
                    }
                })
                .y_labels(top as usize + 1)
                .y_label_formatter(&|y| match (y - y.round()).abs() < 1e-6 {
                    true => format!("{y:.0}"),
                    false => String::new(),
                })
                .y_desc("decisions")
                .draw()
                .map_err(|e| e.to_string())?;
            for (column, name, color) in parts {
                let mut bars = Vec::new();
                for (i, row) in rows.iter().enumerate() {
                    let below: u32 = parts
                        .iter()
                        .take_while(|(c, _, _)| *c != column)
                        .map(|(c, _, _)| count(row, *c))
                        .sum();
                    let here = count(row, column);
                    if here > 0 {
                        let x = i as f64;
                        let (low, high) = (f64::from(below), f64::from(below + here));
                        bars.push(Rectangle::new(
                            [(x - 0.35, low), (x + 0.35, high)],
                            color.filled(),
                        ));
                    }
                }
                chart
                    .draw_series(bars)
                    .map_err(|e| e.to_string())?
                    .label(name)
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(svg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cara_operators::decisions::maker::{decision_id, DecisionMaker, DecisionOutput};
    use cara_operators::decisions::policy::{Conditions, PolicyRule, Risk};
    use cara_operators::decisions::{DecisionInput, DecisionSettings, VerdictKind};
    use cara_operators::incidents::{Cause, IncidentRecord, IncidentStatus};

    const MIN: i64 = 60_000;

    fn trail() -> Vec<AuditEntry> {
        let rule = |name: &str, risk: Risk, escalate: Option<&str>| PolicyRule {
            name: name.into(),
            when: Conditions::default(),
            action: name.into(),
            kind: "webhook".into(),
            target: "{cause}".into(),
            risk,
            approval_timeout_ms: 10 * MIN,
            escalate_to: escalate.map(str::to_owned),
        };
        let mut page = rule("page", Risk::Low, None);
        page.when.min_alerts = 99;
        let settings = DecisionSettings {
            rules: vec![
                rule("ticket", Risk::Low, None),
                rule("rollback", Risk::High, Some("page")),
                page,
            ],
            auto_approve: Risk::Low,
        };
        let incident = |id: &str, at: i64| DecisionInput::Incident {
            incident: IncidentRecord {
                id: id.into(),
                status: IncidentStatus::Open,
                at,
                opened_at: at,
                resolved_at: None,
                severity: "page".into(),
                alert_ids: vec!["a".into()],
                rules: vec![],
                services: vec!["db".into()],
                probable_root_cause: vec![Cause {
                    service: "db".into(),
                    score: 1.0,
                    reasons: vec![],
                }],
                merged_into: None,
                summary: String::new(),
            },
        };
        let mut maker = DecisionMaker::new(settings, b"k".to_vec());
        let mut out = DecisionOutput::default();
        for input in [
            incident("inc-1", MIN),
            incident("inc-2", 2 * MIN),
            DecisionInput::Verdict {
                decision_id: decision_id("inc-1", "rollback"),
                verdict: VerdictKind::Approve,
                by: "alice".into(),
                reason: String::new(),
                at_ms: 4 * MIN,
            },
            DecisionInput::Result {
                decision_id: decision_id("inc-1", "ticket"),
                ok: false,
                detail: "HTTP 500".into(),
                at_ms: 5 * MIN,
            },
            DecisionInput::Tick { at_ms: 13 * MIN },
        ] {
            maker.apply(&input, &mut out);
        }
        out.audit
    }

    #[test]
    fn the_summary_counts_outcomes_people_expiries_and_failures() {
        // inc-1: ticket approved by the policy and failed; rollback approved by
        // alice after 3 min. inc-2: ticket approved; rollback unanswered, expired
        // at the 13-minute tick, escalated to a page approved by the policy.
        let summary = summarise(&trail(), (None, None), "verifies".into());
        let md = summary.to_markdown();
        assert!(
            md.contains("| rollback | high | 2 | 0 | 1 | 0 | 1 | 0 | 0 | 0 |"),
            "{md}"
        );
        assert!(
            md.contains("| ticket | low | 2 | 2 | 0 | 0 | 0 | 0 | 1 | 0 |"),
            "{md}"
        );
        assert!(md.contains("| page | low | 1 | 1 | 0 |"), "{md}");
        assert!(md.contains("| alice | 1 | 0 | 180.0 s | 180.0 s |"), "{md}");
        assert!(
            md.contains(&format!(
                "| {} | rollback | inc-2 |",
                decision_id("inc-2", "rollback")
            )),
            "{md}"
        );
        assert!(
            md.contains("| ticket | db |") && md.contains("HTTP 500"),
            "{md}"
        );
        assert!(
            md.contains(
                "5 decisions proposed from open to open: 3 approved by the policy, 1 by a person"
            ),
            "{md}"
        );
        // A range keeps the decisions proposed in it.
        let later = summarise(&trail(), (Some(2 * MIN), None), "verifies".into());
        assert!(later.to_markdown().contains("| rollback | high | 1 |"));
        let html = summary.to_html().unwrap();
        assert!(
            html.contains("<svg") && html.contains("id=\"by-policy\"") && html.contains("</html>")
        );
    }
}
