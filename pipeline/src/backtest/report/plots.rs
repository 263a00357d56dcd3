//! The report's two kinds of plot, drawn with plotters to SVG text: one series'
//! values and anomaly scores with its alert episodes shaded, and the timeline of
//! alert episodes (and labelled incidents) per service.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::traces::Trace;
use crate::backtest::episodes::Episode;
use crate::gen::incidents::Incident;

/// Why a plot could not be drawn (plotters' error, as text).
#[derive(Debug, thiserror::Error)]
#[error("drawing a plot: {0}")]
pub struct PlotError(String);

fn plot_error(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

const WIDTH: u32 = 1000;
/// Episode shading and alert marks.
const ALERT: RGBColor = RGBColor(214, 39, 40);
const VALUE: RGBColor = RGBColor(31, 119, 180);
const SCORE: RGBColor = RGBColor(255, 127, 14);
/// Incident kinds, in [`crate::gen::incidents::IncidentKind`] order.
const KINDS: [RGBColor; 4] = [
    RGBColor(148, 103, 189),
    RGBColor(44, 160, 44),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

/// The legend of [`timeline_svg`]: (CSS colour, what it marks).
pub fn timeline_legend(with_incidents: bool) -> Vec<(String, String)> {
    let css = |c: RGBColor, alpha: f64| format!("rgba({},{},{},{alpha})", c.0, c.1, c.2);
    let mut legend = vec![(css(ALERT, 1.0), "alert episode".to_owned())];
    if with_incidents {
        for (kind, color) in crate::gen::incidents::IncidentKind::ALL.iter().zip(KINDS) {
            legend.push((css(color, 0.45), format!("incident: {}", kind.as_str())));
        }
    }
    legend
}

/// How a plot spanning `span_ms` labels its times.
#[derive(Debug, Clone, Copy)]
enum TimeFormat {
    /// `HH:MM:SS`, under an hour.
    Seconds,
    /// `HH:MM`, under two days.
    Minutes,
    /// `mm-dd HH:MM`.
    Days,
}

impl TimeFormat {
    fn for_span(span_ms: i64) -> TimeFormat {
        match span_ms {
            ..3_600_000 => TimeFormat::Seconds,
            3_600_000..172_800_000 => TimeFormat::Minutes,
            _ => TimeFormat::Days,
        }
    }

    fn label(self, ms: i64) -> String {
        let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
            return ms.to_string();
        };
        let format = match self {
            TimeFormat::Seconds => "%H:%M:%S",
            TimeFormat::Minutes => "%H:%M",
            TimeFormat::Days => "%m-%d %H:%M",
        };
        t.format(format).to_string()
    }
}

/// A time range a little wider than `[from, to]`, never empty.
fn padded(from: i64, to: i64) -> std::ops::Range<i64> {
    let pad = ((to - from) / 50).max(1_000);
    from - pad..to + pad
}

/// One series: its values on top, its scores and the rule's threshold below, the
/// alert episodes shaded on both.
pub fn series_svg(
    title: &str,
    trace: &Trace,
    episodes: &[&Episode],
    threshold: f64,
) -> Result<String, PlotError> {
    let (Some(first), Some(last)) = (trace.points.first(), trace.points.last()) else {
        return Err(PlotError("no points".into()));
    };
    let x = padded(first.ts_ms, last.ts_ms);
    let times = TimeFormat::for_span(last.ts_ms - first.ts_ms);
    let (mut low, mut high) = trace.points.iter().fold((f64::MAX, f64::MIN), |(l, h), p| {
        (l.min(p.value), h.max(p.value))
    });
    if high - low < 1e-9 {
        (low, high) = (low - 1.0, high + 1.0);
    }
    let margin = (high - low) * 0.05;
    let (low, high) = (low - margin, high + margin);
    let score_top = trace
        .points
        .iter()
        .map(|p| p.score)
        .fold(threshold, f64::max)
        .max(1.0)
        * 1.05;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let root = root.titled(title, ("sans-serif", 15)).map_err(plot_error)?;
        let (upper, lower) = root.split_vertically(200);
        let mut values = panel(&upper, &x, low..high, "value", false, episodes, times)?;
        let value_line = trace.points.iter().map(|p| (p.ts_ms, p.value));
        line(&mut values, value_line, VALUE, "value".into())?;
        legend(&mut values)?;
        let mut scores = panel(&lower, &x, 0.0..score_top, "score", true, episodes, times)?;
        let score_line = trace.points.iter().map(|p| (p.ts_ms, p.score));
        line(&mut scores, score_line, SCORE, "score".into())?;
        scores
            .draw_series(DashedLineSeries::new(
                [(x.start, threshold), (x.end, threshold)],
                6,
                4,
                ALERT.stroke_width(1),
            ))
            .map_err(plot_error)?
            .label(format!("threshold {threshold}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], ALERT));
        legend(&mut scores)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

type TimeChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordi64, plotters::coord::types::RangedCoordf64>,
>;

/// Draws `points` as a line of `color` on `chart`, named `name` in its legend.
fn line(
    chart: &mut TimeChart<'_, '_>,
    points: impl Iterator<Item = (i64, f64)>,
    color: RGBColor,
    name: String,
) -> Result<(), PlotError> {
    chart
        .draw_series(LineSeries::new(points, color.stroke_width(1)))
        .map_err(plot_error)?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    Ok(())
}

/// The legend of a panel, at its upper left.
fn legend<'a, 'b>(chart: &mut TimeChart<'a, 'b>) -> Result<(), PlotError>
where
    'b: 'a,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(plot_error)
}

/// A panel of [`series_svg`] over times `x`: its axes, with the episodes shaded.
fn panel<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    x: &std::ops::Range<i64>,
    y: std::ops::Range<f64>,
    y_name: &str,
    time_axis: bool,
    episodes: &[&Episode],
    times: TimeFormat,
) -> Result<TimeChart<'a, 'b>, PlotError> {
    let mut chart = ChartBuilder::on(area)
        .margin_left(8)
        .margin_right(16)
        .x_label_area_size(if time_axis { 28 } else { 0 })
        .y_label_area_size(70)
        .build_cartesian_2d(x.clone(), y.clone())
        .map_err(plot_error)?;
    let time_of = |t: &i64| times.label(*t);
    let mut mesh = chart.configure_mesh();
    mesh.x_labels(8)
        .x_label_formatter(&time_of)
        .y_labels(5)
        .y_desc(y_name)
        .light_line_style(WHITE.mix(0.0));
    if !time_axis {
        mesh.disable_x_axis();
    }
    mesh.draw().map_err(plot_error)?;
    chart
        .draw_series(episodes.iter().map(|e| {
            let end = e.end_ms.unwrap_or(x.end);
            Rectangle::new(
                [(e.start_ms, y.start), (end, y.end)],
                ALERT.mix(0.15).filled(),
            )
        }))
        .map_err(plot_error)?;
    Ok(chart)
}

/// The timeline: a lane per service (or SLO, or rule), labelled incidents as wide
/// bars coloured by kind, alert episodes as narrow red bars inside them.
pub fn timeline_svg(
    lanes: &[String],
    episodes: &[&Episode],
    incidents: &[Incident],
    span: (i64, i64),
) -> Result<String, PlotError> {
    let x = padded(span.0, span.1);
    let times = TimeFormat::for_span(span.1 - span.0);
    let lane_of = |name: &str| lanes.iter().position(|l| l == name);
    let height = 80 + 26 * lanes.len().max(1) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let rows = lanes.len().max(1) as f64;
        let time_of = |t: &i64| times.label(*t);
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(0)
            .build_cartesian_2d(x.clone(), 0.0..rows)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_labels(10)
            .x_label_formatter(&time_of)
            .y_labels(0)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(plot_error)?;
        // Lane n is drawn from the top: rows - n - 1 .. rows - n.
        let band = |lane: usize, inset: f64| {
            let top = rows - lane as f64;
            (top - 1.0 + inset, top - inset)
        };
        // Each lane's name at its top left, over a light band every other lane.
        chart
            .draw_series(
                lanes
                    .iter()
                    .enumerate()
                    .filter(|(n, _)| n % 2 == 1)
                    .map(|(n, _)| {
                        let (bottom, top) = band(n, 0.0);
                        Rectangle::new([(x.start, bottom), (x.end, top)], BLACK.mix(0.04).filled())
                    }),
            )
            .map_err(plot_error)?;
        chart
            .draw_series(lanes.iter().enumerate().map(|(n, lane)| {
                let (_, top) = band(n, 0.0);
                Text::new(lane.clone(), (x.start, top), ("sans-serif", 15).into_font())
            }))
            .map_err(plot_error)?;
        for (index, kind) in crate::gen::incidents::IncidentKind::ALL.iter().enumerate() {
            let color = KINDS[index];
            chart
                .draw_series(
                    incidents
                        .iter()
                        .filter(|i| i.kind == *kind)
                        .filter_map(|i| Some((lane_of(&i.service)?, i)))
                        .map(|(lane, i)| {
                            let (bottom, top) = band(lane, 0.1);
                            Rectangle::new(
                                [(i.start_ms, bottom), (i.end_ms, top)],
                                color.mix(0.45).filled(),
                            )
                        }),
                )
                .map_err(plot_error)?;
        }
        chart
            .draw_series(
                episodes
                    .iter()
                    .filter_map(|e| Some((lane_of(&e.lane())?, e)))
                    .map(|(lane, e)| {
                        let (bottom, top) = band(lane, 0.32);
                        let end = e
                            .end_ms
                            .unwrap_or(x.end)
                            .max(e.start_ms + (x.end - x.start) / 400);
                        Rectangle::new([(e.start_ms, bottom), (end, top)], ALERT.filled())
                    }),
            )
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::super::traces::TracePoint;
    use super::*;

    fn episode(service: &str, start_ms: i64, end_ms: Option<i64>) -> Episode {
        Episode {
            rule: "metric_anomaly".into(),
            kind: "anomaly".into(),
            labels: vec![("service".into(), service.into())],
            topic: "telemetry.metrics".into(),
            partition: 0,
            start_ms,
            end_ms,
            threshold: 0.35,
        }
    }

    /// The plots are SVG with the title (escaped), both lines and the threshold; the
    /// timeline names its lanes and draws one bar per incident and per episode.
    #[test]
    fn plots_draw_their_series_episodes_and_lanes() {
        let t = 1_764_000_000_000;
        let trace = Trace {
            points: (0..100)
                .map(|i| TracePoint {
                    ts_ms: t + i * 10_000,
                    value: if i == 50 { 90.0 } else { 10.0 },
                    score: if i == 50 { 0.8 } else { 0.05 },
                })
                .collect(),
            merged: 1,
            ..Trace::default()
        };
        let episodes = [episode("api", t + 500_000, Some(t + 560_000))];
        let refs: Vec<&Episode> = episodes.iter().collect();
        let svg = series_svg("latency_ms{service=\"api\"} <&>", &trace, &refs, 0.35).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(
            svg.contains("latency_ms{service=&quot;api&quot;} &lt;&amp;&gt;")
                || svg.contains("latency_ms{service=\"api\"} &lt;&amp;&gt;")
        );
        assert!(svg.contains("threshold 0.35"));
        assert!(
            svg.matches("<polyline").count() >= 2,
            "value and score lines"
        );

        let lanes = vec!["api".to_owned(), "db".to_owned()];
        let incidents = [Incident {
            id: "inc-1".into(),
            kind: crate::gen::incidents::IncidentKind::LatencySpike,
            service: "db".into(),
            start_ms: t + 100_000,
            end_ms: t + 400_000,
            affected: Vec::new(),
        }];
        let timeline = timeline_svg(&lanes, &refs, &incidents, (t, t + 1_000_000)).unwrap();
        assert!(
            timeline.contains("\napi\n") && timeline.contains("\ndb\n"),
            "lanes named"
        );
        let fill = |c: RGBColor| format!("fill=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2);
        assert_eq!(
            timeline.matches(&fill(KINDS[0])).count(),
            1,
            "one latency spike"
        );
        assert_eq!(timeline.matches(&fill(ALERT)).count(), 1, "one episode");
    }
}
