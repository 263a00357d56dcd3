//! `cara run`: the pipeline (and, without --brokers, the embedded broker), the HTTP
//! endpoints, and with --demo the generator, summarised on the terminal.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use cara_pipeline::archive::layout::{write_bytes_atomically, ArchiveLayout};
use cara_pipeline::broker::{Advertised, EmbeddedBroker, TopicPlan};
use cara_pipeline::config::Config;
use cara_pipeline::dataflow::{Dataflow, Topics};
use cara_pipeline::gen::{self, GenOptions};
use cara_pipeline::http;
use cara_pipeline::outbound::OutboundTopics;
use cara_pipeline::runtime::RuntimeSettings;
use cara_pipeline::source::{Source, SourceSettings};
use cara_pipeline::summary::subscription::{self, BoardTopics};
use cara_pipeline::summary::{Board, Frame, Style};
use cara_pipeline::telemetry::Telemetry;
use cara_pipeline::templates::TemplateCatalog;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

use super::RunArgs;

fn apply_overrides(mut config: Config, args: &RunArgs) -> anyhow::Result<Config> {
    if let Some(brokers) = &args.brokers {
        config.kafka.brokers = brokers.clone();
    }
    if let Some(dir) = &args.archive {
        config.archive.dir = dir.clone();
    }
    if let Some(http) = args.http {
        config.http.listen = http;
    }
    if let Some(group) = &args.group {
        config.kafka.group_id = group.clone();
    }
    config.validate()?;
    if args.demo && !config.kafka.brokers.is_empty() {
        anyhow::bail!(
            "--demo runs against the embedded broker; drop --brokers (or kafka.brokers) to use it"
        );
    }
    Ok(config)
}

/// Runs until SIGTERM/Ctrl-C, then flushes and exits.
pub fn main(args: RunArgs) -> anyhow::Result<()> {
    let mut config = apply_overrides(super::load_config(args.config.as_deref())?, &args)?;
    if args.demo && args.demo_format != gen::otlp::GenFormat::FlatJson && !config.kafka.otlp {
        anyhow::bail!(
            "--demo-format {:?} writes to the OTLP topics, which kafka.otlp = false turns off; set kafka.otlp = true or drop --demo-format",
            args.demo_format
        );
    }
    if args.demo && config.slos.is_empty() {
        config.slos = Config::from_toml(DEMO_SLOS)?.slos;
        println!("demo: SLOs checkout-availability (97% ok) and checkout-latency (99% under 500 ms) on table slo and cara.slo");
    }
    if args.demo && !config.cost.enabled {
        config.cost = Config::from_toml(DEMO_COST)?.cost;
        println!("demo: costs per team every minute (CPU-seconds, memory_bytes and volumes, against the nodes' allocatable cores and memory) on table costs, topic cara.costs and /api/costs?by=team,resource");
    }
    if args.demo && config.capacity.series.is_empty() {
        config.capacity = Config::from_toml(DEMO_CAPACITY)?.capacity;
        println!("demo: each service's data volume forecast against its size every minute 1 min, 10 min and 1 h ahead on table capacity and topic cara.capacity; a capacity alert when a limit may be reached within 6 h (one volume fills in 5 h)");
    }
    if args.demo && config.policies.is_empty() && config.incidents.enabled {
        config.policies = Config::from_toml(DEMO_POLICY)?.policies;
        println!("demo: policy opens a ticket for every incident (low risk, run at once), proposes a rollback of a fault (high risk, waits for your approval) and, for a capacity alert, a scale-out (medium risk, waits too) on topic demo.actions");
    }
    let demo = args.demo.then_some(Demo {
        rate: args.demo_rate,
        format: args.demo_format,
    });
    super::runtime()?.block_on(run(config, demo))
}

/// The policy the demo decides with when the configuration has none: a ticket for
/// every incident, run at once, a rollback that waits for a human (of a fault, not
/// of a capacity forecast), and a scale-out of the cause when a capacity alert is
/// among the incident's (all `kafka` actions on `demo.actions`, so approving one
/// shows it carried out).
const DEMO_POLICY: &str = r#"
[[policy]]
name = "demo-ticket"
action = "open_ticket"
kind = "kafka"
topic = "demo.actions"
risk = "low"

[[policy]]
name = "demo-rollback"
when = { except_rules = ["capacity"] }
action = "rollback"
kind = "kafka"
topic = "demo.actions"
target = "deploy/{cause}"
risk = "high"
approval_timeout = "15m"

[[policy]]
name = "demo-scale-out"
when = { rules = ["capacity"] }
action = "scale_out"
kind = "kafka"
topic = "demo.actions"
target = "volume/{cause}"
risk = "medium"
approval_timeout = "1h"
"#;

/// The cost attribution the demo runs when the configuration has none: a minute's
/// window so that rows appear within the demo's first minutes. The generator's
/// scrapes carry the metric names cost attribution meters by default (CPU-seconds,
/// volumes, the nodes' allocatable cores and memory, labelled with their team);
/// only its memory gauge has its own name.
const DEMO_COST: &str = r#"
[cost]
enabled = true
window = "1m"
[cost.metrics]
memory_bytes = "memory_bytes"
"#;

/// The capacity forecasts the demo runs when the configuration has none: each
/// service's data volume in buckets of the generator's 15 s scrape,
/// reported every minute so that rows appear at once (the seasons start after two
/// days; before that the forecasts follow level and trend). The first horizon is
/// a minute so that its interval is measured five minutes in (16 errors). One
/// volume fills five hours after the start: a capacity alert, and the scale-out
/// `DEMO_POLICY` proposes for it.
const DEMO_CAPACITY: &str = r#"
[capacity]
step = "15s"
horizons = ["1m", "10m", "1h"]
lead_time = "6h"
lookahead = "1d"
report_every = "1m"
[[capacity.series]]
metric = "kubelet_volume_stats_used_bytes"
limit_metric = "kubelet_volume_stats_capacity_bytes"
"#;

/// SLOs the demo watches when the configuration declares none (the README's
/// example), so the first run shows budgets and burn rates too. The simulated
/// checkout fails about 1.6% of its requests (its own errors and its callees') and
/// its p99 is about 350 ms, so it is held to 97% and to 99% under 500 ms: the budgets
/// burn when a fault is injected, not always.
const DEMO_SLOS: &str = r#"
[[slo]]
name = "checkout-availability"
service = "checkout"
sli = "availability"
objective = 0.97
period = "30d"

[[slo]]
name = "checkout-latency"
service = "checkout"
sli = "latency"
threshold_ms = 500
objective = 0.99
period = "30d"
"#;

/// What the demo generator produces.
#[derive(Debug, Clone, Copy)]
struct Demo {
    /// Records per second.
    rate: u64,
    /// Flat JSON or OTLP.
    format: gen::otlp::GenFormat,
}

async fn run(config: Config, demo_settings: Option<Demo>) -> anyhow::Result<()> {
    let demo = demo_settings.is_some();
    let demo_rate = demo_settings.map_or(0, |d| d.rate);
    let demo_format = demo_settings.map_or(gen::otlp::GenFormat::FlatJson, |d| d.format);
    let dataflow = Dataflow::declare(&config)?;
    let telemetry = Arc::new(Telemetry::new());
    let shutdown = Arc::new(AtomicBool::new(false));

    let mut embedded = None;
    let brokers = if config.kafka.brokers.is_empty() {
        let plan = TopicPlan::of(&dataflow.topics);
        let broker = EmbeddedBroker::start(
            config.embedded_broker.listen,
            plan.clone(),
            Advertised::MockPort,
        )
        .await?;
        println!(
            "embedded Kafka broker: bootstrap {} (mock broker at {})",
            broker.listen, broker.direct_bootstrap
        );
        println!("{}", EmbeddedBroker::limits_notice(&plan));
        let direct = broker.direct_bootstrap.clone();
        embedded = Some(broker);
        direct
    } else {
        config.kafka.brokers.clone()
    };
    let client = super::client_config(&brokers, &config)?;
    // The embedded broker creates its topics itself.
    if embedded.is_none() && config.kafka.create_topics {
        ensure_topics(&client, &config, &dataflow.topics).await;
    }
    let token = config.http.effective_token();

    let listener = http::bind(config.http.listen).await.with_context(|| {
        format!(
            "binding HTTP on {}; pass --http with a free address",
            config.http.listen
        )
    })?;
    println!(
        "HTTP: http://{}/healthz /readyz /metrics /api/templates /api/graph /api/costs /api/decisions/{{id}}/approve|reject{}",
        listener.local_addr().unwrap_or(config.http.listen),
        if token.is_some() {
            " (/api/ needs the bearer token)"
        } else {
            ""
        }
    );
    let outbound = OutboundTopics {
        slo_status: config.kafka.slo_topic.clone(),
        slo_partials: config.kafka.slo_exchange_topic.clone(),
        trace_partials: config.kafka.trace_exchange_topic.clone(),
        log_partials: config.kafka.log_exchange_topic.clone(),
        alert_partials: config.kafka.alert_exchange_topic.clone(),
        incidents: config.kafka.incidents_topic.clone(),
        decision_inputs: config.kafka.decision_exchange_topic.clone(),
        decisions: config.kafka.decisions_topic.clone(),
        cost_partials: config.kafka.cost_exchange_topic.clone(),
        costs: config.kafka.costs_topic.clone(),
        capacity: config.kafka.capacity_topic.clone(),
    };
    // Verdicts over HTTP go to the approvals topic, as any other verdict.
    let approvals = match dataflow.stages.decisions.is_some() {
        true => Some(http::decisions::ApprovalsEndpoint {
            sink: cara_pipeline::outbound::OutboundSink::new(client.clone(), outbound.clone())
                .context("creating the producer of verdicts given over HTTP")?,
            topic: config.kafka.approvals_topic.clone(),
        }),
        false => None,
    };
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let templates = Arc::new(TemplateCatalog::default());
    let server = axum::serve(
        listener,
        http::router(
            telemetry.clone(),
            templates.clone(),
            config.archive.dir.clone(),
            token,
            approvals,
            &config.cost.owner_label,
        ),
    )
    .with_graceful_shutdown(async {
        let _ = http_stop_rx.await;
    });
    let http_task = tokio::spawn(async move { server.await });

    let settings = SourceSettings {
        client: client.clone(),
        group_id: config.kafka.group_id.clone(),
        dlq_topic: config.kafka.dlq_topic.clone(),
        alerts_topic: config.kafka.alerts_topic.clone(),
        outbound: outbound.clone(),
        runtime: RuntimeSettings::new(&config, &dataflow, templates.clone()),
    };
    // There from the start, so `cara sql` answers (with no rows) before the first flush.
    std::fs::create_dir_all(&config.archive.dir).with_context(|| {
        format!(
            "creating the archive directory {}; pass --archive with a writable directory",
            config.archive.dir.display()
        )
    })?;
    println!("archive: {}", config.archive.dir.display());
    let decision_threads = match dataflow.stages.decisions.as_ref() {
        Some(decisions) => {
            println!(
                "policy: {} rule(s); decisions on {}, verdicts read from {}{}",
                decisions.settings.rules.len(),
                config.kafka.decisions_topic,
                config.kafka.approvals_topic,
                if decisions.audit_key.is_empty() {
                    format!(
                        "; the audit trail is not keyed (set {} to a secret)",
                        config.decisions.audit_key_env
                    )
                } else {
                    String::new()
                }
            );
            let clock = cara_pipeline::clock::spawn(
                &client,
                outbound.clone(),
                config.decisions.tick_interval.0,
                shutdown.clone(),
            )
            .context("starting the clock that expires unanswered decisions")?;
            let executor = cara_pipeline::executor::spawn(
                &client,
                cara_pipeline::executor::ExecutorSettings {
                    group_id: config.kafka.group_id.clone(),
                    decisions_topic: config.kafka.decisions_topic.clone(),
                    outbound: outbound.clone(),
                    targets: cara_pipeline::executor::targets(&config.policies),
                },
                shutdown.clone(),
            )
            .context("starting the executor of approved decisions")?;
            vec![clock, executor]
        }
        None => Vec::new(),
    };
    record_config(&config)?;
    let source = Source::new(settings, telemetry.clone())?;
    let source_shutdown = shutdown.clone();
    let mut source_task = tokio::task::spawn_blocking(move || source.run(&source_shutdown));

    let mut faults = Vec::new();
    let demo_task = demo.then(|| {
        let options = GenOptions {
            rate: demo_rate,
            event_rate: None,
            count: None,
            duration: None,
            services: 8,
            seed: gen::DEMO_SEED,
            labels: Some(config.archive.dir.join("_cara").join("demo-labels.jsonl")),
            start_ms: chrono::Utc::now().timestamp_millis(),
            topics: match demo_format {
                gen::otlp::GenFormat::FlatJson => [
                    &config.kafka.metrics_topic,
                    &config.kafka.logs_topic,
                    &config.kafka.spans_topic,
                ],
                gen::otlp::GenFormat::OtlpProto | gen::otlp::GenFormat::OtlpJson => [
                    &config.kafka.otlp_metrics_topic,
                    &config.kafka.otlp_logs_topic,
                    &config.kafka.otlp_spans_topic,
                ],
            }
            .map(|t| t.clone()),
            format: demo_format,
            progress: false,
            // Detectors are warm after a minute or two; the first fault follows.
            first_fault_after: Some(std::time::Duration::from_secs(150)),
        };
        faults = gen::planned_incidents(&options, &gen::world(&options));
        println!("demo: generating {demo_rate} records/s for 8 services with injected incidents");
        let stop = shutdown.clone();
        let client = client.clone();
        tokio::task::spawn_blocking(move || gen::run(&options, client, &stop))
    });
    let board = demo
        .then(|| -> anyhow::Result<_> {
            let board = Arc::new(Mutex::new(Board::default()));
            let topics = BoardTopics {
                alerts: config.kafka.alerts_topic.clone(),
                slo: config.kafka.slo_topic.clone(),
                incidents: config.kafka.incidents_topic.clone(),
                decisions: config.kafka.decisions_topic.clone(),
            };
            let thread = subscription::spawn(&client, topics, board.clone(), shutdown.clone())
                .context("subscribing the demo summary to the alert, SLO and incident topics")?;
            Ok((board, thread))
        })
        .transpose()?;
    let summary_task = tokio::spawn(summarise(
        telemetry.clone(),
        config.clone(),
        templates.clone(),
        board.as_ref().map(|(board, _)| (board.clone(), faults)),
    ));

    let outcome = tokio::select! {
        _ = super::termination() => {
            println!("stopping: flushing buffered rows and committing offsets");
            shutdown.store(true, Ordering::Relaxed);
            source_task.await.context("pipeline thread panicked")?
        }
        result = &mut source_task => {
            shutdown.store(true, Ordering::Relaxed);
            result.context("pipeline thread panicked")?
        }
    };
    summary_task.abort();
    for thread in decision_threads {
        let _ = thread.join();
    }
    if let Some((_, thread)) = board {
        let _ = thread.join();
    }
    if let Some(task) = demo_task {
        match task.await {
            Ok(Ok(summary)) => println!("demo generator produced {} records", summary.records()),
            Ok(Err(e)) => eprintln!("demo generator: {e}"),
            Err(e) => eprintln!("demo generator panicked: {e}"),
        }
    }
    let _ = http_stop_tx.send(());
    let _ = http_task.await;
    drop(embedded);
    outcome?;
    println!("{}", totals(&telemetry, &config, &templates));
    Ok(())
}

/// Creates the dataflow's topics when missing. Brokers without CreateTopics (the
/// mock) or without permission only earn a warning.
async fn ensure_topics(client: &ClientConfig, config: &Config, declared: &Topics) {
    let admin: AdminClient<DefaultClientContext> = match client.create() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "cannot create an admin client; topics must exist already");
            return;
        }
    };
    let k = &config.kafka;
    let existing: Vec<String> = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .map(|m| m.topics().iter().map(|t| t.name().to_owned()).collect())
        .unwrap_or_default();
    let names: Vec<(String, i32)> = declared
        .to_create()
        .into_iter()
        .filter(|(t, _)| !existing.contains(t))
        .collect();
    if names.is_empty() {
        return;
    }
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|(t, partitions)| {
            NewTopic::new(
                t,
                *partitions,
                TopicReplication::Fixed(k.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    let outcome = tokio::time::timeout(
        Duration::from_secs(15),
        admin.create_topics(&topics, &options),
    )
    .await;
    let Ok(outcome) = outcome else {
        tracing::warn!(
            "the broker did not answer CreateTopics within 15s; topics must exist already"
        );
        return;
    };
    match outcome {
        Ok(results) => {
            for result in results {
                match result {
                    Ok(topic) => tracing::info!(%topic, "created topic"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((topic, code)) => {
                        tracing::warn!(%topic, error = %code, "could not create topic")
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not create topics; they must exist already"),
    }
}

fn totals(telemetry: &Telemetry, config: &Config, templates: &TemplateCatalog) -> String {
    let k = &config.kafka;
    let (files, bytes) = telemetry.archive_totals();
    format!(
        "in: metrics {} logs {} spans {} | dead-lettered {} | archived rows: metrics {} logs {} spans {} dlq {} | archive {} files, {:.1} MB | log templates {} | RED minutes {} graph edges {} SLO statuses {} | alerts fired {} resolved {}",
        telemetry.records_from(&k.metrics_topic),
        telemetry.records_from(&k.logs_topic),
        telemetry.records_from(&k.spans_topic),
        telemetry.dead_lettered(),
        telemetry.archived_rows("metrics"),
        telemetry.archived_rows("logs"),
        telemetry.archived_rows("spans"),
        telemetry.archived_rows("dlq"),
        files,
        bytes as f64 / 1e6,
        templates.per_service().values().sum::<usize>(),
        telemetry.archived_rows("red"),
        telemetry.archived_rows("service_graph"),
        telemetry.archived_rows("slo"),
        telemetry.alerts_raised("firing"),
        telemetry.alerts_raised("resolved"),
    )
}

/// Every 5 s: with the demo's board, the on-call summary (redrawn in place on a
/// terminal, appended as plain text otherwise); without it, one line of totals.
async fn summarise(
    telemetry: Arc<Telemetry>,
    config: Config,
    templates: Arc<TemplateCatalog>,
    board: Option<(Arc<Mutex<Board>>, Vec<gen::incidents::Incident>)>,
) {
    let terminal = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = chrono::Utc::now();
        let Some((board, faults)) = &board else {
            let ready = match telemetry.readiness() {
                Ok(()) => "ready".to_owned(),
                Err(reason) => format!("not ready ({reason})"),
            };
            println!(
                "[{}] {ready} | {}",
                now.format("%H:%M:%S"),
                totals(&telemetry, &config, &templates)
            );
            continue;
        };
        let k = &config.kafka;
        let frame = Frame {
            now_ms: now.timestamp_millis(),
            not_ready: telemetry.readiness().err(),
            records_in: [&k.metrics_topic, &k.logs_topic, &k.spans_topic]
                .map(|topic| telemetry.records_from(topic)),
            dead_lettered: telemetry.dead_lettered(),
            archive: telemetry.archive_totals(),
            templates: templates.per_service(),
            faults: faults.clone(),
            notices: telemetry.notices(),
        };
        let style = if terminal {
            Style::Terminal
        } else {
            Style::Plain
        };
        let Ok(text) = board.lock().map(|board| board.render(&frame, style)) else {
            return;
        };
        let mut stdout = std::io::stdout().lock();
        if terminal {
            // Lines cut at the terminal's width (a wrapped table is unreadable), then
            // home and clear and the frame: the summary stays in place.
            let (_, columns) = console::Term::stdout().size();
            let text: String = text
                .lines()
                .map(|line| {
                    format!(
                        "{}\n",
                        console::truncate_str(line, usize::from(columns), "…")
                    )
                })
                .collect();
            let _ = write!(stdout, "\x1b[H\x1b[2J{text}");
        } else {
            let _ = writeln!(stdout, "{text}");
        }
        let _ = stdout.flush();
    }
}

/// Keeps the config this run uses beside the archive (`_cara/config.toml`), so that
/// `cara backtest replay` replays the archive through the same dataflow by default.
/// The HTTP token is left out.
fn record_config(config: &Config) -> anyhow::Result<()> {
    let path = ArchiveLayout::new(&config.archive.dir).run_config_file();
    let mut kept = config.clone();
    kept.http.token = String::new();
    let text = toml::to_string_pretty(&kept).context("writing the config as TOML")?;
    write_bytes_atomically(&path, text.as_bytes())
        .with_context(|| format!("recording the config in {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo's own configuration parses and validates, and its policy sends
    /// a fault to a rollback and a capacity forecast to a scale-out, not the other
    /// way round.
    #[test]
    fn the_demo_configuration_is_valid_and_its_policy_tells_faults_from_forecasts() {
        for text in [DEMO_POLICY, DEMO_SLOS, DEMO_COST, DEMO_CAPACITY] {
            Config::from_toml(text).expect("the demo's config is valid");
        }
        let policies = Config::from_toml(DEMO_POLICY).expect("valid").policies;
        let settings = Config::default()
            .decisions
            .settings(&policies)
            .expect("a policy");
        let incident = |rules: &[&str]| cara_operators::incidents::IncidentRecord {
            id: "inc-1".into(),
            status: cara_operators::incidents::IncidentStatus::Open,
            at: 0,
            opened_at: 0,
            resolved_at: None,
            severity: "ticket".into(),
            alert_ids: vec!["a1".into()],
            rules: rules.iter().map(|r| (*r).to_owned()).collect(),
            services: vec!["shipping".into()],
            probable_root_cause: vec![cara_operators::incidents::Cause {
                service: "shipping".into(),
                score: 0.9,
                reasons: Vec::new(),
            }],
            merged_into: None,
            summary: String::new(),
        };
        let actions = |rules: &[&str]| -> Vec<String> {
            let incident = incident(rules);
            settings
                .rules
                .iter()
                .filter(|r| r.matches(&incident))
                .map(|r| format!("{} {}", r.action, r.target_for(&incident)))
                .collect()
        };
        assert_eq!(
            actions(&["metric_anomaly"]),
            ["open_ticket shipping", "rollback deploy/shipping"]
        );
        assert_eq!(
            actions(&["capacity"]),
            ["open_ticket shipping", "scale_out volume/shipping"]
        );
    }
}
