//! `[incidents]`: how alerts are correlated into incidents (issue 14), its defaults
//! and validation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use cara_operators::incidents::IncidentSettings;

use super::{invalid, ConfigError, HumanDuration};

/// Alert correlation into incidents.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    /// Correlate alerts into incidents.
    pub enabled: bool,
    /// An alert joins an incident if it started at most this long after the
    /// incident's latest alert onset…
    pub gap: HumanDuration,
    /// …and names a service at most this many calls away from one of the
    /// incident's services (0: the same service only).
    pub max_hops: u32,
    /// An incident resolves this long after its last alert resolved.
    pub quiet: HumanDuration,
    /// A call between services not seen for this long no longer connects them.
    pub edge_ttl: HumanDuration,
    /// Open incidents at most; past it the stalest is closed (and counted).
    pub max_open: usize,
    /// The incident stage waits for every alert-raising stage's progress, except
    /// one this far behind the most advanced (in event time): a stage with no
    /// input does not hold incidents back, and its late alerts still join.
    pub max_source_lag: HumanDuration,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        let d = IncidentSettings::default();
        let duration = |ms: i64| HumanDuration(Duration::from_millis(ms as u64));
        IncidentsConfig {
            enabled: true,
            gap: duration(d.gap_ms),
            max_hops: d.max_hops,
            quiet: duration(d.quiet_ms),
            edge_ttl: duration(d.edge_ttl_ms),
            max_open: d.max_open,
            max_source_lag: duration(d.max_source_lag_ms),
        }
    }
}

impl IncidentsConfig {
    /// The correlator's settings, when enabled.
    pub fn settings(&self) -> Option<IncidentSettings> {
        let ms = |d: &HumanDuration| d.0.as_millis().min(i64::MAX as u128) as i64;
        self.enabled.then(|| IncidentSettings {
            gap_ms: ms(&self.gap),
            max_hops: self.max_hops,
            quiet_ms: ms(&self.quiet),
            edge_ttl_ms: ms(&self.edge_ttl),
            max_open: self.max_open,
            max_source_lag_ms: ms(&self.max_source_lag),
        })
    }

    /// Refuses settings that would make every alert its own incident forever or
    /// merge everything, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.gap.0 < Duration::from_secs(1) {
            return Err(invalid("incidents.gap", "must be at least 1s"));
        }
        if self.max_hops > 16 {
            return Err(invalid(
                "incidents.max_hops",
                format!(
                    "{} is more than 16 (every service would be related)",
                    self.max_hops
                ),
            ));
        }
        if self.edge_ttl.0 < Duration::from_secs(60) {
            return Err(invalid(
                "incidents.edge_ttl",
                "must be at least 1m (calls are counted per minute)",
            ));
        }
        if self.max_source_lag.0 < Duration::from_secs(60) {
            return Err(invalid(
                "incidents.max_source_lag",
                "must be at least 1m (the span and log stages close minute windows)",
            ));
        }
        if self.max_open == 0 {
            return Err(invalid("incidents.max_open", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn defaults_are_the_correlators_and_bad_values_name_their_key() {
        let config = Config::default();
        assert_eq!(
            config.incidents.settings(),
            Some(IncidentSettings::default())
        );
        let cases = [
            ("[incidents]\ngap = \"10ms\"\n", "incidents.gap"),
            ("[incidents]\nmax_hops = 99\n", "incidents.max_hops"),
            ("[incidents]\nedge_ttl = \"5s\"\n", "incidents.edge_ttl"),
            ("[incidents]\nmax_open = 0\n", "incidents.max_open"),
            (
                "[incidents]\nmax_source_lag = \"1s\"\n",
                "incidents.max_source_lag",
            ),
            ("[incidents]\nhops = 2\n", "incidents"),
        ];
        for (text, key) in cases {
            let error = Config::from_toml(text).expect_err(text).to_string();
            assert!(error.contains(key), "{text}: {error}");
        }
        let set = Config::from_toml("[incidents]\ngap = \"2m\"\nmax_hops = 0\nenabled = true\n")
            .expect("valid");
        let settings = set.incidents.settings().expect("enabled");
        assert_eq!((settings.gap_ms, settings.max_hops), (120_000, 0));
        let off = Config::from_toml("[incidents]\nenabled = false\n").expect("valid");
        assert_eq!(off.incidents.settings(), None);
    }
}
