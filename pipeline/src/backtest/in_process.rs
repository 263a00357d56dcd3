//! The declared dataflow driven in process, with no broker and no archive: the
//! records a caller hands it go to their input partition's first stages, and at each
//! flush the exchange records those send are decoded and handed to the stages that
//! read them, in the order the dataflow declares its exchanges (the SLO, trace and
//! log combiners, then the incident stage, which also reads what the combiners
//! sent), as the runtime does through the exchange topics. For records made up on
//! the spot (`cara backtest gen`), where the archive replay of [`super::replay`] has
//! nothing to read.
//!
//! Owns one decoder and operator stack per input partition and per consumed exchange
//! topic, built by [`Stages::operator`] exactly as the shards build them, the alerts
//! every stage raised, in the order raised, and the incident transitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use cara_operators::alert::AlertRecord;
use cara_operators::budget::StateBudget;
use cara_operators::decisions::DecisionRecord;
use cara_operators::incidents::IncidentRecord;
use cara_operators::operator::{Emitted, Operator, Outbound, OutboundMessage, PartitionContext};

use crate::dataflow::stages::TopicPartitions;
use crate::dataflow::{ConsumedTopic, Dataflow, Stages, Wiring};
use crate::decode::{DecodeLimits, Decoder, Signal, SourcePosition, WireFormat};

/// One partition's decoder and operator stack.
struct Partition {
    signal: Signal,
    decoder: Decoder,
    operator: Option<Box<dyn Operator>>,
    context: PartitionContext,
    next_offset: i64,
}

impl Partition {
    fn new(
        stages: &Stages,
        wiring: &Wiring,
        signal: Signal,
        topic: &str,
        partition: i32,
        format: WireFormat,
    ) -> Self {
        Partition {
            signal,
            decoder: Decoder::with_format(signal, format, DecodeLimits::default()),
            operator: stages.operator(wiring, signal, None, topic, partition),
            context: PartitionContext {
                topic: Arc::from(topic),
                partition,
            },
            next_offset: 0,
        }
    }

    /// Decodes one message; its rows, or `None` when it could not be decoded (the
    /// live run would send it to the dead-letter topic).
    fn decode(&mut self, payload: &[u8]) -> Option<usize> {
        let position = SourcePosition {
            topic: &self.context.topic,
            partition: self.context.partition,
            offset: self.next_offset,
            kafka_ts_ms: None,
        };
        self.next_offset += 1;
        match self.decoder.decode(Some(payload), &position) {
            Ok(rows) => Some(rows),
            Err(error) => {
                tracing::warn!(topic = %self.context.topic, %error, "record not decoded");
                None
            }
        }
    }

    /// Hands the decoded rows to the operators, as a shard's flush does.
    fn flush(&mut self, emitted: &mut Emitted) {
        if self.decoder.is_empty() {
            return;
        }
        let batch = self.decoder.finish();
        let Some(operator) = self.operator.as_mut() else {
            return;
        };
        if let Err(error) = operator.process(&self.context, &batch, emitted) {
            tracing::warn!(topic = %self.context.topic, %error, "operator skipped a batch");
        }
    }
}

/// What an in-process run consumed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// Rows decoded, per input signal (a metric message may hold several points).
    pub records: BTreeMap<Signal, u64>,
    /// Messages that could not be decoded (the live run's dead letters).
    pub undecoded: u64,
    /// Exchange records the first stages sent to the second.
    pub exchanged: u64,
    /// Rows the stages wrote, per derived table.
    pub rows_out: BTreeMap<&'static str, u64>,
    /// What the stages wrote, per derived table: the wrapping sum of each row's
    /// hash (of its values as displayed, column by column, but the provenance
    /// columns `_topic`, `_partition`, ..., which say where a row was read, not
    /// what it says), so two runs that wrote the same rows in any order have the
    /// same digest.
    pub digests: BTreeMap<&'static str, u64>,
}

impl Consumed {
    fn count_tables(&mut self, emitted: &Emitted) {
        for (table, rows) in &emitted.tables {
            *self.rows_out.entry(table.name()).or_default() += rows.num_rows() as u64;
            let digest = self.digests.entry(table.name()).or_default();
            *digest = digest.wrapping_add(rows_digest(rows));
        }
    }
}

/// The wrapping sum of the hashes of `batch`'s rows (see [`Consumed::digests`]).
fn rows_digest(batch: &arrow::record_batch::RecordBatch) -> u64 {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    use cara_operators::stable_hash::Fnv1a;
    let options = FormatOptions::default().with_null("\\N");
    let formatters: Vec<ArrayFormatter> = batch
        .schema_ref()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(field, _)| !field.name().starts_with('_'))
        .filter_map(|(_, column)| ArrayFormatter::try_new(column.as_ref(), &options).ok())
        .collect();
    let mut sum = 0u64;
    for row in 0..batch.num_rows() {
        let mut hash = Fnv1a::default();
        for formatter in &formatters {
            hash.feed(formatter.value(row).to_string().as_bytes())
                .feed(&[0x1f]);
        }
        sum = sum.wrapping_add(hash.finish());
    }
    sum
}

/// What an in-process run produced.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// Every alert transition, in the order the stages raised them.
    pub alerts: Vec<AlertRecord>,
    /// Every incident transition, in event-time order (empty when incidents are
    /// disabled). Those after the slowest stage's progress (a minute or so before
    /// the end) are not applied.
    pub incidents: Vec<IncidentRecord>,
    /// Every decision change, in the order made (empty without a policy).
    pub decisions: Vec<DecisionRecord>,
    /// For each alert, the flush (counted from 1) that raised it. A driver that
    /// flushes every so much event time reads it as the clock of a live run keeping
    /// pace with event time: the transition's own time is earlier, by the wait for
    /// its window to close (and, for incidents, for the slowest stage).
    pub alerts_flush: Vec<u64>,
    /// For each incident transition, the flush that sent it.
    pub incidents_flush: Vec<u64>,
    /// For each decision, the flush that made it.
    pub decisions_flush: Vec<u64>,
    /// Every cost row the cost stage sent, as on `cara.costs` (money as decimal
    /// strings).
    pub costs: Vec<serde_json::Value>,
    /// Every capacity row the capacity stage sent, as on `cara.capacity` (times as
    /// RFC 3339 text).
    pub capacity: Vec<serde_json::Value>,
    /// Flushes so far.
    flushes: u64,
    /// What the dataflow consumed and wrote.
    pub consumed: Consumed,
}

impl Outputs {
    /// Keeps what a stage emitted: counts its rows, its alerts and incident
    /// transitions, and its exchange records for the stages after it.
    fn take(&mut self, emitted: &mut Emitted, messages: &mut Vec<OutboundMessage>) {
        self.consumed.count_tables(emitted);
        let flush = self.flushes;
        self.alerts_flush
            .extend(std::iter::repeat_n(flush, emitted.alerts.len()));
        self.alerts.append(&mut emitted.alerts);
        for message in emitted.messages.drain(..) {
            match message.topic {
                Outbound::Decisions => read_back(
                    &message.payload,
                    (&mut self.decisions, &mut self.decisions_flush, flush),
                    "a decision",
                ),
                Outbound::Incidents => read_back(
                    &message.payload,
                    (&mut self.incidents, &mut self.incidents_flush, flush),
                    "an incident",
                ),
                Outbound::Costs => match serde_json::from_slice(&message.payload) {
                    Ok(row) => self.costs.push(row),
                    Err(error) => tracing::warn!(%error, "a cost row not read back"),
                },
                Outbound::Capacity => match serde_json::from_slice(&message.payload) {
                    Ok(row) => self.capacity.push(row),
                    Err(error) => tracing::warn!(%error, "a capacity row not read back"),
                },
                topic if topic.is_exchange() => messages.push(message),
                _ => {}
            }
        }
    }
}

/// Reads back an output record a stage serialised, keeping it and the flush that
/// sent it (`into`); one that does not read back is logged (`what` it was).
fn read_back<T: serde::de::DeserializeOwned>(
    payload: &[u8],
    into: (&mut Vec<T>, &mut Vec<u64>, u64),
    what: &str,
) {
    let (records, flushes, flush) = into;
    match serde_json::from_slice(payload) {
        Ok(record) => {
            records.push(record);
            flushes.push(flush);
        }
        Err(error) => tracing::warn!(%error, "{what} record that does not read back"),
    }
}

/// The dataflow of one config, run in process.
pub struct InProcessRun<'a> {
    /// How the stages are built.
    stages: &'a Stages,
    wiring: Wiring,
    /// The topic of each input signal.
    inputs: BTreeMap<Signal, (String, WireFormat)>,
    first: BTreeMap<(Signal, i32), Partition>,
    /// The second stages, by the outbound stream they read.
    second: Vec<Partition>,
    /// What the stages produced so far.
    out: Outputs,
}

impl<'a> InProcessRun<'a> {
    /// The stages of `dataflow` over inputs of `partitions` partitions each (the
    /// second stages wait for that many sources).
    pub fn new(dataflow: &'a Dataflow, partitions: TopicPartitions) -> Self {
        Self::fed_in(dataflow, partitions, WireFormat::FlatJson)
    }

    /// [`InProcessRun::new`] for inputs written in `input_format` (to the input
    /// topics of that format).
    pub fn fed_in(
        dataflow: &'a Dataflow,
        partitions: TopicPartitions,
        input_format: WireFormat,
    ) -> Self {
        let wiring = Wiring {
            topic_partitions: partitions,
            state_budget: StateBudget::unlimited(),
        };
        let mut inputs = BTreeMap::new();
        let mut second = Vec::new();
        for ConsumedTopic {
            topic,
            signal,
            format,
        } in dataflow.consumed()
        {
            // The inputs of the format this run is fed in.
            if !signal.is_exchange() && format != input_format {
                continue;
            }
            match signal.is_exchange() {
                true => second.push(Partition::new(
                    &dataflow.stages,
                    &wiring,
                    signal,
                    &topic,
                    0,
                    WireFormat::FlatJson,
                )),
                false => {
                    inputs.insert(signal, (topic, format));
                }
            }
        }
        InProcessRun {
            stages: &dataflow.stages,
            wiring,
            inputs,
            first: BTreeMap::new(),
            second,
            out: Outputs::default(),
        }
    }

    /// Appends one message of input `signal` to `partition` (below the partition
    /// count given to [`InProcessRun::new`]); it is scored at the next flush.
    pub fn push(&mut self, signal: Signal, partition: i32, payload: &[u8]) {
        let Some((topic, format)) = self.inputs.get(&signal) else {
            return;
        };
        let (stages, wiring) = (self.stages, &self.wiring);
        let target = self
            .first
            .entry((signal, partition))
            .or_insert_with(|| Partition::new(stages, wiring, signal, topic, partition, *format));
        match target.decode(payload) {
            Some(rows) => *self.out.consumed.records.entry(signal).or_default() += rows as u64,
            None => self.out.consumed.undecoded += 1,
        }
    }

    /// Runs every input partition's operators over what was pushed since the last
    /// flush, then each later stage over the exchange records sent before it.
    pub fn flush(&mut self) {
        self.out.flushes += 1;
        let mut messages: Vec<OutboundMessage> = Vec::new();
        for partition in self.first.values_mut() {
            let mut emitted = Emitted::default();
            partition.flush(&mut emitted);
            self.out.take(&mut emitted, &mut messages);
        }
        for index in 0..self.second.len() {
            let stage = &mut self.second[index];
            let Some(reads) = stage.signal.sent_as() else {
                continue;
            };
            for message in messages.iter().filter(|m| m.topic == reads) {
                self.out.consumed.exchanged += 1;
                if stage.decode(&message.payload).is_none() {
                    self.out.consumed.undecoded += 1;
                }
            }
            let mut emitted = Emitted::default();
            stage.flush(&mut emitted);
            self.out.take(&mut emitted, &mut messages);
        }
    }

    /// Flushes what is left; the alerts raised, in order, the incident transitions
    /// the incident stage sent (as far as every stage's progress allowed), and what
    /// was consumed.
    pub fn finish(mut self) -> Outputs {
        self.flush();
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn run_of(config: &Config) -> Dataflow {
        Dataflow::declare(config).expect("the default config declares a dataflow")
    }

    fn span(trace: &str, service: &str, start_ms: i64, status: &str) -> Vec<u8> {
        format!(
            r#"{{"trace_id":"{trace}","span_id":"{trace}01","service":"{service}","name":"GET /","kind":"server","start":{start_ms},"duration_ms":5.0,"status":"{status}"}}"#
        )
        .into_bytes()
    }

    /// The one capacity alert a run raised (it fired once: every transition of
    /// rule `capacity` is its firing), and the one scale-out proposed for it,
    /// waiting for a human.
    fn the_capacity_alert_and_its_scale_out(out: &Outputs) -> (&AlertRecord, &DecisionRecord) {
        assert_eq!(out.consumed.undecoded, 0);
        let capacity: Vec<&AlertRecord> = out
            .alerts
            .iter()
            .filter(|a| a.rule == cara_operators::capacity::stage::RULE)
            .collect();
        assert_eq!(capacity.len(), 1, "{capacity:#?}");
        let proposed: Vec<&DecisionRecord> = out
            .decisions
            .iter()
            .filter(|d| d.action == "scale_out")
            .collect();
        assert_eq!(proposed.len(), 1, "{:#?}", out.decisions);
        let decision = proposed[0];
        assert_eq!(
            decision.state,
            cara_operators::decisions::DecisionState::Proposed
        );
        assert!(decision.requires_approval);
        assert!(decision.alert_ids.contains(&capacity[0].id));
        (capacity[0], decision)
    }

    /// A disk filling a GB an hour from 20 GB of 100, swinging a GB a day.
    fn disk_used(t: i64, start: i64) -> f64 {
        let hours = (t - start) as f64 / 3_600_000.0;
        20e9 + 1e9 * hours + 1e9 * (hours / 24.0 * std::f64::consts::TAU).sin()
    }

    #[test]
    fn a_disk_about_to_fill_is_a_scale_out_proposed_a_lead_time_before() {
        let config = Config::from_toml(
            "[anomaly]\nenabled = false\n[traces]\nenabled = false\n[logs]\nenabled = false\n\
             [capacity]\nlead_time = \"12h\"\n\
             [[capacity.series]]\nmetric = \"disk_used_bytes\"\nlimit_metric = \"disk_size_bytes\"\n\
             [[policy]]\nname = \"grow-disk\"\nwhen = { rules = [\"capacity\"] }\naction = \"scale_out\"\n\
             kind = \"kafka\"\ntopic = \"actions\"\ntarget = \"{cause}\"\nrisk = \"medium\"\n\
             approval_timeout = \"1d\"\n",
        )
        .expect("a valid config");
        let dataflow = run_of(&config);
        let partitions = TopicPartitions {
            metrics: 1,
            logs: 0,
            spans: 0,
        };
        let mut run = InProcessRun::new(&dataflow, partitions);
        let start = 1_764_000_000_000;
        let full = (0..)
            .map(|m| start + m * 60_000)
            .find(|t| disk_used(*t, start) >= 100e9)
            .expect("it fills");
        // A point a minute of the disk and its size, flushed every ten minutes.
        let mut t = start;
        while t < full {
            for (name, value) in [
                ("disk_used_bytes", disk_used(t, start)),
                ("disk_size_bytes", 100e9),
            ] {
                let line = format!(
                    r#"{{"ts":{t},"name":"{name}","value":{value},"type":"gauge","labels":{{"service":"db","mount":"/data"}}}}"#
                );
                run.push(Signal::Metrics, 0, line.as_bytes());
            }
            t += 60_000;
            if (t - start) % 600_000 == 0 {
                run.flush();
            }
        }
        let out = run.finish();
        assert!(
            out.consumed.rows_out.get("capacity") > Some(&100),
            "{:?}",
            out.consumed.rows_out
        );
        // The capacity alert made an incident, and the policy a scale-out that
        // waits for a human, at least the lead time before the disk is full.
        let (_, decision) = the_capacity_alert_and_its_scale_out(&out);
        assert_eq!(decision.target, "db");
        let lead = full - decision.at;
        assert!(
            lead >= 12 * 3_600_000,
            "proposed {:.1} h before full",
            lead as f64 / 3.6e6
        );
    }

    /// `cara gen`'s volume that fills (at half its size at the start, full five
    /// hours later, scraped every 15 s with its jitter): the scale-out is proposed
    /// at least the lead time before it is full, and the forecast that raised it
    /// holds the time it fills within its interval.
    #[test]
    fn the_generated_volume_that_fills_is_a_scale_out_a_lead_time_before() {
        use crate::gen::model::World;
        let config = Config::from_toml(
            "[anomaly]\nenabled = false\n[traces]\nenabled = false\n[logs]\nenabled = false\n\
             [capacity]\nstep = \"1m\"\nhorizons = [\"5m\", \"30m\", \"1h\"]\nlead_time = \"4h\"\n\
             lookahead = \"1d\"\nreport_every = \"1m\"\n\
             [[capacity.series]]\nmetric = \"kubelet_volume_stats_used_bytes\"\n\
             limit_metric = \"kubelet_volume_stats_capacity_bytes\"\n\
             [[policy]]\nname = \"grow-volume\"\nwhen = { rules = [\"capacity\"] }\naction = \"scale_out\"\n\
             kind = \"kafka\"\ntopic = \"actions\"\ntarget = \"volume/{cause}\"\nrisk = \"medium\"\n\
             approval_timeout = \"1d\"\n",
        )
        .expect("a valid config");
        let dataflow = run_of(&config);
        let start = 1_764_000_000_000;
        let mut world = World::new(8, 7, start, 50.0);
        let full = world.resources.full_at_ms();
        let filling = world.services[world.resources.filling].name.clone();
        let partitions = TopicPartitions {
            metrics: 1,
            logs: 0,
            spans: 0,
        };
        let mut run = InProcessRun::new(&dataflow, partitions);
        let mut flushed = start;
        while world.now_ms() < full {
            for (_, message, _) in world.step(&[]).metrics {
                let points = message.as_array().expect("an array of points");
                for point in points.iter().filter(|p| {
                    p["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("kubelet_volume_stats"))
                }) {
                    run.push(Signal::Metrics, 0, point.to_string().as_bytes());
                }
            }
            if world.now_ms() - flushed >= 60_000 {
                flushed = world.now_ms();
                run.flush();
            }
        }
        let out = run.finish();
        let (alert, decision) = the_capacity_alert_and_its_scale_out(&out);
        assert!(
            alert
                .labels
                .contains(&("service".to_owned(), filling.clone())),
            "{:?} is not {filling}'s",
            alert.labels
        );
        assert_eq!(decision.target, format!("volume/{filling}"));
        let lead = full - decision.at;
        assert!(
            lead >= 4 * 3_600_000,
            "proposed {:.2} h before full",
            lead as f64 / 3.6e6
        );
        // The forecast of the filling volume at the alert's bucket: the time it
        // fills lies between the earliest and the latest the interval allows.
        let time = |row: &serde_json::Value, key: &str| {
            row[key].as_str().map(|text| {
                chrono::DateTime::parse_from_rfc3339(text)
                    .expect("RFC 3339")
                    .timestamp_millis()
            })
        };
        let alerted_at = alert.window_start;
        let row = out
            .capacity
            .iter()
            .find(|r| {
                r["labels"]["service"] == filling.as_str() && time(r, "at") == Some(alerted_at)
            })
            .expect("the forecast that raised the alert");
        let earliest = time(row, "exhaustion_earliest").expect("an earliest time");
        let latest = time(row, "exhaustion_latest").unwrap_or(i64::MAX);
        assert!(
            earliest <= full && full <= latest,
            "full at {full}, forecast between {earliest} and {latest}"
        );
        // Every other volume is reported, months from full.
        let volumes: std::collections::BTreeSet<&str> = out
            .capacity
            .iter()
            .filter_map(|r| r["labels"]["service"].as_str())
            .collect();
        assert_eq!(volumes.len(), 8, "{volumes:?}");
    }

    #[test]
    fn the_trace_combiner_hears_every_span_partition_and_closes_minutes() {
        let dataflow = run_of(&Config::default());
        let partitions = TopicPartitions {
            metrics: 1,
            logs: 1,
            spans: 2,
        };
        let mut run = InProcessRun::new(&dataflow, partitions);
        let start = 1_764_000_000_000;
        // Ten minutes of spans on both partitions, one a second.
        for second in 0..600 {
            let at = start + second * 1000;
            let partition = (second % 2) as i32;
            run.push(
                Signal::Spans,
                partition,
                &span(&format!("t{second}"), "cart", at, "ok"),
            );
            if second % 10 == 9 {
                run.flush();
            }
        }
        run.push(Signal::Spans, 0, b"not json");
        let consumed = run.finish().consumed;
        assert_eq!(consumed.records.get(&Signal::Spans), Some(&600));
        assert_eq!(consumed.undecoded, 1);
        // Each span partition sends its cells once a minute closes for it.
        assert!(
            consumed.exchanged >= 2 * 8,
            "{} exchanged",
            consumed.exchanged
        );
        // A minute closes when both partitions passed it: the last minute or two
        // stay open (no watermark passed them), every earlier one has its RED row.
        let red = consumed.rows_out.get("red").copied().unwrap_or(0);
        assert!(
            (8..=10).contains(&red),
            "{red} RED rows for ten minutes of one service"
        );
    }
}
