//! One SLO's error budget and burn-rate alerts.
//!
//! Owns one SLO's state: good and total events per minute of event time, the status
//! record of every minute boundary `T` (burn rate over `[T - w, T)` for each window
//! `w`, budget remaining over `[T - period, T)`) and the burn-rate alerts those imply.
//!
//! Memory is bounded by the period, not by traffic: one bucket per minute of the
//! period (or of the longest window, if longer), plus the minutes not yet closed.
//! A minute closes when the watermark (largest event time seen minus the
//! out-of-orderness bound) passes its end; its statuses are then final, and an event
//! of a closed minute is late (counted, not added), so every status is exact for the
//! events it covers and never changes afterwards. Window sums are kept running (one
//! bucket in, one out per minute), so a status costs one step per window.
//!
//! Which events are good (span status, latency threshold, ...) is the caller's: the
//! tracker sees `(event time, good)` pairs. It is plain data (serde), so it rides in
//! checkpoints: a three-day window cannot be rebuilt from Kafka retention.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::alert::{alert_id, AlertRecord, AlertStatus};
use crate::anomaly::{Detector, PointScore};

use super::MINUTE_MS;

/// The burn-rate windows every status reports: name and length in minutes.
pub const WINDOWS: [(&str, i64); 7] = [
    ("5m", 5),
    ("30m", 30),
    ("1h", 60),
    ("2h", 120),
    ("6h", 360),
    ("1d", 1_440),
    ("3d", 4_320),
];

/// One alert condition: both windows burn faster than `factor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnRule {
    /// `page` or `ticket`.
    pub severity: String,
    /// The long window (one of [`WINDOWS`]).
    pub long: String,
    /// The short window.
    pub short: String,
    /// Burn rate both must exceed.
    pub factor: f64,
}

/// The SRE Workbook's multi-window, multi-burn-rate rules for a 30-day SLO.
pub fn default_burn_rules() -> Vec<BurnRule> {
    let rule = |severity: &str, long: &str, short: &str, factor: f64| BurnRule {
        severity: severity.into(),
        long: long.into(),
        short: short.into(),
        factor,
    };
    vec![
        rule("page", "1h", "5m", 14.4),
        rule("page", "6h", "30m", 6.0),
        rule("ticket", "1d", "2h", 3.0),
        rule("ticket", "3d", "6h", 1.0),
    ]
}

/// What one SLO promises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloSpec {
    /// SLO name.
    pub name: String,
    /// Target share of good events, in (0, 1).
    pub objective: f64,
    /// Rolling period of the error budget, ms (a whole number of minutes).
    pub period_ms: i64,
    /// How far behind the largest event time events may arrive, ms.
    pub out_of_orderness_ms: i64,
    /// Alert conditions.
    pub rules: Vec<BurnRule>,
    /// The service it watches, when it watches one: the `service` label of its burn
    /// alerts, so that incidents correlate them along the service graph like any
    /// other alert on the service (without it a burn joins by time alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// Why an SLO specification was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SloSpecError {
    /// A value outside its range.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl SloSpec {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), SloSpecError> {
        let invalid = |field, reason: String| Err(SloSpecError::Invalid { field, reason });
        if !(self.objective > 0.0 && self.objective < 1.0) {
            return invalid("objective", format!("{} is outside (0, 1)", self.objective));
        }
        if self.period_ms < MINUTE_MS || self.period_ms % MINUTE_MS != 0 {
            return invalid(
                "period",
                "must be a whole number of minutes, at least 1m".into(),
            );
        }
        if self.out_of_orderness_ms < 0 {
            return invalid("out_of_orderness", "must not be negative".into());
        }
        for rule in &self.rules {
            for w in [&rule.long, &rule.short] {
                if window_minutes(w).is_none() {
                    return invalid(
                        "rules",
                        format!("window `{w}` is not one of 5m 30m 1h 2h 6h 1d 3d"),
                    );
                }
            }
            if !matches!(rule.severity.as_str(), "page" | "ticket") {
                return invalid(
                    "rules",
                    format!("severity `{}` is not page or ticket", rule.severity),
                );
            }
        }
        Ok(())
    }
}

fn window_minutes(name: &str) -> Option<i64> {
    WINDOWS.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
}

/// Good and total events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Good events.
    pub good: u64,
    /// All events.
    pub total: u64,
}

impl Counts {
    /// One event, good or not.
    pub(crate) fn event(good: bool) -> Counts {
        Counts {
            good: u64::from(good),
            total: 1,
        }
    }

    pub(crate) fn add(&mut self, other: Counts) {
        self.good += other.good;
        self.total += other.total;
    }

    fn sub(&mut self, other: Counts) {
        self.good -= other.good;
        self.total -= other.total;
    }

    /// `(1 - good/total) / (1 - objective)`, 0 without events.
    pub fn burn_rate(&self, objective: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        // Counter-based SLIs can see more good than total in a window (scrape skew).
        let bad = self.total.saturating_sub(self.good) as f64;
        bad / self.total as f64 / (1.0 - objective)
    }
}

/// One window of a status record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowStatus {
    /// Good events in the window.
    pub good: u64,
    /// All events in the window.
    pub total: u64,
    /// Burn rate.
    pub burn_rate: f64,
}

/// The status of one SLO at one minute boundary, shaped as the `cara.slo` topic and
/// table `slo` carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloStatus {
    /// SLO name.
    pub slo: String,
    /// The minute boundary, ms; window `w` covers event times in `[ts - w, ts)`.
    pub ts: i64,
    /// Per window name.
    pub windows: BTreeMap<String, WindowStatus>,
    /// `1 - bad / ((1 - objective) * total)` over `[ts - period, ts)`; 1 without events.
    pub budget_remaining: f64,
}

/// One SLO's buckets, running sums and alert states.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloTracker {
    spec: SloSpec,
    /// Closed minutes, by minute index modulo `ring_minutes` (with the minute they hold).
    ring: Vec<(i64, Counts)>,
    /// Minutes not closed yet.
    open: BTreeMap<i64, Counts>,
    /// The next minute boundary to report (a minute index); `None` before any event.
    next: Option<i64>,
    /// Running sums of the closed minutes in each window, then the period.
    sums: Vec<Counts>,
    max_event_ms: Option<i64>,
    late: u64,
    /// Firing burn alerts: severity -> start.
    firing: BTreeMap<String, i64>,
}

impl SloTracker {
    /// Fresh state for `spec` (validate it first).
    pub fn new(spec: SloSpec) -> Self {
        let ring_minutes = (spec.period_ms / MINUTE_MS).max(WINDOWS[WINDOWS.len() - 1].1);
        SloTracker {
            ring: vec![(i64::MIN, Counts::default()); ring_minutes as usize],
            open: BTreeMap::new(),
            next: None,
            sums: vec![Counts::default(); WINDOWS.len() + 1],
            max_event_ms: None,
            late: 0,
            firing: BTreeMap::new(),
            spec,
        }
    }

    /// The same state under a changed specification (objective, rules, name); a
    /// changed period needs other buckets, so the state starts afresh.
    pub fn respecified(mut self, spec: SloSpec) -> Self {
        if spec.period_ms != self.spec.period_ms {
            return SloTracker::new(spec);
        }
        self.spec = spec;
        self
    }

    /// The specification.
    pub fn spec(&self) -> &SloSpec {
        &self.spec
    }

    /// Events that arrived for a minute already reported.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Minutes of state kept (the bound on memory).
    pub fn buckets(&self) -> usize {
        self.ring.len() + self.open.len()
    }

    fn watermark(&self) -> Option<i64> {
        self.max_event_ms
            .map(|m| m.saturating_sub(self.spec.out_of_orderness_ms))
    }

    /// Takes in one event; `false` when it was late (its minute already reported).
    pub fn observe(&mut self, ts_ms: i64, good: bool) -> bool {
        let counts = Counts {
            good: u64::from(good),
            total: 1,
        };
        if !self.add_minute(crate::minutes::minute_of(ts_ms), counts) {
            return false;
        }
        self.max_event_ms = Some(self.max_event_ms.map_or(ts_ms, |m| m.max(ts_ms)));
        true
    }

    /// Adds counts already gathered for a minute (minute index: ms / 60,000), as
    /// partial counts from several source partitions are; `false` (and counted
    /// late) when that minute was already reported. Does not move the watermark:
    /// whoever gathers partial counts knows when a minute is complete and says so
    /// with [`advance_to`](Self::advance_to).
    pub fn add_minute(&mut self, minute: i64, counts: Counts) -> bool {
        // Reporting boundary `next` closed minute `next - 1` and every one before.
        if self.next.is_some_and(|next| minute < next - 1) {
            self.late += counts.total;
            return false;
        }
        self.open.entry(minute).or_default().add(counts);
        true
    }

    /// Reports every minute boundary the watermark (largest event time seen minus
    /// the out-of-orderness bound) has passed: statuses in time order, and burn
    /// alert transitions.
    pub fn advance(&mut self, statuses: &mut Vec<SloStatus>, alerts: &mut Vec<AlertRecord>) {
        if let Some(watermark) = self.watermark() {
            self.advance_to(watermark, statuses, alerts);
        }
    }

    /// Reports every minute boundary at or before `watermark_ms`, starting at the
    /// end of the earliest minute with events.
    pub fn advance_to(
        &mut self,
        watermark_ms: i64,
        statuses: &mut Vec<SloStatus>,
        alerts: &mut Vec<AlertRecord>,
    ) {
        let Some(mut next) = self.next.or_else(|| self.open.keys().next().map(|m| m + 1)) else {
            return;
        };
        let first = next;
        // Boundary `next` (in minutes) is final once the watermark reaches it.
        while next * MINUTE_MS <= watermark_ms {
            self.close_minute(next - 1);
            let status = self.status(next);
            self.evaluate(&status, alerts);
            statuses.push(status);
            next += 1;
        }
        if self.next.is_some() || next > first {
            self.next = Some(next);
        }
    }

    /// Moves minute `minute` from open to closed, updating the running sums.
    fn close_minute(&mut self, minute: i64) {
        let counts = self.open.remove(&minute).unwrap_or_default();
        let ring_len = self.ring.len() as i64;
        let slot = minute.rem_euclid(ring_len) as usize;
        self.ring[slot] = (minute, counts);
        let period_minutes = self.spec.period_ms / MINUTE_MS;
        let lengths = WINDOWS.iter().map(|(_, m)| *m).chain([period_minutes]);
        for (sum, length) in self.sums.iter_mut().zip(lengths) {
            sum.add(counts);
            let leaving = minute - length;
            let (held, old) = self.ring[leaving.rem_euclid(ring_len) as usize];
            if held == leaving {
                sum.sub(old);
            }
        }
    }

    fn status(&self, boundary: i64) -> SloStatus {
        let objective = self.spec.objective;
        let windows = WINDOWS
            .iter()
            .zip(&self.sums)
            .map(|((name, _), c)| {
                (
                    (*name).to_owned(),
                    WindowStatus {
                        good: c.good,
                        total: c.total,
                        burn_rate: c.burn_rate(objective),
                    },
                )
            })
            .collect();
        let period = self.sums[WINDOWS.len()];
        let budget_remaining = if period.total == 0 {
            1.0
        } else {
            1.0 - period.total.saturating_sub(period.good) as f64
                / ((1.0 - objective) * period.total as f64)
        };
        SloStatus {
            slo: self.spec.name.clone(),
            ts: boundary * MINUTE_MS,
            windows,
            budget_remaining,
        }
    }

    fn evaluate(&mut self, status: &SloStatus, alerts: &mut Vec<AlertRecord>) {
        let burn = |w: &str| status.windows.get(w).map_or(0.0, |s| s.burn_rate);
        // Per severity, the first rule whose two windows both burn too fast.
        let mut burning: BTreeMap<&str, Option<&BurnRule>> =
            [("page", None), ("ticket", None)].into_iter().collect();
        for rule in &self.spec.rules {
            if burn(&rule.long) > rule.factor && burn(&rule.short) > rule.factor {
                let slot = burning.entry(rule.severity.as_str()).or_insert(None);
                slot.get_or_insert(rule);
            }
        }
        for (severity, rule) in burning {
            match (self.firing.get(severity).copied(), rule) {
                (None, Some(rule)) => {
                    self.firing.insert(severity.to_owned(), status.ts);
                    alerts.push(burn_alert(
                        &self.spec,
                        status,
                        severity,
                        Some(rule),
                        AlertStatus::Firing,
                        status.ts,
                    ));
                }
                (Some(start), None) => {
                    self.firing.remove(severity);
                    let rule = self.spec.rules.iter().find(|r| r.severity == severity);
                    alerts.push(burn_alert(
                        &self.spec,
                        status,
                        severity,
                        rule,
                        AlertStatus::Resolved,
                        start,
                    ));
                }
                _ => {}
            }
        }
    }
}

fn burn_alert(
    spec: &SloSpec,
    status: &SloStatus,
    severity: &str,
    rule: Option<&BurnRule>,
    transition: AlertStatus,
    starts_at: i64,
) -> AlertRecord {
    let rule_name = format!("slo_burn_{severity}");
    let (long_name, short_name, factor) = rule.map_or(("1h", "5m", 0.0), |r| {
        (r.long.as_str(), r.short.as_str(), r.factor)
    });
    let long = status.windows.get(long_name).map_or(0.0, |w| w.burn_rate);
    let short = status.windows.get(short_name).map_or(0.0, |w| w.burn_rate);
    let (summary, ends_at) = match transition {
        AlertStatus::Firing => (
            format!("{} is burning its error budget ({severity})", spec.name),
            None,
        ),
        AlertStatus::Resolved => (
            format!(
                "{} burn rate is back under the {severity} thresholds",
                spec.name
            ),
            Some(status.ts),
        ),
    };
    AlertRecord {
        id: alert_id(&rule_name, &spec.name, starts_at),
        rule: rule_name.clone(),
        kind: "slo_burn".into(),
        severity: severity.into(),
        status: transition,
        at: status.ts,
        starts_at,
        ends_at,
        labels: std::iter::once(("alertname".into(), rule_name))
            .chain(std::iter::once(("slo".into(), spec.name.clone())))
            .chain(spec.service.iter().map(|s| ("service".into(), s.clone())))
            .collect(),
        summary,
        description: format!(
            "burn rate {long:.2} over {long_name} and {short:.2} over {short_name} (threshold {factor}); budget remaining {:.4}",
            status.budget_remaining
        ),
        score: long,
        value: short,
        threshold: factor,
        window_start: starts_at,
        window_end: status.ts,
        evidence: PointScore {
            score: long,
            baseline: factor,
            deviation: 0.0,
            detector: Detector::Warmup,
        },
        row: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_040_000; // a whole minute

    fn spec(period_minutes: i64) -> SloSpec {
        SloSpec {
            name: "checkout-availability".into(),
            objective: 0.999,
            period_ms: period_minutes * MINUTE_MS,
            out_of_orderness_ms: 30_000,
            rules: default_burn_rules(),
            service: None,
        }
    }

    use crate::test_rng::Rng;

    /// Events over `minutes`: a few per second with disorder (mostly up to 20 s), and outages
    /// (most events bad) at known stretches.
    fn events(minutes: i64, outages: &[(i64, i64)], seed: u64) -> Vec<(i64, bool)> {
        let mut rng = Rng(seed);
        let mut out = Vec::new();
        let mut t = T0;
        while t < T0 + minutes * MINUTE_MS {
            t += (rng.next() % 700) as i64;
            let minute = (t - T0) / MINUTE_MS;
            let outage = outages.iter().any(|(a, b)| (*a..*b).contains(&minute));
            let bad_per_mille = if outage { 600 } else { 1 };
            let good = rng.next() % 1000 >= bad_per_mille;
            // Mostly within the 30 s bound; one event in a hundred up to 2 min late.
            let skew = if rng.next().is_multiple_of(100) {
                (rng.next() % 120_000) as i64
            } else {
                (rng.next() % 20_000) as i64
            };
            out.push((t - skew, good));
        }
        out
    }

    /// The status at `ts` computed from every on-time event, by brute force.
    fn reference(events: &[(i64, bool)], spec: &SloSpec, ts: i64) -> SloStatus {
        let count = |from: i64| {
            let mut c = Counts::default();
            for (t, good) in events {
                if (from..ts).contains(t) {
                    c.total += 1;
                    c.good += u64::from(*good);
                }
            }
            c
        };
        let windows = WINDOWS
            .iter()
            .map(|(name, minutes)| {
                let c = count(ts - minutes * MINUTE_MS);
                let burn_rate = if c.total == 0 {
                    0.0
                } else {
                    (1.0 - c.good as f64 / c.total as f64) / (1.0 - spec.objective)
                };
                (
                    (*name).to_owned(),
                    WindowStatus {
                        good: c.good,
                        total: c.total,
                        burn_rate,
                    },
                )
            })
            .collect();
        let p = count(ts - spec.period_ms);
        let budget_remaining = if p.total == 0 {
            1.0
        } else {
            1.0 - (p.total - p.good) as f64 / ((1.0 - spec.objective) * p.total as f64)
        };
        SloStatus {
            slo: spec.name.clone(),
            ts,
            windows,
            budget_remaining,
        }
    }

    fn run(
        tracker: &mut SloTracker,
        events: &[(i64, bool)],
    ) -> (Vec<SloStatus>, Vec<AlertRecord>, Vec<(i64, bool)>) {
        let (mut statuses, mut alerts, mut on_time) = (Vec::new(), Vec::new(), Vec::new());
        for (i, (t, good)) in events.iter().enumerate() {
            if tracker.observe(*t, *good) {
                on_time.push((*t, *good));
            }
            if i % 97 == 0 {
                tracker.advance(&mut statuses, &mut alerts);
            }
        }
        tracker.advance(&mut statuses, &mut alerts);
        (statuses, alerts, on_time)
    }

    fn assert_close(a: f64, b: f64, what: &str) {
        assert!((a - b).abs() <= 1e-9, "{what}: {a} vs {b}");
    }

    #[test]
    fn statuses_equal_a_brute_force_reference() {
        // A 1-day period over 2 days of events with two outages.
        let spec = spec(1_440);
        let events = events(2 * 1_440, &[(300, 340), (1_900, 1_905)], 7);
        let mut tracker = SloTracker::new(spec.clone());
        let (statuses, _, on_time) = run(&mut tracker, &events);
        assert!(statuses.len() > 2_800, "{}", statuses.len());
        assert!(tracker.late() > 0, "the disorder makes some events late");
        for (i, status) in statuses.iter().enumerate() {
            if i % 31 != 0 && i + 1 != statuses.len() {
                continue; // every 31st minute (and the last) keeps the brute force quick
            }
            let want = reference(&on_time, &spec, status.ts);
            for (name, w) in &want.windows {
                let got = &status.windows[name];
                assert_eq!(
                    (got.good, got.total),
                    (w.good, w.total),
                    "{name} at {}",
                    status.ts
                );
                assert_close(got.burn_rate, w.burn_rate, name);
            }
            assert_close(status.budget_remaining, want.budget_remaining, "budget");
        }
        // Consecutive minute boundaries, none skipped.
        assert!(statuses.windows(2).all(|p| p[1].ts - p[0].ts == MINUTE_MS));
    }

    #[test]
    fn alerts_fire_and_resolve_when_the_rules_say() {
        let spec = spec(43_200);
        let events = events(600, &[(200, 260)], 11);
        let mut tracker = SloTracker::new(spec.clone());
        let (statuses, alerts, _) = run(&mut tracker, &events);
        // The rules' own verdict minute by minute, from the statuses.
        let burn = |s: &SloStatus, w: &str| s.windows[w].burn_rate;
        let page = |s: &SloStatus| {
            (burn(s, "1h") > 14.4 && burn(s, "5m") > 14.4)
                || (burn(s, "6h") > 6.0 && burn(s, "30m") > 6.0)
        };
        let mut expected = Vec::new();
        let mut on = false;
        for s in &statuses {
            if page(s) != on {
                on = !on;
                expected.push((s.ts, on));
            }
        }
        let got: Vec<(i64, bool)> = alerts
            .iter()
            .filter(|a| a.severity == "page")
            .map(|a| (a.at, a.status == AlertStatus::Firing))
            .collect();
        assert_eq!(got, expected);
        assert!(!expected.is_empty() && expected[0].1, "the outage pages");
        assert!(expected[0].0 >= T0 + 200 * MINUTE_MS && expected[0].0 <= T0 + 210 * MINUTE_MS);
        assert!(
            alerts
                .iter()
                .all(|a| a.kind == "slo_burn"
                    && a.labels.contains(&("slo".into(), spec.name.clone())))
        );
        // An SLO of no particular service labels no service.
        assert!(alerts
            .iter()
            .all(|a| a.labels.iter().all(|(k, _)| k != "service")));
    }

    #[test]
    fn a_restored_tracker_continues_exactly_and_memory_is_bounded() {
        let spec = spec(1_440);
        let events = events(3 * 1_440, &[(100, 130)], 3);
        let (first, second) = events.split_at(events.len() / 2);
        let mut whole = SloTracker::new(spec.clone());
        run(&mut whole, first);
        let json = serde_json::to_string(&whole).unwrap();
        let mut restored: SloTracker = serde_json::from_str(&json).unwrap();
        let a = run(&mut whole, second);
        let b = run(&mut restored, second);
        assert_eq!(a.0, b.0);
        assert_eq!(a.1.len(), b.1.len());
        // Three days of events, one day of period: the ring holds the longest window.
        assert!(whole.buckets() <= 4_320 + 2, "{}", whole.buckets());
    }

    #[test]
    fn specs_are_validated() {
        let mut s = spec(43_200);
        assert!(s.validate().is_ok());
        s.objective = 1.0;
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("objective"));
        let mut s = spec(43_200);
        s.rules[0].long = "7h".into();
        assert!(s.validate().unwrap_err().to_string().contains("7h"));
    }
}
