//! `cara backtest`: replays of recorded data through the live operators.

use anyhow::Context;
use cara_operators::alert::FiringPolicy;
use cara_operators::anomaly::ScorerConfig;
use cara_pipeline::backtest::nab;
use cara_pipeline::config::Config;
use cara_pipeline::dataflow::{Dataflow, Stages};
use cara_pipeline::decode::Signal;
use indicatif::{ProgressBar, ProgressStyle};

use cara_pipeline::backtest::generated::{self, GeneratedRun};

use cara_pipeline::archive::layout::{write_bytes_atomically, ArchiveLayout};
use cara_pipeline::backtest::{compare, episodes, labels, replay, report};
use cara_pipeline::gen::incidents::{write_json_lines, Incident};

use super::{ForecastArgs, GenBacktestArgs, LoghubArgs, NabArgs, ReplayArgs};

/// Every NAB series under `dir`, or an error saying what to pass.
fn load_nab(dir: &std::path::Path) -> anyhow::Result<Vec<nab::NabSeries>> {
    nab::load(dir).with_context(|| {
        format!(
            "loading NAB from {}; pass --data with the directory holding data/ and labels/",
            dir.display()
        )
    })
}

/// Scores the capacity forecaster on NAB's utilisation series and prints the
/// per-series table and one summary row per model compared.
pub fn forecast(args: ForecastArgs) -> anyhow::Result<()> {
    use cara_pipeline::backtest::forecast::{self as scoring, ForecastRun};
    anyhow::ensure!(
        args.train > 0.0 && args.train < 1.0,
        "--train {}: the share learnt before scoring must be between 0 and 1 (0.6 learns the first 60%)",
        args.train
    );
    let corpus: Vec<nab::NabSeries> = load_nab(&args.data)?
        .into_iter()
        .filter(|s| scoring::utilisation_series(&s.name))
        .collect();
    let run = ForecastRun {
        train: args.train,
        ..ForecastRun::default()
    };
    let mut models = scoring::models();
    if args.only_cara {
        models.truncate(1);
    }
    let progress = ProgressBar::new((corpus.len() * models.len()) as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} series x models {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let mut summaries = Vec::new();
    let mut first_table = None;
    for (name, bank) in &models {
        let mut scores = Vec::with_capacity(corpus.len());
        for series in &corpus {
            progress.set_message(series.name.clone());
            scores.push(scoring::score_series(series, &run, bank));
            progress.inc(1);
        }
        if first_table.is_none() {
            let bytes = scores.iter().map(|s| s.state_bytes).max().unwrap_or(0);
            first_table = Some((scoring::series_table(&scores, &run), bytes));
        }
        summaries.push(scoring::summary_row(name, &scores));
    }
    progress.finish_and_clear();
    println!(
        "Capacity forecast on {} NAB series: the first {:.0}% learnt, then an origin every hour; MASE = the forecast's mean absolute error over repeating yesterday's on the same origins (below 1: better); coverage of the {:.0}% intervals ({:.2?})\n",
        corpus.len(),
        run.train * 100.0,
        run.coverage * 100.0,
        started.elapsed()
    );
    if let Some((table, bytes)) = first_table {
        println!("{table}");
        println!("Forecaster state: at most {bytes} bytes per series\n");
    }
    print!("{}", scoring::summary_header(&run));
    for row in summaries {
        println!("{row}");
    }
    Ok(())
}

/// Scores every NAB file and prints the three profiles beside the scoreboard.
pub fn nab(args: NabArgs) -> anyhow::Result<()> {
    let corpus = load_nab(&args.data)?;
    let config: ScorerConfig = match &args.scorer {
        Some(text) => toml::from_str(text).context("--scorer: detector tuning as TOML")?,
        None => ScorerConfig::default(),
    };
    let policy: FiringPolicy = match &args.policy {
        Some(text) => toml::from_str(text).context("--policy: firing policy as TOML")?,
        None => FiringPolicy::default(),
    };
    let progress = ProgressBar::new(corpus.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} files {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let mut scores = Vec::with_capacity(corpus.len());
    let mut points = 0usize;
    for series in &corpus {
        progress.set_message(series.name.clone());
        scores.push(nab::score_series(series, &config));
        points += series.times.len();
        progress.inc(1);
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed();
    let results = nab::evaluate(&corpus, &scores, &policy);
    println!(
        "NAB: {} files, {points} points, decoded and scored in {:.2?}",
        corpus.len(),
        elapsed
    );
    let detected = nab::detect_corpus(&corpus, &scores, &policy);
    let deployed = nab::score_detections(&corpus, &detected);
    println!(
        "| profile | cara, best threshold | threshold | cara at {} (as deployed) | Numenta HTM | Skyline | KNN CAD |",
        policy.threshold
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let board = [(70.1, 58.2, 58.0), (63.1, 46.2, 43.4), (74.3, 63.8, 64.8)];
    for ((r, at), (htm, skyline, knn)) in results.iter().zip(&deployed).zip(board) {
        println!(
            "| {} | {:.1} | {:.3} | {at:.1} | {htm} | {skyline} | {knn} |",
            r.profile.name, r.score, r.threshold
        );
    }
    if let Some(path) = &args.alerts {
        compare_deployed(path, &corpus, &detected, &policy, &deployed)?;
    }
    if args.per_file {
        let standard = &results[0];
        let policy = FiringPolicy {
            threshold: standard.threshold,
            ..policy
        };
        println!("\n| file | windows | detected in window | outside | standard raw |");
        println!("| --- | ---: | ---: | ---: | ---: |");
        for (series, scores) in corpus.iter().zip(&scores) {
            let detected = nab::detections(&series.times, scores, &policy);
            let probation = series.labels.probation();
            let inside = |i: &usize| {
                series
                    .labels
                    .windows
                    .iter()
                    .any(|(a, b)| (a..=b).contains(&i))
            };
            let hit = series
                .labels
                .scored_windows()
                .filter(|(a, b)| detected.iter().any(|i| (a..=b).contains(&i)))
                .count();
            let outside = detected
                .iter()
                .filter(|i| **i >= probation && !inside(i))
                .count();
            let raw =
                cara_operators::eval::nab::file_score(&series.labels, &detected, &standard.profile);
            println!(
                "| {} | {} | {hit} | {outside} | {raw:.2} |",
                series.name,
                series.labels.scored_windows().count()
            );
        }
    }
    Ok(())
}

/// Prints the NAB scores of the alerts a deployed run raised (file `path`) beside
/// the backtest's at `policy` (its detections `detected`, its scores `backtest`),
/// and the series whose detections differ.
fn compare_deployed(
    path: &std::path::Path,
    corpus: &[nab::NabSeries],
    detected: &[Vec<usize>],
    policy: &FiringPolicy,
    backtest: &[f64],
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading alerts from {}; pass --alerts with the alerts consumed from cara.alerts, one JSON per line",
            path.display()
        )
    })?;
    let found = nab::detections_from_alerts(corpus, &text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let deployed = nab::score_detections(corpus, &found.detected);
    println!(
        "\nDeployed path: {} firing alerts read from {}, {} not on a NAB row",
        found.firing,
        path.display(),
        found.unmatched
    );
    println!(
        "| profile | backtest at {} | deployed path | difference |",
        policy.threshold
    );
    println!("| --- | ---: | ---: | ---: |");
    for ((profile, b), d) in cara_operators::eval::nab::PROFILES
        .iter()
        .zip(backtest)
        .zip(&deployed)
    {
        println!("| {} | {b:.1} | {d:.1} | {:+.1} |", profile.name, d - b);
    }
    let mut differing = 0;
    for ((series, bench), live) in corpus.iter().zip(detected).zip(&found.detected) {
        if bench == live {
            continue;
        }
        differing += 1;
        let only = |a: &[usize], b: &[usize]| -> Vec<usize> {
            a.iter().filter(|r| !b.contains(r)).copied().collect()
        };
        println!(
            "  {}: rows only in the backtest {:?}, only deployed {:?}",
            series.name,
            only(bench, live),
            only(live, bench)
        );
    }
    println!("{differing} of {} series detect differently", corpus.len());
    Ok(())
}

/// Simulates the generator's world, scores its metrics like the shards do, and
/// matches the alerts against the injected incidents.
pub fn generated(args: GenBacktestArgs) -> anyhow::Result<()> {
    let mut config = super::load_config(args.config.as_deref())?;
    if config.policies.is_empty() && config.incidents.enabled {
        config.policies = Config::from_toml(generated::NOTIFY_POLICY)?.policies;
        println!("policy: none configured; deciding with one low-risk `notify` action per incident, to time the decisions");
    }
    let run = GeneratedRun {
        services: args.services,
        seed: args.seed,
        span_ms: (args.hours * 3_600_000.0) as i64,
        grace_ms: args.grace as i64 * 1000,
        format: args.format,
        ..GeneratedRun::default()
    };
    let started = std::time::Instant::now();
    let dataflow = Dataflow::declare(&config)?;
    let report = generated::evaluate(&run, &dataflow);
    let records = |signal| report.consumed.records.get(&signal).copied().unwrap_or(0);
    println!(
        "generated: {} services, {:.1} h of event time, seed {}: {} metric points, {} spans and {} log lines through the dataflow in {:.1?}",
        run.services,
        args.hours,
        run.seed,
        records(Signal::Metrics),
        records(Signal::Spans),
        records(Signal::Logs),
        started.elapsed()
    );
    print!("{}", report.score.to_markdown());
    if !report.incidents.is_empty() {
        println!("\nincidents (alerts correlated by time and service graph) per injected fault:\n");
        print!("{}", report.incident_score.to_markdown());
    }
    if let Some(path) = &args.cara_incidents {
        write_json_lines(path, &report.incidents)
            .with_context(|| format!("--cara-incidents {}", path.display()))?;
        println!(
            "{} incident transitions written to {}",
            report.incidents.len(),
            path.display()
        );
    }
    if let Some(path) = &args.alerts {
        write_json_lines(path, &report.transitions)
            .with_context(|| format!("--alerts {}", path.display()))?;
        println!(
            "{} alert transitions written to {}",
            report.transitions.len(),
            path.display()
        );
    }
    if let Some(path) = &args.incidents {
        let incidents = report.score.detections.iter().map(|d| &d.incident);
        write_json_lines(path, incidents)
            .with_context(|| format!("--incidents {}", path.display()))?;
        println!(
            "{} incidents written to {}",
            report.score.detections.len(),
            path.display()
        );
    }
    Ok(())
}

/// Mines every Loghub 2k system with one configuration and prints the accuracies
/// beside Drain's published figures.
pub fn loghub(args: LoghubArgs) -> anyhow::Result<()> {
    use cara_operators::logs::MinerConfig;
    use cara_pipeline::backtest::loghub;
    let config: MinerConfig = match &args.miner {
        Some(text) => toml::from_str(text).context("--miner: template miner tuning as TOML")?,
        None => MinerConfig::default(),
    };
    config.validate().context("--miner")?;
    let corpus = loghub::load(&args.data).with_context(|| {
        format!(
            "loading Loghub 2k from {}; pass --data with the directory holding one folder per system",
            args.data.display()
        )
    })?;
    if let Some(system) = &args.explain {
        let log = corpus
            .iter()
            .find(|l| l.system.eq_ignore_ascii_case(system))
            .with_context(|| format!("--explain {system}: not a Loghub 2k system"))?;
        for text in loghub::explain(log, &config) {
            print!("{text}");
        }
        return Ok(());
    }
    let results: Vec<_> = corpus
        .iter()
        .map(|log| loghub::evaluate(log, &config))
        .collect();
    println!("| system | GA corrected | GA original | Drain GA (published) | pairwise F1 | template accuracy | templates |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &results {
        println!(
            "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} |",
            r.system,
            r.corrected.grouping,
            r.original.grouping,
            r.published,
            r.corrected.pairwise_f1,
            r.template_accuracy,
            r.templates
        );
    }
    let n = results.len() as f64;
    let mean = |f: &dyn Fn(&loghub::SystemResult) -> f64| results.iter().map(f).sum::<f64>() / n;
    println!(
        "| **average** | **{:.4}** | **{:.4}** | {:.4} | {:.4} | {:.4} | |",
        mean(&|r| r.corrected.grouping),
        mean(&|r| r.original.grouping),
        mean(&|r| r.published),
        mean(&|r| r.corrected.pairwise_f1),
        mean(&|r| r.template_accuracy),
    );
    if let Some(path) = &args.assignments {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading {}; pass --assignments with the CSV benches/loghub_deployed.py writes",
                path.display()
            )
        })?;
        let assigned = loghub::read_assignments(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        println!("\nDeployed path ({}):", path.display());
        println!("| system | GA backtest | GA deployed | difference | lines assigned |");
        println!("| --- | ---: | ---: | ---: | ---: |");
        let empty = Default::default();
        let mut sums = (0.0, 0.0);
        for (log, r) in corpus.iter().zip(&results) {
            let ids = assigned.get(&log.system).unwrap_or(&empty);
            let deployed = loghub::score_assignments(log, ids);
            sums.0 += r.corrected.grouping;
            sums.1 += deployed.grouping;
            println!(
                "| {} | {:.4} | {:.4} | {:+.4} | {} |",
                log.system,
                r.corrected.grouping,
                deployed.grouping,
                deployed.grouping - r.corrected.grouping,
                ids.len()
            );
        }
        let n = results.len() as f64;
        println!(
            "| **average** | **{:.4}** | **{:.4}** | {:+.4} | |",
            sums.0 / n,
            sums.1 / n,
            (sums.1 - sums.0) / n
        );
    }
    let lines: usize = corpus.iter().map(|l| l.lines.len()).sum();
    let mining: std::time::Duration = results.iter().map(|r| r.mining).sum();
    println!(
        "{lines} lines mined in {mining:.2?} ({:.0} lines/s on one core, including first-sight allocation)",
        lines as f64 / mining.as_secs_f64()
    );
    Ok(())
}

/// Replays an archive through the config's dataflow into a new archive.
pub fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    // By default, the config the live run recorded beside its archive.
    let recorded = ArchiveLayout::new(&args.archive).run_config_file();
    let config_file = args
        .config
        .clone()
        .or_else(|| recorded.is_file().then_some(recorded));
    let config = super::load_config(config_file.as_deref())?;
    match &config_file {
        Some(file) => println!("config: {}", file.display()),
        None => println!("config: the defaults (no --config, and the archive records none)"),
    }
    let dataflow = Dataflow::declare(&config)?;
    // The archived exchange records, unless this config's first stages send others
    // (without --config the replay runs the recorded config itself).
    let live_stages = match &args.config {
        Some(_) => recorded_stages(&args.archive)?,
        None => None,
    };
    let exchange = match live_stages {
        Some(live) if !dataflow.stages.sends_as(&live) => {
            println!("exchange: the SLO, trace, log or alert settings differ from the live run's: the second stages read the records this replay's first stages send");
            replay::ExchangeSource::InProcess
        }
        _ => replay::ExchangeSource::Archived,
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} flushes, {msg} [{elapsed_precise}, ETA {eta}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let time = |flag: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(|v| super::event_time_ms(flag, v))
            .transpose()
    };
    let range = replay::EventRange {
        from_ms: time("--from", &args.from)?,
        to_ms: time("--to", &args.to)?,
    };
    // The labels are read first: a bad file is reported before the replay runs.
    let incidents: Option<Vec<Incident>> = match &args.labels {
        Some(file) => Some(
            labels::read_labels(file)?
                .into_iter()
                .filter(|i| {
                    range.from_ms.is_none_or(|from| i.end_ms > from)
                        && range.to_ms.is_none_or(|to| i.start_ms < to)
                })
                .collect(),
        ),
        None => None,
    };
    let summary = replay::replay(
        &args.archive,
        &args.out,
        &dataflow,
        exchange,
        range,
        config.archive.zstd_level,
        |at| {
            bar.set_length(at.total as u64);
            bar.set_position(at.done as u64);
            let rate = at.records as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let time = at
                .event_time_ms
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default();
            bar.set_message(format!("{:.0} records/s, event time {time}", rate));
        },
    )
    .with_context(|| format!("replaying {}", args.archive.display()))?;
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    println!(
        "replayed {} records of {} partitions ({} flushes, {} recorded watermark raises) in {:.1?} ({:.0} records/s): {} alert transitions, {} files in {}",
        summary.records,
        summary.partitions,
        summary.flushes,
        summary.raises,
        elapsed,
        summary.records as f64 / elapsed.as_secs_f64().max(1e-9),
        summary.alerts,
        summary.files,
        args.out.display()
    );
    println!(
        "time over all workers: reading {:.2?}, operators {:.2?}, writing {:.2?}",
        summary.spent.reading, summary.spent.operators, summary.spent.writing
    );
    let episodes = episodes::read_episodes(&args.out)
        .with_context(|| format!("reading the replay's alerts in {}", args.out.display()))?;
    let compared_with = args
        .compare
        .clone()
        .flatten()
        .unwrap_or_else(|| args.archive.clone());
    let diff = compare::compare_alerts(&compared_with, &args.out)
        .with_context(|| format!("comparing the alerts with {}", compared_with.display()))?;
    if args.compare.is_some() {
        print_diff(&args.out, &compared_with, &diff)?;
    } else {
        println!(
            "compare with the live run: add --compare, or query both with cara sql --archive {} (and --archive {})",
            args.out.display(),
            args.archive.display()
        );
    }
    let labelled = match (&args.labels, incidents) {
        (Some(file), Some(incidents)) => {
            let score = labels::score_alerts(
                &labels::fired(&episodes),
                &incidents,
                args.grace as i64 * 1000,
            );
            let table = score.to_markdown();
            let written = args.out.join("_cara").join("labels.md");
            write_note(&written, &table)?;
            println!(
                "against {} ({} incidents):",
                file.display(),
                incidents.len()
            );
            print!("{table}");
            Some((incidents, score))
        }
        _ => None,
    };
    let report_started = std::time::Instant::now();
    let page = report::write_report(&report::ReportInputs {
        archive: &args.archive,
        out: &args.out,
        config_file: config_file.as_deref(),
        dataflow: &dataflow,
        range,
        summary: &summary,
        episodes: &episodes,
        diff: &diff,
        compared_with: &compared_with,
        labels: labelled.as_ref().map(|(i, s)| (i.as_slice(), s)),
    })
    .context("writing the report")?;
    println!(
        "report: {} (written in {:.1?})",
        page.display(),
        report_started.elapsed()
    );
    Ok(())
}

/// The stages of the config the live run recorded beside `archive`, if it did.
fn recorded_stages(archive: &std::path::Path) -> anyhow::Result<Option<Stages>> {
    let recorded = ArchiveLayout::new(archive).run_config_file();
    if !recorded.is_file() {
        return Ok(None);
    }
    let config = super::load_config(Some(&recorded))?;
    Ok(Some(Stages::from_config(&config)))
}

/// Writes a small text file under the replay's archive (its directory made first).
fn write_note(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    write_bytes_atomically(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Prints the alerts added, removed and changed per rule and service, and writes each
/// transition to OUT/_cara/compare/alerts.csv.
fn print_diff(
    out: &std::path::Path,
    against: &std::path::Path,
    diff: &compare::AlertDiff,
) -> anyhow::Result<()> {
    let written = out.join("_cara").join("compare").join("alerts.csv");
    write_note(
        &written,
        &diff
            .to_csv()
            .context("rendering the alert difference as CSV")?,
    )?;
    println!(
        "alerts against {}: {}",
        against.display(),
        if diff.is_empty() {
            "no difference"
        } else {
            "differences below"
        }
    );
    println!("| rule | service | added | removed | changed | same |");
    println!("|---|---|---:|---:|---:|---:|");
    for ((rule, service), c) in &diff.by_rule {
        println!(
            "| {rule} | {service} | {} | {} | {} | {} |",
            c.added, c.removed, c.changed, c.same
        );
    }
    println!("each transition: {}", written.display());
    Ok(())
}
