//! Small streaming statistics the detectors are built from: constant memory and
//! constant time per point.

use serde::{Deserialize, Serialize};

/// An exponentially weighted mean and mean absolute deviation, with innovations
/// clipped at `clip` deviations once warmed up, so that one outlier moves the
/// baseline by a bounded amount (a Huber-style robust estimate).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RobustEwm {
    /// Current location.
    pub mean: f64,
    /// Current mean absolute deviation.
    pub mad: f64,
    /// Points seen (saturating).
    pub count: u32,
}

impl RobustEwm {
    /// Absolute deviation of `x` from the location in units of the deviation scale
    /// (`None` until enough points were seen).
    pub fn z(&self, x: f64, warmup: u32, floor: f64) -> Option<f64> {
        (self.count >= warmup).then(|| (x - self.mean).abs() / self.mad.max(floor))
    }

    /// Takes `x` in with weight `alpha` (more while young), times `trust` (1 for a
    /// usual point, less for one to learn less from), clipped at `clip` deviations
    /// after `warmup`.
    pub fn update(&mut self, x: f64, alpha: f64, trust: f64, clip: f64, warmup: u32) {
        if self.count == 0 {
            self.mean = x;
            self.mad = 0.0;
            self.count = 1;
            return;
        }
        // Early on, average plainly so the first points do not dominate.
        let alpha = alpha.max(1.0 / (f64::from(self.count) + 1.0)) * trust;
        let residual = x - self.mean;
        let limit = clip * self.mad;
        let clipped = if self.count >= warmup && limit > 0.0 {
            residual.clamp(-limit, limit)
        } else {
            residual
        };
        self.mean += alpha * clipped;
        self.mad += alpha * (clipped.abs() - self.mad);
        self.count = self.count.saturating_add(1);
    }
}

/// The standard normal upper tail `Q(z) = P(Z > z)`, through [`erfc`].
pub fn normal_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, relative error
/// below 1.2e-7 everywhere).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erfc_matches_known_values() {
        for (x, expected) in [
            (0.0, 1.0),
            (0.5, 0.479_500_122),
            (1.0, 0.157_299_207),
            (2.0, 0.004_677_735),
            (3.0, 2.209_049_7e-5),
            (-1.0, 1.842_700_793),
        ] {
            let got = erfc(x);
            assert!(
                ((got - expected) / expected).abs() < 2e-7,
                "erfc({x}) = {got}"
            );
        }
        assert!((normal_tail(1.959_964) - 0.025).abs() < 1e-7);
    }

    #[test]
    fn robust_mean_ignores_a_single_outlier() {
        let mut plain = 0.0;
        let mut robust = RobustEwm::default();
        for i in 0..500 {
            let x = 10.0 + if i % 2 == 0 { 1.0 } else { -1.0 };
            robust.update(x, 0.02, 1.0, 3.0, 20);
            plain = x;
        }
        let before = robust.mean;
        robust.update(1e6, 0.02, 1.0, 3.0, 20);
        assert!(
            (robust.mean - before).abs() < 0.1,
            "moved to {}",
            robust.mean
        );
        assert!((robust.mad - 1.0).abs() < 0.2, "mad {}", robust.mad);
        assert!(plain != 0.0);
        assert!(robust.z(14.0, 20, 1e-9).unwrap() > 3.5);
    }
}
