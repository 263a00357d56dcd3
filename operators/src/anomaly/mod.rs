//! Metric anomaly scoring: per-series streaming detectors combined into one
//! calibrated score in [0, 1] per point.
//!
//! Owns: the detectors ([`SeriesScorer`]) and their state, the keyed operator over
//! metric batches ([`operator`]). Each detector answers "how unusual is this point
//! against one model of normal":
//! - **level**: a robust (clipped) exponentially weighted mean and deviation — spikes
//!   and dips against the recent level;
//! - **daily season**: the same per hour of day, used
//!   instead of the level when it has predicted the series better so far (once the
//!   series is a day old) — a value normal at noon but not at 3 a.m.;
//! - **shift**: the fast mean of the residuals against whichever model predicts —
//!   level shifts and trend changes that single points do not show;
//! - counters are turned into rates by the operator before scoring.
//!
//! Point deviations (briefly averaged) and the shift are each calibrated against the
//! series' own history of such deviations (how rare is this, for this series), and the
//! rarer of the two is the score: that is what makes one threshold work across series
//! of very different noise.

pub mod alerting;
pub mod operator;
pub mod stats;
pub mod windows;

use serde::{Deserialize, Serialize};
use stats::{normal_tail, RobustEwm};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Tuning of the detectors. The defaults were chosen on NAB (see BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScorerConfig {
    /// Weight of a new point in the level baseline.
    pub level_alpha: f64,
    /// Weight of a new residual in the fast mean of the shift detector.
    pub fast_alpha: f64,
    /// Weight of a new point in its seasonal bucket.
    pub season_alpha: f64,
    /// Innovations are clipped at this many deviations.
    pub clip: f64,
    /// Points before any score is given.
    pub warmup: u32,
    /// Weight of a new deviation in the calibration distribution.
    pub calibration_alpha: f64,
    /// Weight of the shift detector against point deviations.
    pub shift_weight: f64,
    /// Weight of a new deviation in its short average (1 = no averaging).
    pub smoothing: f64,
    /// Points deviating less than this (in deviations of their model) score 0.
    pub min_deviation: f64,
    /// A point scoring at least this is anomalous, and the models learn anomalous
    /// points as if they came no more often than once every…
    pub anomalous_score: f64,
    /// …this long (ms of event time): the weights are per point, so a series of a
    /// point a second would otherwise learn a five-minute fault as its new normal
    /// before the fault ends, while one of a point every five minutes (as NAB's) is
    /// not slowed at all. A shift that stays is still learnt, in event time.
    pub anomalous_learning_interval_ms: i64,
}

impl Default for ScorerConfig {
    fn default() -> Self {
        ScorerConfig {
            level_alpha: 0.005,
            fast_alpha: 0.15,
            season_alpha: 0.02,
            clip: 3.0,
            warmup: 30,
            calibration_alpha: 0.0005,
            shift_weight: 2.0,
            smoothing: 0.1,
            min_deviation: 4.0,
            anomalous_score: 0.3,
            anomalous_learning_interval_ms: 60_000,
        }
    }
}

/// One scored point, with its evidence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PointScore {
    /// Calibrated anomaly score in [0, 1].
    pub score: f64,
    /// What the winning model expected.
    pub baseline: f64,
    /// The largest deviation, in deviations of its model.
    pub deviation: f64,
    /// Which detector gave it.
    pub detector: Detector,
}

/// The detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// Not scored yet (warming up).
    Warmup,
    /// Against the recent level.
    Level,
    /// Against the hour of day.
    Daily,
    /// Fast mean against slow mean.
    Shift,
}

/// How rare a deviation is for one series: a normal fit to the logarithm of its
/// past deviations, exponentially weighted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Calibrator {
    mean: f64,
    var: f64,
    count: u32,
}

impl Calibrator {
    /// With `p` the upper tail probability of `deviation`, the score is
    /// `-log10(p) / 10` clipped to [0, 1], so 0.5 means "one in 100,000" and 1 means
    /// "one in 10^10 or rarer". 0 until ten deviations were learnt.
    fn score(&self, deviation: f64) -> f64 {
        if self.count < 10 {
            return 0.0;
        }
        let sd = self.var.sqrt().max(0.05);
        let tail = normal_tail((deviation.ln_1p() - self.mean) / sd).max(1e-300);
        (-tail.log10() / 10.0).clamp(0.0, 1.0)
    }

    /// Learns `deviation` with weight `alpha` (more while young) times `trust`.
    fn learn(&mut self, alpha: f64, trust: f64, deviation: f64) {
        let x = deviation.ln_1p();
        let alpha = alpha.max(1.0 / (f64::from(self.count) + 1.0)) * trust;
        let delta = x - self.mean;
        self.mean += alpha * delta;
        self.var = (1.0 - alpha) * (self.var + alpha * delta * delta);
        self.count = self.count.saturating_add(1);
    }
}

/// The state of one series: a few hundred bytes plus its seasonal buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesScorer {
    level: RobustEwm,
    /// Fast mean of the signed residuals (in deviations).
    fast: f64,
    daily: Vec<RobustEwm>,
    /// Running mean absolute prediction error of the level and the daily model.
    level_error: f64,
    daily_error: f64,
    point_calibration: Calibrator,
    shift_calibration: Calibrator,
    /// Short average of deviations.
    smoothed: f64,
    /// Event time of the first point of the series (ms); a seasonal bucket speaks only
    /// once the series is a day old, i.e. once its hour has been seen on an earlier
    /// day.
    #[serde(default)]
    first_ms: Option<i64>,
    /// Event time of the latest point (ms): how much time an anomalous point stands
    /// for, when learning it.
    #[serde(default)]
    last_ms: Option<i64>,
}

impl Default for SeriesScorer {
    fn default() -> Self {
        SeriesScorer {
            level: RobustEwm::default(),
            fast: 0.0,
            daily: vec![RobustEwm::default(); 24],
            level_error: 0.0,
            daily_error: 0.0,
            point_calibration: Calibrator::default(),
            shift_calibration: Calibrator::default(),
            smoothed: 0.0,
            first_ms: None,
            last_ms: None,
        }
    }
}

impl SeriesScorer {
    /// Bytes this scorer holds on the heap (its seasonal buckets; by their number,
    /// so equal state counts equal bytes however it was built).
    pub fn heap_bytes(&self) -> usize {
        self.daily.len() * std::mem::size_of::<RobustEwm>()
    }

    /// Scores the point `(ts_ms, value)` and then learns from it. Points must come in
    /// event-time order per series.
    pub fn score(&mut self, config: &ScorerConfig, ts_ms: i64, value: f64) -> PointScore {
        let floor = 1e-9 + value.abs() * 1e-6;
        let hour = ts_ms.div_euclid(HOUR_MS).rem_euclid(24) as usize;
        let level_z = self.level.z(value, config.warmup, floor);
        let bucket = self.daily[hour];
        let first = *self.first_ms.get_or_insert(ts_ms);
        // Seasonality needs a previous day: before that an hour's bucket holds only
        // the last minutes (measured: on 10 s data every new hour's young bucket
        // paged, 450 false firings per 2,000 series in 4 hours).
        let daily_z = if ts_ms - first >= DAY_MS - HOUR_MS {
            bucket.z(value, 3, floor)
        } else {
            None
        };
        let seasonal_better = daily_z.is_some() && self.daily_error < self.level_error;
        let (point_z, baseline, scale, point_detector) = match (level_z, daily_z) {
            (Some(_), Some(d)) if seasonal_better => (d, bucket.mean, bucket.mad, Detector::Daily),
            (Some(l), _) => (l, self.level.mean, self.level.mad, Detector::Level),
            (None, _) => (0.0, value, 0.0, Detector::Warmup),
        };
        // Sustained deviation from whichever model predicts: the fast mean of the
        // signed residuals, in deviations. One spike moves it a little; a shift of
        // level or trend moves it steadily.
        if point_detector != Detector::Warmup {
            let signed = (value - baseline) / scale.max(floor);
            self.fast += config.fast_alpha * (signed.clamp(-50.0, 50.0) - self.fast);
        }
        let shift_z = self.fast.abs() * config.shift_weight;
        // Each detector is calibrated against its own history; the rarer one speaks.
        // Point deviations are averaged briefly: a lone outlier in a noisy series
        // counts for less than a run of them.
        let (score, deviation, detector) = if point_detector == Detector::Warmup {
            (0.0, 0.0, Detector::Warmup)
        } else {
            self.smoothed += config.smoothing * (point_z - self.smoothed);
            // Rare for this series, perhaps, but too small to matter: a series that
            // never varied makes any wobble "rare". Each detector must also clear an
            // absolute bar, or it scores 0 (and both calibrators learn either way).
            // (When not, the tail, most of the cost, is not computed.)
            let point = match point_z >= config.min_deviation {
                true => self.point_calibration.score(self.smoothed),
                false => 0.0,
            };
            let shift = match shift_z >= config.min_deviation {
                true => self.shift_calibration.score(shift_z),
                false => 0.0,
            };
            if shift > point {
                (shift, shift_z, Detector::Shift)
            } else {
                (point, self.smoothed, point_detector)
            }
        };

        // Learn, less from an anomalous point of a dense series: on a point a
        // second the level's weight forgets in minutes, and a five-minute fault
        // would be learnt as normal before it ends (resolving mid-fault, and missing
        // the next one on the series), its deviations as usual ones.
        let interval_ms = self.last_ms.map_or(i64::MAX, |last| ts_ms - last);
        self.last_ms = Some(ts_ms);
        let trust = match score >= config.anomalous_score {
            true => {
                let reference = config.anomalous_learning_interval_ms.max(1) as f64;
                (interval_ms as f64 / reference).clamp(0.0, 1.0)
            }
            false => 1.0,
        };
        if detector != Detector::Warmup {
            let alpha = config.calibration_alpha;
            self.point_calibration.learn(alpha, trust, self.smoothed);
            self.shift_calibration.learn(alpha, trust, shift_z);
        }
        if level_z.is_some() {
            let e = (value - self.level.mean).abs();
            self.level_error += 0.05 * (e - self.level_error);
        }
        if daily_z.is_some() {
            let e = (value - bucket.mean).abs();
            self.daily_error += 0.05 * (e - self.daily_error);
        }
        self.level
            .update(value, config.level_alpha, trust, config.clip, config.warmup);
        self.daily[hour].update(value, config.season_alpha, trust, config.clip, 3);
        PointScore {
            score,
            baseline,
            deviation,
            detector,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random value in [-1, 1).
    fn noise(i: u64) -> f64 {
        crate::test_rng::hash_unit(i) * 2.0 - 1.0
    }

    #[test]
    fn a_spike_scores_high_and_noise_does_not() {
        let config = ScorerConfig::default();
        let mut s = SeriesScorer::default();
        let mut max_noise: f64 = 0.0;
        for i in 0..2000 {
            let p = s.score(&config, i as i64 * 60_000, 50.0 + noise(i));
            if i > 200 {
                max_noise = max_noise.max(p.score);
            }
        }
        let spike = s.score(&config, 2000 * 60_000, 80.0);
        assert!(spike.score >= 0.5, "{spike:?}");
        assert!(max_noise < 0.5, "noise scored {max_noise}");
        assert!(spike.score > max_noise, "{} vs {}", spike.score, max_noise);
        assert!((spike.baseline - 50.0).abs() < 0.5);
    }

    #[test]
    fn a_daily_cycle_is_learnt_and_a_night_time_day_value_is_not_normal() {
        let config = ScorerConfig::default();
        let mut s = SeriesScorer::default();
        let day = |ts: i64| {
            let h = (ts / HOUR_MS) % 24;
            if (8..20).contains(&h) {
                100.0
            } else {
                10.0
            }
        };
        let step = 5 * 60_000;
        let mut ts = 0;
        for i in 0..(14 * 288) {
            s.score(&config, ts, day(ts) + noise(i));
            ts += step;
        }
        // 3 a.m. with a noon value.
        let night = ts - ts % (24 * HOUR_MS) + 3 * HOUR_MS + 24 * HOUR_MS;
        let p = s.score(&config, night, 100.0);
        assert_eq!(p.detector, Detector::Daily);
        // It alerts at the default threshold.
        assert!(
            p.score >= crate::alert::FiringPolicy::default().threshold,
            "{p:?}"
        );
    }

    #[test]
    fn a_young_series_does_not_trust_its_hour_buckets() {
        // 10 s points of steady noise for 20 hours: each hour's bucket is new when
        // the hour starts, and must not page on its first few points.
        let config = ScorerConfig::default();
        let mut s = SeriesScorer::default();
        for i in 0..(20 * 360) {
            let p = s.score(&config, i as i64 * 10_000, 100.0 + 5.0 * noise(i as u64));
            assert_ne!(p.detector, Detector::Daily, "point {i}");
            if i > 100 {
                assert!(p.score < 0.35, "point {i}: {p:?}");
            }
        }
    }

    /// Scores an hour (at least 300 points) of noise around 100, then `fault_points`
    /// points at 160, a point every `every_ms`; the scores of the fault's points.
    fn fault_scores(config: &ScorerConfig, every_ms: i64, fault_points: i64) -> Vec<f64> {
        let mut s = SeriesScorer::default();
        let normal = (3_600_000 / every_ms).max(300);
        for i in 0..normal {
            s.score(config, i * every_ms, 100.0 + noise(i as u64));
        }
        (normal..normal + fault_points)
            .map(|i| s.score(config, i * every_ms, 160.0 + noise(i as u64)).score)
            .collect()
    }

    #[test]
    fn a_dense_series_does_not_learn_a_five_minute_fault_as_normal() {
        let config = ScorerConfig::default();
        let threshold = crate::alert::FiringPolicy::default().threshold;
        // A point a second, a fault of five minutes: anomalous to its last point.
        let kept = fault_scores(&config, 1000, 300);
        assert!(
            kept[10..].iter().all(|&s| s >= threshold),
            "{:?}",
            &kept[290..]
        );
        // Learning its points like any other, the series took it for normal halfway.
        let every_point = ScorerConfig {
            anomalous_learning_interval_ms: 1,
            ..config
        };
        let learnt = fault_scores(&every_point, 1000, 300);
        let normal_from = learnt.iter().rposition(|&s| s >= threshold).unwrap_or(0);
        assert!(normal_from < 200, "anomalous until point {normal_from}");
    }

    #[test]
    fn a_sparse_series_learns_anomalies_as_fast_as_ever() {
        // Points five minutes apart (as NAB's): nothing changes.
        let config = ScorerConfig::default();
        let every_point = ScorerConfig {
            anomalous_learning_interval_ms: 1,
            ..config
        };
        let sparse = fault_scores(&config, 300_000, 50);
        assert_eq!(sparse, fault_scores(&every_point, 300_000, 50));
        assert!(sparse[0] >= 0.35, "the fault is seen: {sparse:?}");
    }

    #[test]
    fn state_round_trips_and_continues_identically() {
        let config = ScorerConfig::default();
        let mut a = SeriesScorer::default();
        for i in 0..500 {
            a.score(&config, i * 1000, (i % 7) as f64);
        }
        let bytes = serde_json::to_vec(&a).unwrap();
        let mut b: SeriesScorer = serde_json::from_slice(&bytes).unwrap();
        for i in 500..600 {
            let x = (i % 5) as f64 * 3.0;
            assert_eq!(a.score(&config, i * 1000, x), b.score(&config, i * 1000, x));
        }
    }
}
