//! The service dependency graph as the incident stage knows it: the calls
//! `caller → callee` the trace stage saw (table `service_graph`), each with the
//! event time it was last seen, so a call nobody made for `edge_ttl_ms` stops
//! connecting alerts. Answers the two questions correlation and root-cause ranking
//! ask: how many hops apart two services are (calls in either direction), and which
//! services a service depends on, directly or through others.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

/// Calls between services, by caller then callee, with when each was last seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceGraph {
    /// `caller → callee → last seen` (event time, ms).
    calls: BTreeMap<String, BTreeMap<String, i64>>,
}

impl ServiceGraph {
    /// Records that `caller` called `callee` at `at_ms`.
    pub fn observe(&mut self, caller: &str, callee: &str, at_ms: i64) {
        if caller == callee {
            return;
        }
        let seen = self
            .calls
            .entry(caller.to_owned())
            .or_default()
            .entry(callee.to_owned())
            .or_insert(at_ms);
        *seen = (*seen).max(at_ms);
    }

    /// Forgets calls last seen before `oldest_ms`.
    pub fn forget_before(&mut self, oldest_ms: i64) {
        self.calls.retain(|_, callees| {
            callees.retain(|_, seen| *seen >= oldest_ms);
            !callees.is_empty()
        });
    }

    /// Calls known.
    pub fn len(&self) -> usize {
        self.calls.values().map(BTreeMap::len).sum()
    }

    /// True when no call is known.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The services `service` calls.
    pub fn callees<'a>(&'a self, service: &str) -> impl Iterator<Item = &'a str> + 'a {
        self.calls
            .get(service)
            .into_iter()
            .flat_map(|callees| callees.keys().map(String::as_str))
    }

    /// Hops between two services over calls in either direction, if at most `limit`.
    pub fn hops(&self, from: &str, to: &str, limit: u32) -> Option<u32> {
        if from == to {
            return Some(0);
        }
        let mut seen = BTreeSet::from([from]);
        let mut frontier = VecDeque::from([(from, 0u32)]);
        while let Some((service, hops)) = frontier.pop_front() {
            if hops == limit {
                continue;
            }
            for next in self.neighbours(service) {
                if next == to {
                    return Some(hops + 1);
                }
                if seen.insert(next) {
                    frontier.push_back((next, hops + 1));
                }
            }
        }
        None
    }

    /// Every service `service` depends on: its callees, theirs, and so on.
    pub fn dependencies<'a>(&'a self, service: &'a str) -> BTreeSet<&'a str> {
        let mut found = BTreeSet::new();
        let mut frontier = vec![service];
        while let Some(next) = frontier.pop() {
            for callee in self.callees(next) {
                if callee != service && found.insert(callee) {
                    frontier.push(callee);
                }
            }
        }
        found
    }

    /// Services calling or called by `service`.
    fn neighbours<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let callers = self
            .calls
            .iter()
            .filter(move |(_, callees)| callees.contains_key(service))
            .map(|(caller, _)| caller.as_str());
        self.callees(service).chain(callers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// web → api → {db, cache}; batch → db.
    fn graph() -> ServiceGraph {
        let mut g = ServiceGraph::default();
        g.observe("web", "api", 10);
        g.observe("api", "db", 20);
        g.observe("api", "cache", 30);
        g.observe("batch", "db", 40);
        g
    }

    #[test]
    fn hops_count_calls_in_either_direction_up_to_the_limit() {
        let g = graph();
        let cases = [
            ("api", "api", 0, Some(0)),
            ("web", "api", 2, Some(1)),
            ("api", "web", 2, Some(1)),
            ("web", "db", 2, Some(2)),
            ("cache", "db", 2, Some(2)), // siblings under api
            ("web", "batch", 3, Some(3)),
            ("web", "batch", 2, None),
            ("web", "nowhere", 9, None),
        ];
        for (from, to, limit, expected) in cases {
            assert_eq!(
                g.hops(from, to, limit),
                expected,
                "{from} → {to} within {limit}"
            );
        }
    }

    #[test]
    fn dependencies_follow_calls_downwards_only() {
        let g = graph();
        assert_eq!(
            g.dependencies("web").into_iter().collect::<Vec<_>>(),
            ["api", "cache", "db"]
        );
        assert_eq!(g.dependencies("db").len(), 0);
        assert_eq!(
            g.dependencies("batch").into_iter().collect::<Vec<_>>(),
            ["db"]
        );
    }

    #[test]
    fn calls_not_seen_lately_are_forgotten_and_self_calls_ignored() {
        let mut g = graph();
        g.observe("db", "db", 50);
        g.observe("web", "api", 45); // seen again: kept
        assert_eq!(g.len(), 4);
        g.forget_before(25);
        assert_eq!(g.len(), 3, "api → db (seen at 20) is gone");
        assert_eq!(
            g.hops("web", "db", 5),
            None,
            "db is reached through batch only"
        );
    }
}
