//! `cara backtest`: replays of recorded data through the live operators.

use anyhow::Context;
use cara_operators::alert::FiringPolicy;
use cara_operators::anomaly::ScorerConfig;
use cara_pipeline::backtest::nab;
use indicatif::{ProgressBar, ProgressStyle};

use super::NabArgs;

/// Scores every NAB file and prints the three profiles beside the scoreboard.
pub fn nab(args: NabArgs) -> anyhow::Result<()> {
    let corpus = nab::load(&args.data).with_context(|| {
        format!(
            "loading NAB from {}; pass --data with the directory holding data/ and labels/",
            args.data.display()
        )
    })?;
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
    let deployed = nab::score_at(&corpus, &scores, &policy);
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
