//! The replay's HTML report, `OUT/report.html`: one self-contained page (inline
//! SVG, no scripts) with what was replayed, per rule the alerts against the live
//! run's, the labels' score when there are labels, the timeline of alert episodes
//! (and labelled incidents) per service, and per alerting series (the
//! [`MAX_SERIES`] with the most episodes) its values and scores with its episodes.

mod plots;
mod traces;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use self::traces::{score_traces, SeriesPlace};
use super::compare::AlertDiff;
use super::episodes::Episode;
use super::labels::LabelScore;
use super::replay::{EventRange, ReplayError, ReplaySummary};
use crate::dataflow::Dataflow;
use crate::gen::incidents::Incident;

pub use plots::PlotError;

/// Series plotted at most.
pub const MAX_SERIES: usize = 12;
/// Timeline lanes at most (those with the most episodes and incidents).
pub const MAX_LANES: usize = 40;

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The archive could not be read.
    #[error(transparent)]
    Read(#[from] ReplayError),
    /// A plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// The page could not be written.
    #[error(transparent)]
    Write(#[from] crate::archive::ArchiveError),
}

/// What the report shows.
pub struct ReportInputs<'a> {
    /// The archive replayed (the live run's).
    pub archive: &'a Path,
    /// The replay's archive, where the page goes.
    pub out: &'a Path,
    /// The config file replayed, if any.
    pub config_file: Option<&'a Path>,
    /// The dataflow replayed.
    pub dataflow: &'a Dataflow,
    /// The event times replayed.
    pub range: EventRange,
    /// What the replay did.
    pub summary: &'a ReplaySummary,
    /// The replay's alert episodes.
    pub episodes: &'a [Episode],
    /// The replay's alerts against the live run's (or another archive's).
    pub diff: &'a AlertDiff,
    /// What `diff` compared with.
    pub compared_with: &'a Path,
    /// The labelled incidents and the replay's score against them.
    pub labels: Option<(&'a [Incident], &'a LabelScore)>,
}

/// Writes `OUT/report.html` and returns its path.
pub fn write_report(inputs: &ReportInputs<'_>) -> Result<PathBuf, ReportError> {
    let mut page = String::new();
    head(&mut page);
    summary_section(&mut page, inputs);
    rules_section(&mut page, inputs);
    if let Some((_, score)) = inputs.labels {
        labels_section(&mut page, score);
    }
    timeline_section(&mut page, inputs)?;
    series_section(&mut page, inputs)?;
    page.push_str("</body>\n</html>\n");
    let path = inputs.out.join("report.html");
    crate::archive::layout::write_bytes_atomically(&path, page.as_bytes())?;
    Ok(path)
}

/// `text` with the HTML metacharacters escaped.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn time_text(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map_or("—".to_owned(), |t| {
            t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        })
}

fn head(page: &mut String) {
    page.push_str(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>cara backtest replay</title>
<style>
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1040px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; } td.n { text-align: right; }
th { background: #f4f4f4; } .plot { margin: 12px 0; } .note { color: #666; font-size: 13px; }
.swatch { display: inline-block; width: 14px; height: 10px; margin: 0 4px 0 12px; }
</style>
</head>
<body>
<h1>cara backtest replay</h1>
"#,
    );
}

fn summary_section(page: &mut String, inputs: &ReportInputs<'_>) {
    let s = inputs.summary;
    let config = inputs
        .config_file
        .map_or("the defaults".to_owned(), |f| f.display().to_string());
    let _ = write!(
        page,
        "<table id=\"summary\">\n<tr><th>archive replayed</th><td>{}</td></tr>\n<tr><th>config</th><td>{}</td></tr>\n<tr><th>event time</th><td>from {} to {}</td></tr>\n<tr><th>records</th><td class=\"n\">{}</td></tr>\n<tr><th>partitions / flushes / watermark raises</th><td class=\"n\">{} / {} / {}</td></tr>\n<tr><th>alert transitions</th><td class=\"n\">{}</td></tr>\n<tr><th>output archive</th><td>{} ({} files)</td></tr>\n</table>\n",
        escape(&inputs.archive.display().to_string()),
        escape(&config),
        time_text(inputs.range.from_ms).replace('—', "the start"),
        time_text(inputs.range.to_ms).replace('—', "the end"),
        s.records,
        s.partitions,
        s.flushes,
        s.raises,
        s.alerts,
        escape(&inputs.out.display().to_string()),
        s.files,
    );
    let stages = &inputs.dataflow.stages;
    let enabled: Vec<&str> = [
        ("anomaly scoring and alert rules", stages.alerting.is_some()),
        ("log templates", stages.logs.is_some()),
        ("SLOs", stages.slos.is_some()),
        ("RED and the service graph", stages.traces.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let topics: Vec<String> = inputs
        .dataflow
        .consumed()
        .iter()
        .map(|c| format!("{} ({})", c.topic, c.signal.table().name()))
        .collect();
    let _ = writeln!(
        page,
        "<p class=\"note\">Stages replayed: {}; topics read from the archive: {}.</p>",
        escape(&enabled.join(", ")),
        escape(&topics.join(", "))
    );
}

/// Per rule: the transitions of the replay and of the compared archive, and how
/// they differ.
fn rules_section(page: &mut String, inputs: &ReportInputs<'_>) {
    let mut by_rule: BTreeMap<&str, super::compare::RuleCounts> = BTreeMap::new();
    for ((rule, _), counts) in &inputs.diff.by_rule {
        let total = by_rule.entry(rule).or_default();
        total.added += counts.added;
        total.removed += counts.removed;
        total.changed += counts.changed;
        total.same += counts.same;
    }
    let _ = write!(
        page,
        "<h2>Alerts per rule</h2>\n<p class=\"note\">Transitions (firing and resolved) of the replay against {}: added (only in the replay), removed (only there), changed (same rule, labels, status and start; other contents differ).</p>\n<table id=\"rules\">\n<tr><th>rule</th><th>replay</th><th>compared</th><th>added</th><th>removed</th><th>changed</th><th>same</th></tr>\n",
        escape(&inputs.compared_with.display().to_string())
    );
    for (rule, c) in &by_rule {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(rule),
            c.same + c.changed + c.added,
            c.same + c.changed + c.removed,
            c.added,
            c.removed,
            c.changed,
            c.same
        );
    }
    if by_rule.is_empty() {
        page.push_str("<tr><td colspan=\"7\">no alerts on either side</td></tr>\n");
    }
    page.push_str("</table>\n");
}

fn labels_section(page: &mut String, score: &LabelScore) {
    page.push_str("<h2>Against the labels</h2>\n");
    html_table(page, "labels", &score.kind_table());
    let _ = writeln!(
        page,
        "<p class=\"note\">False alarms (matching no incident): {}.</p>",
        score.overall.false_alerts
    );
    html_table(page, "rule-precision", &score.rule_table());
}

/// An HTML table with `id`; cells escaped, all but the first column numbers.
pub(crate) fn html_table(page: &mut String, id: &str, (header, rows): &super::labels::Cells) {
    let _ = write!(page, "<table id=\"{}\">\n<tr>", escape(id));
    for h in header {
        let _ = write!(page, "<th>{}</th>", escape(h));
    }
    page.push_str("</tr>\n");
    for row in rows {
        page.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let class = if i == 0 { "" } else { " class=\"n\"" };
            let _ = write!(page, "<td{class}>{}</td>", escape(cell));
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table>\n");
}

fn timeline_section(page: &mut String, inputs: &ReportInputs<'_>) -> Result<(), ReportError> {
    let incidents = inputs.labels.map_or(&[][..], |(incidents, _)| incidents);
    page.push_str("<h2>Timeline</h2>\n");
    if inputs.episodes.is_empty() && incidents.is_empty() {
        page.push_str("<p>No alerts fired and no incidents are labelled.</p>\n");
        return Ok(());
    }
    let mut weight: BTreeMap<String, usize> = BTreeMap::new();
    for e in inputs.episodes {
        *weight.entry(e.lane()).or_default() += 1;
    }
    for i in incidents {
        *weight.entry(i.service.clone()).or_default() += 1;
    }
    let mut lanes: Vec<(String, usize)> = weight.into_iter().collect();
    lanes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let left_out = lanes.len().saturating_sub(MAX_LANES);
    let mut lanes: Vec<String> = lanes.into_iter().take(MAX_LANES).map(|(l, _)| l).collect();
    lanes.sort();
    let starts = inputs
        .episodes
        .iter()
        .map(|e| e.start_ms)
        .chain(incidents.iter().map(|i| i.start_ms));
    let ends = inputs
        .episodes
        .iter()
        .map(|e| e.end_ms.unwrap_or(e.start_ms))
        .chain(incidents.iter().map(|i| i.end_ms));
    let span = (
        inputs.range.from_ms.or(starts.min()).unwrap_or(0),
        inputs.range.to_ms.or(ends.max()).unwrap_or(0),
    );
    let episodes: Vec<&Episode> = inputs.episodes.iter().collect();
    let svg = plots::timeline_svg(&lanes, &episodes, incidents, span)?;
    page.push_str("<p class=\"legend\">");
    for (color, what) in plots::timeline_legend(!incidents.is_empty()) {
        let _ = write!(
            page,
            "<span class=\"swatch\" style=\"background:{color}\"></span>{} ",
            escape(&what)
        );
    }
    page.push_str("</p>\n");
    let _ = write!(
        page,
        "<p class=\"note\">Alert episodes per service{}.{}</p>\n<div class=\"plot\" id=\"timeline\">{svg}</div>\n",
        if incidents.is_empty() {
            ""
        } else {
            ", over the labelled incidents (coloured by kind)"
        },
        if left_out > 0 {
            format!(" {left_out} lanes with fewer episodes are left out.")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// The series with the most anomaly episodes, plotted.
fn series_section(page: &mut String, inputs: &ReportInputs<'_>) -> Result<(), ReportError> {
    page.push_str("<h2>Alerting series</h2>\n");
    let mut by_series: BTreeMap<SeriesPlace, Vec<&Episode>> = BTreeMap::new();
    for e in inputs.episodes {
        if let Some(series) = e.series() {
            by_series
                .entry(SeriesPlace {
                    topic: e.topic.clone(),
                    partition: e.partition,
                    series,
                })
                .or_default()
                .push(e);
        }
    }
    let Some(alerting) = inputs.dataflow.stages.alerting.as_ref() else {
        page.push_str("<p>The anomaly stage is off in this config.</p>\n");
        return Ok(());
    };
    if by_series.is_empty() {
        page.push_str("<p>No metric series alerted.</p>\n");
        return Ok(());
    }
    let mut ranked: Vec<(&SeriesPlace, &Vec<&Episode>)> = by_series.iter().collect();
    ranked.sort_by_key(|(place, episodes)| {
        (
            std::cmp::Reverse(episodes.len()),
            episodes.first().map(|e| e.start_ms),
            (*place).clone(),
        )
    });
    ranked.truncate(MAX_SERIES);
    let chosen: BTreeSet<SeriesPlace> = ranked.iter().map(|(p, _)| (*p).clone()).collect();
    let traces = score_traces(inputs.archive, alerting, &chosen, inputs.range)?;
    let _ = writeln!(
        page,
        "<p class=\"note\">{} of {} alerting series, those with the most episodes: values (top), anomaly scores and the rule's threshold (bottom), episodes shaded.</p>",
        ranked.len(),
        by_series.len()
    );
    for (place, episodes) in ranked {
        let title = series_title(&place.series);
        let Some(trace) = traces.get(place).filter(|t| !t.points.is_empty()) else {
            let _ = writeln!(
                page,
                "<p>{}: no points in the archive's range.</p>",
                escape(&title)
            );
            continue;
        };
        let threshold = episodes.first().map_or(0.0, |e| e.threshold);
        let svg = plots::series_svg(&title, trace, episodes, threshold)?;
        let resolution = if trace.merged > 1 {
            format!(", each point merging {} scored ones", trace.merged)
        } else {
            String::new()
        };
        let _ = writeln!(
            page,
            "<div class=\"plot series\"><p class=\"note\">{} partition {}: {} episode{}{resolution}</p>{svg}</div>",
            escape(&place.topic),
            place.partition,
            episodes.len(),
            if episodes.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// `name{k="v",...}`.
fn series_title((name, labels): &traces::SeriesId) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_series_titled() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let title = series_title(&(
            "latency".to_owned(),
            vec![
                ("pod".to_owned(), "p1".to_owned()),
                ("service".to_owned(), "api".to_owned()),
            ],
        ));
        assert_eq!(title, "latency{pod=\"p1\",service=\"api\"}");
    }
}
