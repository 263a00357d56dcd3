//! The incident correlator: alert transitions of every kind in, incident transitions
//! out, in event time.
//!
//! Transitions and observed calls are buffered until the stage's watermark passes
//! them, then applied in the order of their event time (calls first at equal times,
//! then firing before resolved, then by alert id), so what comes out depends on
//! the records and the watermark alone, not on which stage's alert arrived first.
//!
//! A firing alert joins an open incident when its service is within
//! `max_hops` calls (either direction, over the calls seen in the last `edge_ttl_ms`)
//! of a service already in it, and it started no later than `gap_ms` after the
//! incident's latest onset; an alert naming no service (an SLO's burn) joins the
//! open incident with the latest onset within the gap. Alerts that *foresee* a
//! limit (a `capacity` exhaustion, a `cost_budget` to be passed) and alerts that
//! report a symptom never share an incident: a forecast that fires during a fault
//! nearby is not part of it (the demo's filling volume joined a fault on its
//! caller, and the scale-out was proposed for that fault's cause), and forecasts
//! share one only on the same service (a memory forecast on a caller took a
//! volume's incident, and its scale-out, in the same way). An alert that could join
//! several incidents merges them into the oldest (each absorbed one is closed as
//! `merged`, naming the survivor). An incident resolves once every alert in it has
//! resolved and `quiet_ms` passed with nothing new. Repeated transitions (a replayed
//! alert topic) change nothing: an alert id is applied once per status.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::graph::ServiceGraph;
use super::root_cause::{rank, Symptom};
use super::{IncidentRecord, IncidentSettings, IncidentStatus};
use crate::alert::{severity_rank, AlertRecord, AlertStatus};
use crate::stable_hash::Fnv1a;

/// Something the correlator applies in event-time order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Event {
    /// `caller` called `callee` (a `service_graph` row, stamped at its window's end).
    Call {
        at: i64,
        caller: String,
        callee: String,
    },
    /// An alert transition.
    Alert(Member, AlertStatus, i64),
}

impl Event {
    fn at(&self) -> i64 {
        match self {
            Event::Call { at, .. } | Event::Alert(_, _, at) => *at,
        }
    }

    /// Calls, then firing, then resolved transitions at equal times; then by id.
    fn order_key(&self) -> (i64, u8, &str) {
        match self {
            Event::Call { at, caller, .. } => (*at, 0, caller),
            Event::Alert(member, AlertStatus::Firing, at) => (*at, 1, &member.id),
            Event::Alert(member, AlertStatus::Resolved, at) => (*at, 2, &member.id),
        }
    }
}

/// What an incident keeps of one of its alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Member {
    id: String,
    rule: String,
    severity: String,
    service: Option<String>,
    /// The series' `__name__`, else the rule.
    signal: String,
    starts_at: i64,
    score: f64,
    resolved_at: Option<i64>,
}

impl Member {
    fn of(alert: &AlertRecord) -> Member {
        let label = |key: &str| {
            alert
                .labels
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        Member {
            id: alert.id.clone(),
            rule: alert.rule.clone(),
            severity: alert.severity.clone(),
            service: label("service"),
            signal: label("__name__").unwrap_or_else(|| alert.rule.clone()),
            starts_at: alert.starts_at,
            score: if alert.score.is_finite() {
                alert.score
            } else {
                0.0
            },
            resolved_at: None,
        }
    }

    /// Whether its rule foresees reaching a limit rather than reports a symptom.
    fn foresees(&self) -> bool {
        FORESIGHT_RULES.contains(&self.rule.as_str())
    }
}

/// Rules whose alerts foresee reaching a limit rather than report a symptom.
const FORESIGHT_RULES: [&str; 2] = [
    crate::capacity::stage::RULE,
    crate::cost::alerts::BUDGET_RULE,
];

/// An open incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Incident {
    id: String,
    opened_at: i64,
    /// Latest onset of its alerts.
    last_onset: i64,
    alerts: BTreeMap<String, Member>,
    /// When its last alert resolved, while all are resolved.
    quiet_since: Option<i64>,
}

impl Incident {
    fn services(&self) -> BTreeSet<&str> {
        self.alerts
            .values()
            .filter_map(|m| m.service.as_deref())
            .collect()
    }

    /// Whether it holds foreseeing alerts (then it holds nothing else).
    fn foresees(&self) -> bool {
        self.alerts.values().any(Member::foresees)
    }
}

/// Correlates alerts into incidents; serialisable, so it checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Correlator {
    settings: IncidentSettings,
    graph: ServiceGraph,
    /// Events not yet passed by the watermark.
    pending: Vec<Event>,
    /// By id.
    open: BTreeMap<String, Incident>,
    /// Alert id to the open incident holding it.
    alert_incident: BTreeMap<String, String>,
    watermark: i64,
    /// Events that arrived behind the watermark (applied at the next advance).
    late: u64,
    /// Incidents closed early because `max_open` were open.
    evicted: u64,
    /// Each transition applied (alert id, resolved?) with its time, forgotten
    /// [`REPEATS_REMEMBERED_MS`] behind the watermark: a repeat is ignored.
    #[serde(default, with = "crate::map_as_list")]
    applied: BTreeMap<(String, bool), i64>,
    /// Transitions ignored as repeats.
    #[serde(default)]
    repeats: u64,
}

/// How long behind the watermark an applied transition is remembered, so that the
/// same transition sent again (a stage replaying its input after a crash, from its
/// last checkpoint) is recognised: far longer than any replay.
pub const REPEATS_REMEMBERED_MS: i64 = 6 * 3_600_000;

/// What the correlator counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CorrelatorCounts {
    /// Events that arrived behind the watermark (applied at the next advance).
    pub late: u64,
    /// Incidents closed because too many were open.
    pub evicted: u64,
    /// Alert transitions seen before, ignored.
    pub repeats: u64,
}

impl Correlator {
    /// A correlator with nothing open.
    pub fn new(settings: IncidentSettings) -> Correlator {
        Correlator {
            settings,
            graph: ServiceGraph::default(),
            pending: Vec::new(),
            open: BTreeMap::new(),
            alert_incident: BTreeMap::new(),
            watermark: i64::MIN,
            late: 0,
            evicted: 0,
            applied: BTreeMap::new(),
            repeats: 0,
        }
    }

    /// Continues under `settings` (a restart with a changed config).
    pub fn reconfigure(&mut self, settings: IncidentSettings) {
        self.settings = settings;
    }

    /// Takes an alert transition; applied once the watermark passes its time. A
    /// transition seen before (the same alert id and status) is ignored.
    pub fn observe_alert(&mut self, alert: &AlertRecord) {
        let key = (alert.id.clone(), alert.status == AlertStatus::Resolved);
        if self.applied.contains_key(&key) {
            self.repeats += 1;
            return;
        }
        self.applied.insert(key, alert.at);
        self.push(Event::Alert(Member::of(alert), alert.status, alert.at));
    }

    /// Counts a transition its source had already passed (a replay), not taken.
    pub fn ignore_replayed(&mut self) {
        self.repeats += 1;
    }

    /// Takes a call `caller → callee` seen at `at_ms`.
    pub fn observe_call(&mut self, caller: &str, callee: &str, at_ms: i64) {
        self.push(Event::Call {
            at: at_ms,
            caller: caller.to_owned(),
            callee: callee.to_owned(),
        });
    }

    fn push(&mut self, event: Event) {
        if event.at() < self.watermark {
            self.late += 1;
        }
        self.pending.push(event);
    }

    /// Incidents open now.
    pub fn open_incidents(&self) -> usize {
        self.open.len()
    }

    /// What it counted.
    pub fn counts(&self) -> CorrelatorCounts {
        CorrelatorCounts {
            late: self.late,
            evicted: self.evicted,
            repeats: self.repeats,
        }
    }

    /// Whether it holds late events: ones at or before its watermark, which an
    /// [`Correlator::advance`] applies even when the watermark does not move.
    pub fn holds_late(&self) -> bool {
        self.pending.iter().any(|e| e.at() <= self.watermark)
    }

    /// The watermark it has applied everything up to (`i64::MIN` before any).
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Applies every buffered event at or before `watermark_ms`, in event-time
    /// order, then resolves the incidents quiet long enough by then.
    pub fn advance(&mut self, watermark_ms: i64, out: &mut Vec<IncidentRecord>) {
        self.watermark = self.watermark.max(watermark_ms);
        let watermark = self.watermark;
        let (mut due, keep): (Vec<Event>, Vec<Event>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|e| e.at() <= watermark);
        self.pending = keep;
        due.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        for event in due {
            self.resolve_quiet(event.at(), out);
            match event {
                Event::Call { at, caller, callee } => self.graph.observe(&caller, &callee, at),
                Event::Alert(member, AlertStatus::Firing, at) => self.fire(member, at, out),
                Event::Alert(member, AlertStatus::Resolved, at) => {
                    self.resolve_alert(&member.id, at)
                }
            }
        }
        self.resolve_quiet(watermark, out);
        if watermark > i64::MIN + self.settings.edge_ttl_ms {
            self.graph
                .forget_before(watermark - self.settings.edge_ttl_ms);
        }
        let remembered = watermark.saturating_sub(REPEATS_REMEMBERED_MS);
        self.applied.retain(|_, at| *at >= remembered);
    }

    fn fire(&mut self, member: Member, at: i64, out: &mut Vec<IncidentRecord>) {
        if self.alert_incident.contains_key(&member.id) {
            return; // a repeat
        }
        let joins = self.incidents_joined_by(&member);
        let survivor = match joins.first() {
            None => {
                let id = format!("inc-{:016x}", Fnv1a::of(member.id.as_bytes()));
                self.open.insert(
                    id.clone(),
                    Incident {
                        id: id.clone(),
                        opened_at: member.starts_at,
                        last_onset: member.starts_at,
                        alerts: BTreeMap::new(),
                        quiet_since: None,
                    },
                );
                id
            }
            Some(first) => first.clone(),
        };
        for absorbed in joins.iter().skip(1) {
            let Some(incident) = self.open.remove(absorbed) else {
                continue;
            };
            out.push(self.record(&incident, IncidentStatus::Merged, at, Some(&survivor)));
            let target = self.open.get_mut(&survivor).expect("the survivor is open");
            target.opened_at = target.opened_at.min(incident.opened_at);
            target.last_onset = target.last_onset.max(incident.last_onset);
            for (id, m) in incident.alerts {
                self.alert_incident.insert(id.clone(), survivor.clone());
                target.alerts.insert(id, m);
            }
        }
        let status = match joins.is_empty() {
            true => IncidentStatus::Open,
            false => IncidentStatus::Update,
        };
        self.alert_incident
            .insert(member.id.clone(), survivor.clone());
        let incident = self.open.get_mut(&survivor).expect("the survivor is open");
        incident.last_onset = incident.last_onset.max(member.starts_at);
        incident.quiet_since = None;
        incident.alerts.insert(member.id.clone(), member);
        let incident = &self.open[&survivor];
        out.push(self.record(incident, status, at, None));
        self.evict_beyond_limit(at, out);
    }

    /// The open incidents `member` joins, oldest first.
    fn incidents_joined_by(&self, member: &Member) -> Vec<String> {
        let gap = self.settings.gap_ms;
        let in_time = self
            .open
            .values()
            .filter(|i| member.starts_at <= i.last_onset.saturating_add(gap))
            .filter(|i| i.foresees() == member.foresees());
        // Forecasts do not travel along calls: two resources filling are one
        // incident only on the same service.
        let max_hops = if member.foresees() {
            0
        } else {
            self.settings.max_hops
        };
        let mut joins: Vec<&Incident> = match member.service.as_deref() {
            Some(service) => in_time
                .filter(|i| {
                    let services = i.services();
                    services.is_empty()
                        || services
                            .iter()
                            .any(|s| self.graph.hops(s, service, max_hops).is_some())
                })
                .collect(),
            None => in_time
                .max_by_key(|i| (i.last_onset, std::cmp::Reverse(i.id.as_str())))
                .into_iter()
                .collect(),
        };
        joins.sort_by(|a, b| (a.opened_at, &a.id).cmp(&(b.opened_at, &b.id)));
        joins.into_iter().map(|i| i.id.clone()).collect()
    }

    fn resolve_alert(&mut self, alert_id: &str, at: i64) {
        let Some(incident_id) = self.alert_incident.get(alert_id) else {
            return; // not firing here (never seen, or its incident closed)
        };
        let Some(incident) = self.open.get_mut(incident_id) else {
            return;
        };
        if let Some(member) = incident.alerts.get_mut(alert_id) {
            member.resolved_at.get_or_insert(at);
        }
        if incident.alerts.values().all(|m| m.resolved_at.is_some()) {
            incident.quiet_since = Some(at);
        }
    }

    /// Resolves the incidents whose quiet period ended by `now`, in that order.
    fn resolve_quiet(&mut self, now: i64, out: &mut Vec<IncidentRecord>) {
        let quiet = self.settings.quiet_ms;
        let mut due: Vec<(i64, String)> = self
            .open
            .values()
            .filter_map(|i| {
                i.quiet_since
                    .map(|q| (q.saturating_add(quiet), i.id.clone()))
            })
            .filter(|(at, _)| *at <= now)
            .collect();
        due.sort();
        for (at, id) in due {
            self.close(&id, at, out);
        }
    }

    fn close(&mut self, id: &str, at: i64, out: &mut Vec<IncidentRecord>) {
        let Some(incident) = self.open.remove(id) else {
            return;
        };
        for alert in incident.alerts.keys() {
            self.alert_incident.remove(alert);
        }
        out.push(self.record(&incident, IncidentStatus::Resolved, at, None));
    }

    /// Past `max_open` incidents, the one with the oldest latest onset is closed.
    fn evict_beyond_limit(&mut self, at: i64, out: &mut Vec<IncidentRecord>) {
        while self.open.len() > self.settings.max_open.max(1) {
            let Some(oldest) = self
                .open
                .values()
                .min_by_key(|i| (i.last_onset, i.id.as_str()))
                .map(|i| i.id.clone())
            else {
                return;
            };
            self.evicted += 1;
            self.close(&oldest, at, out);
        }
    }

    fn record(
        &self,
        incident: &Incident,
        status: IncidentStatus,
        at: i64,
        merged_into: Option<&str>,
    ) -> IncidentRecord {
        let symptoms: Vec<Symptom<'_>> = incident
            .alerts
            .values()
            .filter_map(|m| {
                Some(Symptom {
                    service: m.service.as_deref()?,
                    signal: &m.signal,
                    starts_at: m.starts_at,
                    score: m.score,
                })
            })
            .collect();
        let mut causes = rank(&symptoms, &self.graph, self.settings.gap_ms);
        causes.truncate(3);
        let services: Vec<String> = incident.services().into_iter().map(str::to_owned).collect();
        let severity = incident
            .alerts
            .values()
            .map(|m| m.severity.as_str())
            .max_by_key(|s| severity_rank(s))
            .unwrap_or("info")
            .to_owned();
        let summary = match causes.first() {
            Some(top) => format!(
                "{} alerts on {}; probable cause {}: {}",
                incident.alerts.len(),
                services.join(", "),
                top.service,
                top.reasons.first().map(String::as_str).unwrap_or("")
            ),
            None => format!("{} alerts naming no service", incident.alerts.len()),
        };
        IncidentRecord {
            id: incident.id.clone(),
            status,
            at,
            opened_at: incident.opened_at,
            resolved_at: (status == IncidentStatus::Resolved).then_some(at),
            severity,
            alert_ids: incident.alerts.keys().cloned().collect(),
            rules: incident
                .alerts
                .values()
                .map(|m| m.rule.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            services,
            probable_root_cause: causes,
            merged_into: merged_into.map(str::to_owned),
            summary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incidents::test_alert;

    const MIN: i64 = 60_000;

    fn fire(c: &mut Correlator, id: &str, service: Option<&str>, at: i64) {
        c.observe_alert(&test_alert(id, service, AlertStatus::Firing, at, at));
    }

    fn resolve(c: &mut Correlator, id: &str, service: Option<&str>, at: i64) {
        c.observe_alert(&test_alert(
            id,
            service,
            AlertStatus::Resolved,
            at - MIN,
            at,
        ));
    }

    /// web → api → db; batch → queue (not connected to the others).
    fn correlator() -> Correlator {
        let mut c = Correlator::new(IncidentSettings::default());
        c.observe_call("web", "api", 0);
        c.observe_call("api", "db", 0);
        c.observe_call("batch", "queue", 0);
        c
    }

    fn statuses(out: &[IncidentRecord]) -> Vec<(IncidentStatus, usize, &str)> {
        out.iter()
            .map(|r| {
                (
                    r.status,
                    r.alert_ids.len(),
                    r.probable_root_cause[0].service.as_str(),
                )
            })
            .collect()
    }

    #[test]
    fn a_fault_and_its_callers_make_one_incident_with_the_fault_first() {
        let mut c = correlator();
        let mut out = Vec::new();
        fire(&mut c, "a-web", Some("web"), 10 * MIN);
        fire(&mut c, "a-db", Some("db"), 10 * MIN + 30_000);
        fire(&mut c, "a-api", Some("api"), 11 * MIN);
        fire(&mut c, "a-queue", Some("queue"), 11 * MIN); // unconnected: its own
        c.advance(12 * MIN, &mut out);
        use IncidentStatus::*;
        assert_eq!(
            statuses(&out),
            [
                (Open, 1, "web"),
                (Update, 2, "db"),
                (Update, 3, "db"),
                (Open, 1, "queue")
            ]
        );
        assert_eq!(out[0].id, format!("inc-{:016x}", Fnv1a::of(b"a-web")));
        assert_eq!(out[2].services, ["api", "db", "web"]);
        assert_eq!(out[2].opened_at, 10 * MIN);
        assert_eq!(c.open_incidents(), 2);
    }

    /// A volume filling on `db` while `api`, its caller, has a fault: two incidents,
    /// each with its own cause; a second forecast on `db` joins the first, one on
    /// `web` (two calls away) opens its own, and a symptom on `db` itself joins the
    /// fault's incident, not the forecast's.
    #[test]
    fn forecasts_and_symptoms_never_share_an_incident() {
        let mut c = correlator();
        let mut out = Vec::new();
        let foresee = |c: &mut Correlator, id: &str, rule: &str, service: &str, at: i64| {
            let mut alert = test_alert(id, Some(service), AlertStatus::Firing, at, at);
            alert.rule = rule.into();
            c.observe_alert(&alert);
        };
        fire(&mut c, "fault-api", Some("api"), 10 * MIN);
        foresee(
            &mut c,
            "volume-db",
            crate::capacity::stage::RULE,
            "db",
            11 * MIN,
        );
        foresee(
            &mut c,
            "budget-db",
            crate::cost::alerts::BUDGET_RULE,
            "db",
            12 * MIN,
        );
        foresee(
            &mut c,
            "volume-web",
            crate::capacity::stage::RULE,
            "web",
            12 * MIN,
        );
        fire(&mut c, "symptom-db", Some("db"), 12 * MIN);
        c.advance(13 * MIN, &mut out);
        use IncidentStatus::*;
        assert_eq!(
            statuses(&out),
            [
                (Open, 1, "api"),
                (Open, 1, "db"),
                (Update, 2, "db"),
                (Update, 2, "api"),
                (Open, 1, "web"),
            ],
            "{out:#?}"
        );
        let fault = &out[0].id;
        let forecast = &out[1].id;
        assert_ne!(fault, forecast);
        assert_eq!(out[2].id, *forecast);
        assert_eq!(out[2].alert_ids, ["budget-db", "volume-db"]);
        assert_eq!(out[3].id, *fault);
        assert_eq!(out[3].alert_ids, ["fault-api", "symptom-db"]);
    }

    #[test]
    fn alerts_beyond_the_gap_or_the_hops_open_new_incidents() {
        let settings = IncidentSettings {
            max_hops: 1,
            ..IncidentSettings::default()
        };
        let mut c = Correlator::new(settings);
        c.observe_call("web", "api", 0);
        c.observe_call("api", "db", 0);
        let mut out = Vec::new();
        fire(&mut c, "a1", Some("web"), 0);
        fire(&mut c, "a2", Some("db"), MIN); // two hops from web
        fire(&mut c, "a3", Some("web"), settings.gap_ms + 1); // too late for a1's
        c.advance(10 * MIN, &mut out);
        let opened = out
            .iter()
            .filter(|r| r.status == IncidentStatus::Open)
            .count();
        assert_eq!(opened, 3, "{out:#?}");
    }

    #[test]
    fn an_alert_linking_two_incidents_merges_them_into_the_older() {
        let mut c = correlator();
        c.observe_call("db", "queue", 0); // now db links the two groups
        let mut out = Vec::new();
        let settings = IncidentSettings {
            max_hops: 1,
            ..IncidentSettings::default()
        };
        c.settings = settings;
        fire(&mut c, "a-api", Some("api"), MIN);
        fire(&mut c, "a-queue", Some("queue"), 2 * MIN);
        fire(&mut c, "a-db", Some("db"), 3 * MIN);
        c.advance(4 * MIN, &mut out);
        let merged: Vec<&IncidentRecord> = out
            .iter()
            .filter(|r| r.status == IncidentStatus::Merged)
            .collect();
        assert_eq!(merged.len(), 1);
        let first = format!("inc-{:016x}", Fnv1a::of(b"a-api"));
        assert_eq!(merged[0].merged_into.as_deref(), Some(first.as_str()));
        let last = out.last().expect("an update");
        assert_eq!(
            (last.id.as_str(), last.alert_ids.len()),
            (first.as_str(), 3)
        );
        assert_eq!(c.open_incidents(), 1);
    }

    #[test]
    fn an_incident_resolves_after_its_alerts_and_the_quiet_period() {
        let mut c = correlator();
        let quiet = c.settings.quiet_ms;
        let mut out = Vec::new();
        fire(&mut c, "a1", Some("api"), MIN);
        fire(&mut c, "a2", Some("db"), MIN);
        resolve(&mut c, "a1", Some("api"), 3 * MIN);
        resolve(&mut c, "a2", Some("db"), 4 * MIN);
        resolve(&mut c, "a2", Some("db"), 4 * MIN); // a repeat
        c.advance(4 * MIN + quiet - 1, &mut out);
        assert_eq!(out.len(), 2, "still quiet: {out:#?}");
        c.advance(4 * MIN + quiet, &mut out);
        let resolved = out.last().expect("resolved");
        assert_eq!(resolved.status, IncidentStatus::Resolved);
        assert_eq!(resolved.resolved_at, Some(4 * MIN + quiet));
        assert_eq!(c.open_incidents(), 0);
        // A new alert on the same service now opens a new incident.
        fire(&mut c, "a3", Some("api"), 4 * MIN + quiet + 1);
        c.advance(20 * MIN, &mut out);
        assert_eq!(out.last().map(|r| r.status), Some(IncidentStatus::Open));
    }

    #[test]
    fn a_new_alert_during_the_quiet_period_keeps_the_incident_open() {
        let mut c = correlator();
        let mut out = Vec::new();
        fire(&mut c, "a1", Some("api"), MIN);
        resolve(&mut c, "a1", Some("api"), 2 * MIN);
        fire(&mut c, "a2", Some("web"), 3 * MIN);
        c.advance(30 * MIN, &mut out);
        use IncidentStatus::*;
        assert_eq!(statuses(&out), [(Open, 1, "api"), (Update, 2, "api")]);
    }

    #[test]
    fn the_order_of_arrival_does_not_matter_only_event_time_does() {
        let events = [
            test_alert("x1", Some("web"), AlertStatus::Firing, MIN, MIN),
            test_alert("x2", Some("db"), AlertStatus::Firing, MIN + 5, 2 * MIN),
            test_alert("x3", None, AlertStatus::Firing, 2 * MIN, 2 * MIN),
            test_alert("x1", Some("web"), AlertStatus::Resolved, MIN, 3 * MIN),
            test_alert("x2", Some("db"), AlertStatus::Resolved, MIN + 5, 3 * MIN),
            test_alert("x3", None, AlertStatus::Resolved, 2 * MIN, 4 * MIN),
        ];
        let run = |order: &[usize], watermarks: &[i64]| {
            let mut c = correlator();
            let mut out = Vec::new();
            for &i in order {
                c.observe_alert(&events[i]);
            }
            for &w in watermarks {
                c.advance(w, &mut out);
            }
            serde_json::to_string(&out).expect("records serialise")
        };
        let reference = run(&[0, 1, 2, 3, 4, 5], &[60 * MIN]);
        assert!(reference.contains("\"resolved\""), "{reference}");
        assert_eq!(run(&[5, 3, 1, 4, 0, 2], &[60 * MIN]), reference);
        assert_eq!(
            run(&[2, 0, 1, 3, 4, 5], &[MIN, 2 * MIN, 3 * MIN, 60 * MIN]),
            reference
        );
    }

    #[test]
    fn a_restored_correlator_continues_as_the_original() {
        let mut original = correlator();
        let mut out = Vec::new();
        fire(&mut original, "a1", Some("api"), MIN);
        fire(&mut original, "a2", Some("db"), 3 * MIN); // buffered past the watermark
        original.advance(2 * MIN, &mut out);
        let bytes = crate::snapshot::encode(&original).expect("encodes");
        let mut restored: Correlator = crate::snapshot::decode(&bytes).expect("decodes");
        assert_eq!(restored, original);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for c in [&mut original, &mut restored] {
            resolve(c, "a1", Some("api"), 5 * MIN);
            resolve(c, "a2", Some("db"), 5 * MIN);
        }
        original.advance(60 * MIN, &mut a);
        restored.advance(60 * MIN, &mut b);
        assert_eq!(a, b);
        assert_eq!(a.len(), 2, "db joined, then all resolved: {a:#?}");
    }

    #[test]
    fn past_the_limit_the_stalest_incident_is_closed_and_counted() {
        let mut c = Correlator::new(IncidentSettings {
            max_open: 2,
            ..IncidentSettings::default()
        });
        let mut out = Vec::new();
        for (i, service) in ["a", "b", "c"].iter().enumerate() {
            fire(&mut c, &format!("x{i}"), Some(service), i as i64 * MIN);
        }
        c.advance(10 * MIN, &mut out);
        assert_eq!(c.open_incidents(), 2);
        assert_eq!(
            c.counts(),
            CorrelatorCounts {
                late: 0,
                evicted: 1,
                repeats: 0
            }
        );
        let closed = out
            .iter()
            .find(|r| r.status == IncidentStatus::Resolved)
            .expect("one closed");
        assert_eq!(closed.services, ["a"]);
    }
}
