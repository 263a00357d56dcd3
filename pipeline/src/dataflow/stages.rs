//! The operator stacks of the dataflow: which operators run on a partition of each
//! signal, built from the config and restored from a checkpoint's snapshot.
//!
//! | signal | stacked parts, in order | second stage (exchange topic) |
//! |---|---|---|
//! | metrics | `alerting` (anomaly scoring, windows, alert rules), `slo` (metric SLIs) | |
//! | logs | `logs` (templates, window counts), `slo` (log SLIs) | |
//! | spans | `slo` (span SLIs), `traces` (RED and graph cells) | |
//! | SLO partials | | `SloCombiner`: budgets and burn rates |
//! | trace partials | | `TraceCombiner`: RED minutes, graph edges, their scores |
//! | log partials | | `LogCombiner`: per-service windows, catalogue, log alerts |
//! | alert partials | | `IncidentStage`: every stage's alerts correlated into incidents |
//! | approvals | `verdicts` (relayed to the decision stage) | |
//! | decision inputs | | `DecisionStage`: policy, approvals, expiry, audit trail |
//! | cost partials | | `CostCombiner`: each window's bill split over its owners |
//!
//! With `[cost]` enabled, metric partitions also run `cost` (usage per window, to
//! the cost exchange) after their other parts; with `[[capacity.series]]` listed,
//! `capacity` last (forecasts to table `capacity` and `cara.capacity`, `capacity`
//! alerts).
//!
//! A part is present when the config enables it; a partition with no part runs no
//! operator. With incidents enabled, every operator that writes table `alerts` (a
//! metric partition's stack, the three combiners) is wrapped in
//! [`ReportsAlerts`], which sends its alerts, calls and progress to the incident
//! stage (exchange `cara.internal.alerts`). Owns: [`Stages`] (the config of every stage) and the one function that
//! turns it into a partition's operator, used by the live runtime and the backtests
//! alike.

use std::sync::Arc;

use cara_operators::alert::AlertRule;
use cara_operators::anomaly::alerting::{MetricAlerting, WindowSettings};
use cara_operators::anomaly::operator::AnomalyLimits;
use cara_operators::anomaly::ScorerConfig;
use cara_operators::budget::StateBudget;
use cara_operators::capacity::{CapacityForecasts, CapacitySettings};
use cara_operators::cost::stage::{CostCombiner, CostMeter, CostSources};
use cara_operators::cost::volume::{CostVolume, Telemetry};
use cara_operators::cost::CostSettings;
use cara_operators::decisions::stage::{DecisionStage, ForwardsIncidents, VerdictRelay};
use cara_operators::decisions::DecisionSettings;
use cara_operators::incidents::reporter::ReportsAlerts;
use cara_operators::incidents::stage::IncidentStage;
use cara_operators::incidents::IncidentSettings;
use cara_operators::logs::combine::LogCombiner;
use cara_operators::logs::signals::{LogOperator, LogSettings};
use cara_operators::operator::{Operator, Stacked};
use cara_operators::schema::Table;
use cara_operators::slo::combine::SloCombiner;
use cara_operators::slo::logs::{LogSlis, LogSlo};
use cara_operators::slo::metrics::{MetricSlis, MetricSlo};
use cara_operators::slo::minutes::{SliRows, SloStage};
use cara_operators::slo::spans::{SpanSlis, SpanSlo};
use cara_operators::slo::SloSpec;
use cara_operators::traces::combine::{TraceCombiner, TraceScoring};
use cara_operators::traces::counter::{TraceCounter, TraceSettings};

use crate::config::{Config, SloDefinition};
use crate::decode::Signal;

/// The configuration of every stage; a stage is `None` when disabled.
#[derive(Debug, Clone, Default)]
pub struct Stages {
    /// Anomaly scoring and alerting of metric partitions.
    pub alerting: Option<AlertingSettings>,
    /// The log operator of log partitions.
    pub logs: Option<LogSettings>,
    /// The SLO stages of every input and the SLO exchange.
    pub slos: Option<SloSettings>,
    /// The two trace stages.
    pub traces: Option<TraceRuntime>,
    /// Alert correlation into incidents.
    pub incidents: Option<IncidentSettings>,
    /// Decisions on incidents (with a policy and incidents enabled).
    pub decisions: Option<DecisionRuntime>,
    /// Cost attribution.
    pub cost: Option<Arc<CostSettings>>,
    /// Capacity forecasting of metric partitions.
    pub capacity: Option<Arc<CapacitySettings>>,
}

/// The decision stage's settings and its audit key.
#[derive(Clone, PartialEq)]
pub struct DecisionRuntime {
    /// Policy and automatic approval.
    pub settings: DecisionSettings,
    /// The audit trail's HMAC key (empty: unkeyed).
    pub audit_key: Vec<u8>,
}

impl std::fmt::Debug for DecisionRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionRuntime")
            .field("settings", &self.settings)
            .field("audit_key", &format_args!("{} bytes", self.audit_key.len()))
            .finish()
    }
}

impl Stages {
    /// The stages `config` enables.
    pub fn from_config(config: &Config) -> Stages {
        Stages {
            alerting: config.anomaly.enabled.then(|| AlertingSettings {
                scorer: config.anomaly.scorer,
                limits: config.anomaly.limits(),
                rules: config.anomaly.rules(),
                windows: config.anomaly.windows.settings(),
            }),
            logs: config.logs.settings(&config.anomaly),
            slos: slo_settings(config),
            traces: config.traces.settings().map(|settings| TraceRuntime {
                settings,
                scoring: TraceScoring {
                    scorer: config.anomaly.scorer,
                    limits: config.anomaly.limits(),
                    rules: config.anomaly.rules(),
                },
            }),
            incidents: config.incidents.settings(),
            decisions: config
                .incidents
                .enabled
                .then(|| config.decisions.settings(&config.policies))
                .flatten()
                .map(|settings| DecisionRuntime {
                    settings,
                    audit_key: config.decisions.audit_key(),
                }),
            cost: config.cost.settings(&config.anomaly),
            capacity: config.capacity.settings(),
        }
    }

    /// Whether the stages of `self` send the same exchange records as those of
    /// `other` (the same SLOs, trace settings, and template mining and windows;
    /// with incidents, every setting that decides an alert): then a replay with
    /// `self` may read the exchange records a run with `other` archived.
    pub fn sends_as(&self, other: &Stages) -> bool {
        let traces = |s: &Stages| s.traces.as_ref().map(|t| t.settings);
        let logs = |s: &Stages| {
            s.logs
                .as_ref()
                .map(|l| (l.miner.clone(), l.window_ms, l.out_of_orderness_ms))
        };
        let partials_alike =
            self.slos == other.slos && traces(self) == traces(other) && logs(self) == logs(other);
        // The decision stage reads incidents: archived ones do only with the same
        // incident settings.
        let incidents_alike = self.decisions.is_none()
            || (other.decisions.is_some() && self.incidents == other.incidents);
        // The incident stage reads the alerts of every stage: archived ones do only
        // when every stage would raise the same.
        let alerts_alike = match (self.incidents.is_some(), other.incidents.is_some()) {
            (false, _) => true,
            (true, false) => false,
            (true, true) => {
                self.alerting == other.alerting
                    && self.traces == other.traces
                    && self.logs == other.logs
                    && self.capacity == other.capacity
            }
        };
        let costs_alike = self.cost == other.cost;
        partials_alike && alerts_alike && incidents_alike && costs_alike
    }

    /// The operators of a partition of `signal`, restored from its checkpoint or
    /// fresh; `None` when that signal has none enabled.
    ///
    /// Input partitions run a [`Stacked`] operator: its parts are restored from their
    /// part of the snapshot. A snapshot that is not a stack (written before the
    /// partition had several parts) belongs to the first-named part (`main`), so adding
    /// an SLO does not throw away a partition's anomaly or template state.
    pub fn operator(
        &self,
        wiring: &Wiring,
        signal: Signal,
        snapshot: Option<&[u8]>,
        topic: &str,
        partition: i32,
    ) -> Option<Box<dyn Operator>> {
        let operator = self.unreported(wiring, signal, snapshot, topic, partition)?;
        let raises_alerts = operator.tables().contains(&Table::Alerts);
        Some(match self.incidents.is_some() && raises_alerts {
            true => Box::new(ReportsAlerts::wrap(operator)),
            false if signal == Signal::AlertPartials && self.decisions.is_some() => {
                Box::new(ForwardsIncidents::wrap(operator))
            }
            false => operator,
        })
    }

    /// The operators of a partition, before alert reporting is added.
    fn unreported(
        &self,
        wiring: &Wiring,
        signal: Signal,
        snapshot: Option<&[u8]>,
        topic: &str,
        partition: i32,
    ) -> Option<Box<dyn Operator>> {
        let slos = self.slos.as_ref();
        let ooo = slos.map_or(0, SloSettings::out_of_orderness_ms);
        let mut parts: Vec<Box<dyn Operator>> = Vec::new();
        match signal {
            Signal::Metrics => {
                let part = parts_of(snapshot, "alerting", topic, partition);
                if let Some(a) = &self.alerting {
                    let mut alerting = restored(
                        part("alerting").as_deref(),
                        |bytes| MetricAlerting::restore(bytes, a.scorer, a.limits, a.rules.clone()),
                        || MetricAlerting::new(a.scorer, a.limits, a.rules.clone()),
                        "metric scoring states",
                        topic,
                        partition,
                    );
                    alerting.share_budget(wiring.state_budget.clone());
                    parts.push(Box::new(alerting.with_windows(a.windows)));
                }
                if let Some(slos) = slos.filter(|s| !s.metrics.is_empty()) {
                    let sli = MetricSlis(slos.metrics.clone());
                    parts.push(slo_part(part("slo"), sli, ooo, topic, partition));
                }
                if let Some(cost) = &self.cost {
                    let meter = restored(
                        part("cost").as_deref(),
                        |bytes| CostMeter::restore(bytes, cost.clone()),
                        || CostMeter::new(cost.clone()),
                        "cost usage per window",
                        topic,
                        partition,
                    );
                    parts.push(Box::new(meter));
                }
                if let Some(capacity) = &self.capacity {
                    let forecasts = restored(
                        part("capacity").as_deref(),
                        |bytes| CapacityForecasts::restore(bytes, capacity.clone()),
                        || CapacityForecasts::new(capacity.clone()),
                        "capacity forecasts",
                        topic,
                        partition,
                    );
                    parts.push(Box::new(forecasts));
                }
            }
            Signal::Logs => {
                let part = parts_of(snapshot, "logs", topic, partition);
                if let Some(logs) = &self.logs {
                    let operator = restored(
                        part("logs").as_deref(),
                        |bytes| LogOperator::restore(bytes, logs.clone()),
                        || LogOperator::new(logs.clone()),
                        "log templates and windows",
                        topic,
                        partition,
                    );
                    parts.push(Box::new(operator));
                }
                if let Some(slos) = slos.filter(|s| !s.logs.is_empty()) {
                    let sli = LogSlis(slos.logs.clone());
                    parts.push(slo_part(part("slo"), sli, ooo, topic, partition));
                }
                if let Some(cost) = &self.cost {
                    parts.push(volume_part(
                        part("cost"),
                        Telemetry::Logs,
                        cost,
                        topic,
                        partition,
                    ));
                }
            }
            Signal::Spans => {
                let part = parts_of(snapshot, "slo", topic, partition);
                if let Some(slos) = slos.filter(|s| !s.spans.is_empty()) {
                    let sli = SpanSlis(slos.spans.clone());
                    parts.push(slo_part(part("slo"), sli, ooo, topic, partition));
                }
                if let Some(traces) = &self.traces {
                    let counter = restored(
                        part("traces").as_deref(),
                        |bytes| TraceCounter::restore(bytes, traces.settings),
                        || TraceCounter::new(traces.settings),
                        "trace cells",
                        topic,
                        partition,
                    );
                    parts.push(Box::new(counter));
                }
                if let Some(cost) = &self.cost {
                    parts.push(volume_part(
                        part("cost"),
                        Telemetry::Spans,
                        cost,
                        topic,
                        partition,
                    ));
                }
            }
            Signal::SloPartials => {
                let slos = slos?;
                let specs = slos.specs(&wiring.topic_partitions);
                let combiner = restored(
                    snapshot,
                    |bytes| SloCombiner::restore(bytes, specs.clone()),
                    || SloCombiner::new(specs.clone()),
                    "SLO budgets",
                    topic,
                    partition,
                );
                return Some(Box::new(combiner));
            }
            Signal::TracePartials => {
                let traces = self.traces.as_ref()?;
                let sources = wiring.topic_partitions.spans;
                let combiner = restored(
                    snapshot,
                    |bytes| TraceCombiner::restore(bytes, sources, traces.scoring.clone()),
                    || TraceCombiner::new(sources, traces.scoring.clone()),
                    "RED and service-graph minutes",
                    topic,
                    partition,
                );
                return Some(Box::new(combiner));
            }
            Signal::LogPartials => {
                let logs = self.logs.as_ref()?;
                let sources = wiring.topic_partitions.logs;
                let combiner = restored(
                    snapshot,
                    |bytes| LogCombiner::restore(bytes, sources, logs.clone()),
                    || LogCombiner::new(sources, logs.clone()),
                    "log template catalogue and windows",
                    topic,
                    partition,
                );
                return Some(Box::new(combiner));
            }
            Signal::AlertPartials => {
                let settings = self.incidents?;
                let stage = restored(
                    snapshot,
                    |bytes| IncidentStage::restore(bytes, settings),
                    || IncidentStage::new(settings),
                    "open incidents and the service graph",
                    topic,
                    partition,
                );
                return Some(Box::new(stage));
            }
            Signal::Approvals => {
                self.decisions.as_ref()?;
                let relay = restored(
                    snapshot,
                    VerdictRelay::restore,
                    VerdictRelay::default,
                    "the verdict relay's progress",
                    topic,
                    partition,
                );
                return Some(Box::new(relay));
            }
            Signal::CostPartials => {
                let cost = self.cost.as_ref()?;
                // Every metric, log and span partition meters its window's usage.
                let p = wiring.topic_partitions;
                let sources = CostSources {
                    metrics: p.metrics,
                    logs: p.logs,
                    spans: p.spans,
                };
                let combiner = restored(
                    snapshot,
                    |bytes| CostCombiner::restore(bytes, sources, cost.clone()),
                    || CostCombiner::new(sources, cost.clone()),
                    "cost windows not yet billed",
                    topic,
                    partition,
                );
                return Some(Box::new(combiner));
            }
            Signal::DecisionInputs => {
                let d = self.decisions.as_ref()?;
                let stage = restored(
                    snapshot,
                    |bytes| DecisionStage::restore(bytes, d.settings.clone(), d.audit_key.clone()),
                    || DecisionStage::new(d.settings.clone(), d.audit_key.clone()),
                    "open decisions and the audit chain's head",
                    topic,
                    partition,
                );
                return Some(Box::new(stage));
            }
        }
        (!parts.is_empty()).then(|| Box::new(Stacked::new(parts)) as Box<dyn Operator>)
    }

    /// What limits a stage's keyed state per partition, and the setting that
    /// raises it (for the warning when records are refused).
    pub fn state_limit(stage: &str) -> &'static str {
        match stage {
            "alerting" => "anomaly.max_series (series scored per partition)",
            "traces" => "traces.max_pending_spans (spans held for the parent-child join)",
            "trace_combiner" => "anomaly.max_series (service series scored)",
            "log_combiner" => "anomaly.max_series (log series scored)",
            _ => "the stage's state limit",
        }
    }

    /// Whether a second stage runs, so its exchange topic is consumed.
    pub fn consumes(&self, exchange: Signal) -> bool {
        match exchange {
            Signal::SloPartials => self.slos.is_some(),
            Signal::TracePartials => self.traces.is_some(),
            Signal::LogPartials => self.logs.is_some(),
            Signal::AlertPartials => self.incidents.is_some(),
            Signal::Approvals | Signal::DecisionInputs => self.decisions.is_some(),
            Signal::CostPartials => self.cost.is_some(),
            Signal::Metrics | Signal::Logs | Signal::Spans => true,
        }
    }
}

/// What building a partition's operator needs besides [`Stages`]: the partitions
/// of each input topic (a second stage waits for all of them) and the process's
/// operator-state budget that the anomaly stage draws on.
#[derive(Debug, Clone)]
pub struct Wiring {
    /// Partitions of each input topic.
    pub topic_partitions: TopicPartitions,
    /// The process-wide budget of keyed operator state.
    pub state_budget: Arc<StateBudget>,
}

/// The configured SLOs, by the source of their events; `None` without any.
fn slo_settings(config: &Config) -> Option<SloSettings> {
    if config.slos.is_empty() {
        return None;
    }
    let mut settings = SloSettings::default();
    for slo in &config.slos {
        match slo.definition() {
            SloDefinition::Spans(s) => settings.spans.push(s),
            SloDefinition::Metrics(s) => settings.metrics.push(s),
            SloDefinition::Logs(s) => settings.logs.push(s),
        }
    }
    Some(settings)
}

/// How metric partitions are scored and alerted on.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertingSettings {
    /// Detector tuning.
    pub scorer: ScorerConfig,
    /// State limits per partition.
    pub limits: AnomalyLimits,
    /// Alert rules.
    pub rules: Vec<AlertRule>,
    /// Windows over every scored series (table `metric_windows`).
    pub windows: Option<WindowSettings>,
}

/// How RED metrics and the service graph are computed.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRuntime {
    /// The first stage.
    pub settings: TraceSettings,
    /// Scoring of the derived series in the second.
    pub scoring: TraceScoring,
}

/// How SLOs are computed, by the source of their events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SloSettings {
    /// SLOs over spans.
    pub spans: Vec<SpanSlo>,
    /// SLOs over two counter metrics.
    pub metrics: Vec<MetricSlo>,
    /// SLOs over log lines.
    pub logs: Vec<LogSlo>,
}

impl SloSettings {
    /// The bound the first stages' watermarks trail by: the largest of the SLOs'.
    fn out_of_orderness_ms(&self) -> i64 {
        self.all_specs()
            .map(|(s, _)| s.out_of_orderness_ms)
            .max()
            .unwrap_or(0)
    }

    fn all_specs(&self) -> impl Iterator<Item = (&SloSpec, Signal)> {
        let spans = self.spans.iter().map(|s| (&s.spec, Signal::Spans));
        let metrics = self.metrics.iter().map(|s| (&s.spec, Signal::Metrics));
        let logs = self.logs.iter().map(|s| (&s.spec, Signal::Logs));
        spans.chain(metrics).chain(logs)
    }

    /// Every SLO with the number of partitions of its source topic.
    fn specs(&self, partitions: &TopicPartitions) -> Vec<(SloSpec, usize)> {
        self.all_specs()
            .map(|(spec, signal)| (spec.clone(), partitions.of(signal)))
            .collect()
    }
}

/// Partitions of each input topic (the sources the second stages wait for).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicPartitions {
    /// `telemetry.metrics`.
    pub metrics: usize,
    /// `telemetry.logs`.
    pub logs: usize,
    /// `telemetry.spans`.
    pub spans: usize,
}

impl TopicPartitions {
    /// Partitions of `signal`'s input topic; 0 for the exchange topics.
    pub fn of(&self, signal: Signal) -> usize {
        match signal {
            Signal::Metrics => self.metrics,
            Signal::Logs => self.logs,
            Signal::Spans => self.spans,
            Signal::SloPartials
            | Signal::TracePartials
            | Signal::LogPartials
            | Signal::AlertPartials
            | Signal::Approvals
            | Signal::DecisionInputs
            | Signal::CostPartials => 0,
        }
    }
}

/// The cost part of a log or span partition's stack, restored or fresh.
fn volume_part(
    snapshot: Option<Vec<u8>>,
    telemetry: Telemetry,
    cost: &Arc<CostSettings>,
    topic: &str,
    partition: i32,
) -> Box<dyn Operator> {
    Box::new(restored(
        snapshot.as_deref(),
        |bytes| CostVolume::restore(bytes, telemetry, cost.clone()),
        || CostVolume::new(telemetry, cost.clone()),
        "telemetry volume per window",
        topic,
        partition,
    ))
}

/// The SLO part of an input partition's stack (one kind per signal's SLIs),
/// restored from its part of the snapshot or fresh.
fn slo_part<R: SliRows + Clone + 'static>(
    snapshot: Option<Vec<u8>>,
    sli: R,
    out_of_orderness_ms: i64,
    topic: &str,
    partition: i32,
) -> Box<dyn Operator> {
    Box::new(restored(
        snapshot.as_deref(),
        |bytes| SloStage::restore(bytes, sli.clone(), out_of_orderness_ms),
        || SloStage::new(sli.clone(), out_of_orderness_ms),
        "SLO counts",
        topic,
        partition,
    ))
}

/// The parts of a stacked snapshot, by name; a snapshot that is not a stack is
/// `main`'s.
fn parts_of<'a>(
    snapshot: Option<&'a [u8]>,
    main: &'static str,
    topic: &str,
    partition: i32,
) -> impl Fn(&str) -> Option<Vec<u8>> + 'a {
    let parts: std::collections::BTreeMap<String, Vec<u8>> = match snapshot {
        None => Default::default(),
        Some(bytes) => Stacked::split_snapshot(bytes).unwrap_or_else(|_| {
            tracing::debug!(
                topic,
                partition,
                main,
                "checkpointed state is one operator's"
            );
            [(main.to_owned(), bytes.to_owned())].into()
        }),
    };
    move |name: &str| parts.get(name).cloned()
}

/// State restored from `snapshot`, or fresh when there is none or it is unreadable
/// (logged, naming `what` was lost).
fn restored<T, E: std::fmt::Display>(
    snapshot: Option<&[u8]>,
    restore: impl FnOnce(&[u8]) -> Result<T, E>,
    fresh: impl FnOnce() -> T,
    what: &str,
    topic: &str,
    partition: i32,
) -> T {
    match snapshot.map(restore) {
        None => fresh(),
        Some(Ok(state)) => state,
        Some(Err(error)) => {
            tracing::warn!(topic, partition, %error, "{what} in the checkpoint are unreadable; they start afresh");
            fresh()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cara_operators::series::{gauge_batch, DerivedPoint};

    fn alerting() -> MetricAlerting {
        MetricAlerting::new(
            ScorerConfig::default(),
            AnomalyLimits::default(),
            vec![AlertRule::default_anomaly()],
        )
    }

    /// The declared dataflow as a table: with every stage enabled, the parts each
    /// signal's partitions run and the tables they may write.
    #[test]
    fn every_stage_enabled_gives_these_parts_and_tables() {
        let config = Config::from_toml(
            "[[slo]]\nname = \"a\"\nservice = \"s\"\nsli = \"availability\"\nobjective = 0.99\n\
             [[slo]]\nname = \"m\"\nsource = \"metrics\"\ngood_metric = \"ok_total\"\ntotal_metric = \"all_total\"\nsli = \"availability\"\nobjective = 0.99\n\
             [[slo]]\nname = \"l\"\nsource = \"logs\"\nservice = \"s\"\nsli = \"availability\"\nobjective = 0.99\n\
             [cost]\nenabled = true\n",
        )
        .unwrap();
        let stages = Stages::from_config(&config);
        let wiring = Wiring {
            topic_partitions: TopicPartitions::default(),
            state_budget: StateBudget::unlimited(),
        };
        let describe = |signal: Signal| {
            let operator = stages.operator(&wiring, signal, None, "t", 0).unwrap();
            let parts: Vec<String> = if operator.name() == "stack" {
                let snapshot = operator.snapshot().unwrap();
                Stacked::split_snapshot(&snapshot)
                    .unwrap()
                    .into_keys()
                    .collect()
            } else {
                vec![operator.name().to_owned()]
            };
            (parts, operator.tables())
        };
        use cara_operators::schema::Table::*;
        let strings = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            describe(Signal::Metrics),
            (
                strings(&["alerting", "cost", "slo"]),
                vec![Alerts, MetricWindows]
            )
        );
        assert_eq!(
            describe(Signal::Logs),
            (strings(&["cost", "logs", "slo"]), vec![LogTemplates])
        );
        assert_eq!(
            describe(Signal::Spans),
            (strings(&["cost", "slo", "traces"]), vec![])
        );
        assert_eq!(
            describe(Signal::SloPartials),
            (strings(&["slo_combiner"]), vec![Slo, Alerts])
        );
        assert_eq!(
            describe(Signal::TracePartials),
            (
                strings(&["trace_combiner"]),
                vec![Red, ServiceGraph, Alerts]
            )
        );
        assert_eq!(
            describe(Signal::LogPartials),
            (strings(&["log_combiner"]), vec![LogWindows, Alerts])
        );
        assert_eq!(
            describe(Signal::AlertPartials),
            (strings(&["incidents"]), vec![Incidents])
        );
        assert_eq!(
            describe(Signal::CostPartials),
            (strings(&["cost_combiner"]), vec![Costs, Alerts])
        );
    }

    #[test]
    fn a_stacked_snapshot_splits_by_part_and_a_single_operators_belongs_to_main() {
        let stacked = Stacked::new(vec![Box::new(alerting())]);
        let snapshot = Operator::snapshot(&stacked).unwrap();
        let part = parts_of(Some(&snapshot), "alerting", "t", 0);
        let own = Operator::snapshot(&alerting()).unwrap();
        assert_eq!(part("alerting").as_deref(), Some(own.as_slice()));
        assert_eq!(part("slo"), None, "a part added later starts fresh");

        // Written before the partition had several parts: all of it is main's.
        let legacy = parts_of(Some(&own), "alerting", "t", 0);
        assert_eq!(legacy("alerting").as_deref(), Some(own.as_slice()));
        assert_eq!(legacy("slo"), None);
        assert_eq!(parts_of(None, "alerting", "t", 0)("alerting"), None);
    }

    #[test]
    fn operators_restore_with_the_slo_stage_added_and_keep_the_anomaly_state() {
        let settings = SloSettings {
            metrics: vec![MetricSlo {
                spec: SloSpec {
                    name: "api".into(),
                    objective: 0.99,
                    period_ms: 86_400_000,
                    out_of_orderness_ms: 30_000,
                    rules: cara_operators::slo::default_burn_rules(),
                    service: None,
                },
                good_metric: "ok_total".into(),
                total_metric: "all_total".into(),
                labels: Default::default(),
            }],
            ..SloSettings::default()
        };
        let (parts, restored) = restore_parts_for_test(Some(settings));
        assert_eq!(parts.keys().collect::<Vec<_>>(), vec!["alerting", "slo"]);
        assert_eq!(
            parts["alerting"], restored,
            "the scoring state was restored, not reset"
        );
        let (parts, _) = restore_parts_for_test(None);
        assert_eq!(parts.keys().collect::<Vec<_>>(), vec!["alerting"]);
    }

    /// The parts `Stages::operator` builds for a metrics partition whose
    /// checkpoint an anomaly-only partition wrote, and that checkpoint.
    fn restore_parts_for_test(
        slos: Option<SloSettings>,
    ) -> (std::collections::BTreeMap<String, Vec<u8>>, Vec<u8>) {
        let (operator, own) = restore_operator_with(slos, Signal::Metrics);
        let snapshot = operator.expect("an operator").snapshot().unwrap();
        (Stacked::split_snapshot(&snapshot).unwrap(), own)
    }

    fn restore_operator_with(
        slos: Option<SloSettings>,
        signal: Signal,
    ) -> (Option<Box<dyn Operator>>, Vec<u8>) {
        let stages = Stages {
            alerting: Some(AlertingSettings {
                scorer: ScorerConfig::default(),
                limits: AnomalyLimits::default(),
                rules: vec![AlertRule::default_anomaly()],
                windows: None,
            }),
            logs: None,
            slos,
            traces: None,
            incidents: None,
            decisions: None,
            cost: None,
            capacity: None,
        };
        let wiring = Wiring {
            topic_partitions: TopicPartitions::default(),
            state_budget: StateBudget::unlimited(),
        };
        // A checkpoint written by an anomaly-only partition that scored a series.
        let points: Vec<DerivedPoint> = (0..50)
            .map(|i| DerivedPoint {
                ts_ms: 1_700_000_000_000 + i * 10_000,
                name: "latency_ms".into(),
                labels: vec![("service".into(), "api".into())],
                value: 20.0 + (i % 5) as f64,
                source_row: i,
            })
            .collect();
        let mut scored = alerting();
        scored
            .score(
                &gauge_batch(&points, "telemetry.metrics", 0).unwrap(),
                &mut Vec::new(),
            )
            .unwrap();
        let own = Operator::snapshot(&scored).unwrap();
        let operator = stages.operator(&wiring, signal, Some(&own), "telemetry.metrics", 0);
        (operator, own)
    }
}
