//! The `cara` command line: `run`, `broker`, `gen`, `sql` and `config`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// cara reads metrics, logs and spans from Kafka, archives every record to Parquet
/// exactly once, scores anomalies, SLO burn rates and log patterns as it goes, and
/// writes alerts to Kafka. Query the archive with `cara sql`.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Start here:\n  cara run --demo                 embedded broker, pipeline and a generator with injected faults\n  cara sql \"SELECT * FROM alerts\"   query the archive it wrote (./cara-archive)\n  cara config defaults            every setting with its default"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pipeline: Kafka in, Parquet archive out. Without --brokers, starts an
    /// embedded broker on 127.0.0.1:9092.
    Run(RunArgs),
    /// Run only the embedded Kafka-protocol broker.
    Broker(BrokerArgs),
    /// Produce realistic, seeded telemetry with injected incidents.
    Gen(GenArgs),
    /// Run a read-only SQL query over the archive.
    Sql(SqlArgs),
    /// Check or print configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Replay recorded data through cara's operators and score the outcome.
    #[command(subcommand)]
    Backtest(BacktestCommand),
    /// Check the audit trail of decisions.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Verify the archived audit trail's hash chain; exits 1 naming the first
    /// edited, dropped, inserted or reordered entry.
    Verify {
        /// The archive (written by `cara run`).
        #[arg(long, default_value = "cara-archive")]
        archive: PathBuf,
        /// The environment variable holding the audit key (`decisions.audit_key_env`).
        #[arg(long, default_value = "CARA_AUDIT_KEY")]
        key_env: String,
    },
    /// Write the compliance summary of the decisions proposed in a time range:
    /// outcomes per policy and risk, who approved or rejected what and how fast,
    /// expiries and escalations, failed actions.
    Report {
        /// The archive (written by `cara run`).
        #[arg(long, default_value = "cara-archive")]
        archive: PathBuf,
        /// Decisions proposed at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Decisions proposed before this time (RFC 3339).
        #[arg(long)]
        to: Option<String>,
        /// `md` or `html`.
        #[arg(long, default_value = "md")]
        format: String,
        /// Write it here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The environment variable holding the audit key, to say whether the trail
        /// verifies.
        #[arg(long, default_value = "CARA_AUDIT_KEY")]
        key_env: String,
    },
}

#[derive(Subcommand, Debug)]
enum BacktestCommand {
    /// Score the anomaly detectors on the Numenta Anomaly Benchmark.
    Nab(NabArgs),
    /// Score the alerts on generated telemetry against the injected incidents.
    Gen(GenBacktestArgs),
    /// Score the log template miner on Loghub 2k (grouping accuracy per system).
    Loghub(LoghubArgs),
    /// Score the capacity forecaster on NAB's utilisation series: MASE against
    /// repeating yesterday and the intervals' coverage, per horizon.
    Forecast(ForecastArgs),
    /// Replay an archive through the dataflow (the same operators as `cara run`,
    /// built from --config) into a new archive, for comparing with the live outputs.
    Replay(ReplayArgs),
}

#[derive(clap::Args, Debug)]
struct ReplayArgs {
    /// The archive to replay (written by `cara run`).
    #[arg(long, default_value = "cara-archive")]
    archive: PathBuf,
    /// Where the replay's archive goes: a new or empty directory. Query it with
    /// `cara sql --archive OUT`.
    #[arg(long)]
    out: PathBuf,
    /// Config whose dataflow to replay: a changed one shows what it would have done
    /// [default: the live run's, recorded in ARCHIVE/_cara/config.toml].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Replay only records at or after this event time (RFC 3339); the operators
    /// start afresh at the first one.
    #[arg(long)]
    from: Option<String>,
    /// Replay only records before this event time (RFC 3339).
    #[arg(long)]
    to: Option<String>,
    /// After the replay, print the alerts added, removed and changed against this
    /// archive, per rule and service, and write each to OUT/_cara/compare/alerts.csv
    /// [default when given without a value: ARCHIVE].
    #[arg(long, num_args = 0..=1, value_name = "DIR")]
    compare: Option<Option<PathBuf>>,
    /// Score the replay's alerts against these labelled incidents (JSON lines, as
    /// `cara gen --labels` writes): precision, recall, F1 and time to detect per kind,
    /// printed, written to OUT/_cara/labels.md and shown in the report.
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Seconds after an incident's end during which an alert still detects it.
    #[arg(long, default_value_t = 120)]
    grace: u64,
}

#[derive(clap::Args, Debug)]
struct LoghubArgs {
    /// Loghub 2k directory: one folder per system with `X_2k.log`,
    /// `X_2k.log_structured_corrected.csv` and `formats.json` (the 2k samples of the
    /// logpai/loghub repository, corrected ground truth from logpai/logparser).
    #[arg(long, default_value = "../shared/datasets/loghub2k")]
    data: PathBuf,
    /// Miner tuning as TOML, overriding defaults (`similarity = 0.6`).
    #[arg(long)]
    miner: Option<String>,
    /// Also list the true events of this system that the miner grouped wrongly.
    #[arg(long)]
    explain: Option<String>,
    /// Also score the template ids a deployed `cara run` gave the lines (CSV
    /// `system,line,template_id`; see `benches/loghub_deployed.py`) beside the
    /// backtest.
    #[arg(long)]
    assignments: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct GenBacktestArgs {
    /// Services in the simulated system.
    #[arg(long, default_value_t = 8)]
    services: usize,
    /// Hours of event time to simulate.
    #[arg(long, default_value_t = 6.0)]
    hours: f64,
    /// Seed of the world and of the incidents.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Seconds after an incident's end during which an alert still detects it.
    #[arg(long, default_value_t = 120)]
    grace: u64,
    /// Configuration file whose stages (anomaly, logs, traces, SLOs) to run.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Also write every alert transition (firing and resolved) here, as JSON lines.
    #[arg(long)]
    alerts: Option<PathBuf>,
    /// Also write the injected incidents here, as `cara gen --labels` does.
    #[arg(long)]
    incidents: Option<PathBuf>,
    /// Also write every incident transition cara made of the alerts here, as JSON
    /// lines.
    #[arg(long)]
    cara_incidents: Option<PathBuf>,
    /// Feed the dataflow the world in this format (OTLP goes through the OTLP
    /// decoders, as from a Collector): the alerts must not depend on it.
    #[arg(long, value_enum, default_value_t = cara_pipeline::gen::otlp::GenFormat::FlatJson)]
    format: cara_pipeline::gen::otlp::GenFormat,
}

#[derive(clap::Args, Debug)]
struct NabArgs {
    /// NAB directory with `data/` and `labels/` (a checkout of the numenta/NAB
    /// repository has both).
    #[arg(long, default_value = "../shared/datasets/nab")]
    data: PathBuf,
    /// Detector tuning as TOML, overriding defaults (`level_alpha = 0.01`).
    #[arg(long)]
    scorer: Option<String>,
    /// Alert firing policy as TOML (`resolve_after_ms = 3600000`); the threshold is swept.
    #[arg(long)]
    policy: Option<String>,
    /// Also print each file's standard score at the best standard threshold.
    #[arg(long)]
    per_file: bool,
    /// Also score the alerts a deployed `cara run` raised on the NAB series (one
    /// JSON alert per line, as consumed from `cara.alerts`; see
    /// `benches/nab_deployed.py`) beside the backtest at the same policy.
    #[arg(long)]
    alerts: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ForecastArgs {
    /// NAB directory with `data/` and `labels/`.
    #[arg(long, default_value = "../shared/datasets/nab")]
    data: PathBuf,
    /// The share of each series learnt before forecasts are scored.
    #[arg(long, default_value_t = 0.6)]
    train: f64,
    /// Only cara's forecaster (not the alternatives it was chosen against).
    #[arg(long)]
    only_cara: bool,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Kafka bootstrap servers; empty starts the embedded broker.
    #[arg(long)]
    brokers: Option<String>,
    /// Archive directory [default: archive.dir of --config, else ./cara-archive].
    #[arg(long)]
    archive: Option<PathBuf>,
    /// HTTP listen address for /healthz, /readyz, /metrics, /api/templates and
    /// /api/graph [default: http.listen of --config, else 127.0.0.1:9898].
    #[arg(long)]
    http: Option<SocketAddr>,
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Consumer group id.
    #[arg(long)]
    group: Option<String>,
    /// Also run the generator against the embedded broker and summarise what happens.
    #[arg(long)]
    demo: bool,
    /// Records per second the demo generator produces.
    #[arg(long, default_value_t = 2000)]
    demo_rate: u64,
    /// How the demo generator writes: flat JSON to the telemetry topics, or OTLP
    /// (as an OpenTelemetry Collector would) to the OTLP topics.
    #[arg(long, value_enum, default_value_t = cara_pipeline::gen::otlp::GenFormat::FlatJson)]
    demo_format: cara_pipeline::gen::otlp::GenFormat,
}

#[derive(clap::Args, Debug)]
struct BrokerArgs {
    /// Bootstrap address to listen on.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// TOML configuration file (its `[embedded_broker]` and `[kafka]` topic names apply).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct GenArgs {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Records per second (0: as fast as possible).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Records per second of event time, when it is not --rate: with --rate 0,
    /// hours of telemetry at a realistic density produced in minutes (a backfill
    /// to backtest over) [default: --rate, or 10000 when --rate is 0].
    #[arg(long)]
    event_rate: Option<u64>,
    /// Stop after this many records.
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,
    /// Stop after this long (e.g. 60s, 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// Number of services.
    #[arg(long, default_value_t = 8)]
    services: usize,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Write the injected incidents (ground truth) to this JSON-lines file.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Event time of the first record (RFC 3339); default now.
    #[arg(long)]
    start: Option<String>,
    /// Topic prefix for metrics, logs and spans in flat JSON.
    #[arg(long, default_value = "telemetry.")]
    topic_prefix: String,
    /// How to write the records: cara's flat JSON, or OpenTelemetry export
    /// requests as the Collector's Kafka exporter writes them (to topics
    /// otlp_metrics, otlp_logs, otlp_spans).
    #[arg(long, value_enum, default_value_t = cara_pipeline::gen::otlp::GenFormat::FlatJson)]
    format: cara_pipeline::gen::otlp::GenFormat,
    /// Extra librdkafka properties, key=value (repeatable; after --config's).
    #[arg(long = "property", short = 'X')]
    properties: Vec<String>,
    /// TOML configuration file whose `kafka.client_properties` and
    /// `kafka.client_properties_env` apply, as they do to `cara run`'s clients.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct SqlArgs {
    /// Archive directory, or an object-store URL read in place (s3://bucket/prefix,
    /// gs://…, az://…; credentials, region and endpoint from the environment as the
    /// cloud's SDKs read them, e.g. AWS_ACCESS_KEY_ID, AWS_REGION, AWS_ENDPOINT).
    #[arg(long, default_value = "cara-archive")]
    archive: String,
    /// Output format: table, csv or json.
    #[arg(long, default_value = "table")]
    format: cara_sql::OutputFormat,
    /// Stop the query after this long (e.g. 30s, 5m).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// Memory the query's sorts, aggregations and joins may use, MiB.
    #[arg(long, default_value_t = 1024)]
    memory_mib: usize,
    /// Largest result held and printed, MiB.
    #[arg(long, default_value_t = 256)]
    max_result_mib: usize,
    /// The query.
    query: String,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate a configuration file.
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Print every setting with its default value.
    Defaults,
}

/// Turns transparent huge pages off for this process. mimalloc asks for them; the
/// memory it frees and reuses is then faulted back 2 MiB at a time, each zeroed by
/// the kernel. In the end-to-end bench that zeroing was 15% of cara's CPU (0.74 of
/// 4.9 s), and 0.03 s without huge pages. Databases give the same advice.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(%error, "could not turn transparent huge pages off");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo draws its own summary; only warnings interrupt it.
    let demo = matches!(&cli.command, Command::Run(args) if args.demo);
    commands::init_tracing(if demo { "warn" } else { "info" });
    disable_transparent_huge_pages();
    let result = match cli.command {
        Command::Run(args) => commands::run::main(args),
        Command::Broker(args) => commands::broker::main(args),
        Command::Gen(args) => commands::gen::main(args),
        Command::Sql(args) => commands::sql::main(args),
        Command::Backtest(BacktestCommand::Nab(args)) => commands::backtest::nab(args),
        Command::Backtest(BacktestCommand::Forecast(args)) => commands::backtest::forecast(args),
        Command::Backtest(BacktestCommand::Gen(args)) => commands::backtest::generated(args),
        Command::Backtest(BacktestCommand::Loghub(args)) => commands::backtest::loghub(args),
        Command::Backtest(BacktestCommand::Replay(args)) => commands::backtest::replay(args),
        Command::Audit(AuditCommand::Verify { archive, key_env }) => {
            commands::audit::verify(&archive, &key_env)
        }
        Command::Audit(AuditCommand::Report {
            archive,
            from,
            to,
            format,
            out,
            key_env,
        }) => commands::audit::report(&archive, from, to, &format, out, &key_env),
        Command::Config(ConfigCommand::Check { file }) => commands::config::check(&file),
        Command::Config(ConfigCommand::Defaults) => {
            print!("{}", cara_pipeline::config::Config::defaults_toml());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
