//! The live catalogue of log templates behind `GET /api/templates`.
//!
//! Owns the latest state of every template the shards have mined (text, count,
//! first and last sighting), updated once per flush from each shard's touched
//! templates; the lock is taken per flush and per request, never per line.

use std::collections::BTreeMap;
use std::sync::RwLock;

use cara_operators::logs::signals::TemplateState;
use serde::Serialize;

/// One template as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateView {
    /// Service.
    pub service: String,
    /// Template id (the `template_id` column of table `logs`).
    pub template_id: i64,
    /// Text, variables as `<*>`.
    pub template: String,
    /// Lines so far, summed over the partitions that saw it.
    pub count: u64,
    /// Event time of the first line, ms since the epoch.
    pub first_seen_ms: i64,
    /// Event time of the latest line, ms since the epoch.
    pub last_seen_ms: i64,
}

/// Per (service, template id), per source partition: partitions mine separately,
/// so counts add up across them.
type Entries = BTreeMap<(String, i64), BTreeMap<(String, i32), TemplateState>>;

/// Templates by service and id.
#[derive(Debug, Default)]
pub struct TemplateCatalog {
    entries: RwLock<Entries>,
}

impl TemplateCatalog {
    /// Takes in the templates one partition's flush touched.
    pub fn update(&self, topic: &str, partition: i32, templates: &[TemplateState]) {
        if templates.is_empty() {
            return;
        }
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        for t in templates {
            entries
                .entry((t.service.clone(), t.template_id))
                .or_default()
                .insert((topic.to_owned(), partition), t.clone());
        }
    }

    /// How many distinct templates each service has (a template mined by several
    /// partitions counts once).
    pub fn per_service(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        if let Ok(entries) = self.entries.read() {
            for (service, _) in entries.keys() {
                *counts.entry(service.clone()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Templates of `service` (all services when `None`), most frequent first.
    pub fn list(&self, service: Option<&str>, limit: usize) -> Vec<TemplateView> {
        let Ok(entries) = self.entries.read() else {
            return Vec::new();
        };
        let mut views: Vec<TemplateView> = entries
            .iter()
            .filter(|((s, _), _)| service.is_none_or(|want| want == s))
            .filter_map(|((s, id), by_partition)| {
                // The text of the partition that saw it last.
                let latest = by_partition.values().max_by_key(|t| t.last_seen_ms)?;
                Some(TemplateView {
                    service: s.clone(),
                    template_id: *id,
                    template: latest.template.clone(),
                    count: by_partition.values().map(|t| t.count).sum(),
                    first_seen_ms: by_partition.values().map(|t| t.first_seen_ms).min()?,
                    last_seen_ms: latest.last_seen_ms,
                })
            })
            .collect();
        views.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| (&a.service, a.template_id).cmp(&(&b.service, b.template_id)))
        });
        views.truncate(limit);
        views
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(service: &str, id: i64, text: &str, count: u64, last: i64) -> TemplateState {
        TemplateState {
            service: service.into(),
            template_id: id,
            template: text.into(),
            count,
            first_seen_ms: 10,
            last_seen_ms: last,
            changed: false,
            created: false,
        }
    }

    #[test]
    fn counts_add_up_over_partitions_and_filter_by_service() {
        let catalog = TemplateCatalog::default();
        catalog.update(
            "telemetry.logs",
            0,
            &[state("api", 1, "a <*>", 5, 100), state("db", 2, "b", 9, 50)],
        );
        catalog.update("telemetry.logs", 1, &[state("api", 1, "a <*> c", 4, 200)]);
        // A later flush of partition 0 replaces its earlier state.
        catalog.update("telemetry.logs", 0, &[state("api", 1, "a <*>", 7, 150)]);
        let all = catalog.list(None, 10);
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].service.as_str(), all[0].count), ("api", 11));
        assert_eq!(all[0].template, "a <*> c", "text of the latest sighting");
        let db = catalog.list(Some("db"), 10);
        assert_eq!(db.len(), 1);
        assert_eq!(db[0].count, 9);
        assert!(catalog.list(Some("none"), 10).is_empty());
        assert_eq!(catalog.list(None, 1).len(), 1);
        assert_eq!(
            catalog.per_service(),
            BTreeMap::from([("api".to_owned(), 1), ("db".to_owned(), 1)]),
            "a template two partitions mined counts once"
        );
    }
}
