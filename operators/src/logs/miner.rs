//! The online template miner: a Drain-style parse tree per service.
//!
//! Owns grouping log lines into templates as they stream by (He et al., "Drain: An
//! Online Log Parsing Approach with Fixed Depth Tree", ICWS 2017): a line is masked
//! ([`super::mask`]), routed by its token count and its first constant tokens to a
//! leaf, and joins the leaf's most similar template when enough of its tokens match;
//! the positions that differ become `<*>`. Otherwise it starts a new template.
//!
//! Beyond Drain:
//! - one tree per service, so services never share templates;
//! - `key=value` tokens generalise to `key=<*>` rather than losing their key;
//! - template ids are a hash of the service and the template's first text, so the
//!   same stream gives the same ids in every run, and a snapshot keeps them across
//!   restarts;
//! - memory is bounded: at most `max_templates` per service (the least recently
//!   used tenth is evicted when full, and counted), `max_children` per tree node,
//!   `max_tokens` per line, `max_services` trees (further services share one).
//!
//! Ties between equally similar templates go to the oldest, so the outcome depends
//! on the lines alone, not on hash-map order.

use serde::{Deserialize, Serialize};

use super::mask::{self, Masked, WILDCARD};
use super::slots::Slots;

type FastMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::FixedState>;

fn fast_map<K, V>() -> FastMap<K, V> {
    hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0x6361_7261))
}

/// The deepest route through a tree.
pub const MAX_PREFIX_TOKENS: usize = 8;

/// Tuning and limits of the miner. One configuration serves every service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinerConfig {
    /// Share of a line's tokens that must equal a template's constant tokens for the
    /// line to join it, in (0, 1].
    pub similarity: f64,
    /// Constant tokens (after the token count) that route a line through the tree.
    pub prefix_tokens: usize,
    /// Children per tree node; further distinct tokens share the wildcard child.
    pub max_children: usize,
    /// Templates kept per service.
    pub max_templates: usize,
    /// Services with a tree of their own; the rest share one.
    pub max_services: usize,
    /// Tokens per line; the remainder of a longer line is its last token.
    pub max_tokens: usize,
    /// Lines after which a template's constant tokens no longer generalise: a line
    /// differing in one of them starts a template of its own (0: never settle).
    pub settle_after: u64,
}

impl Default for MinerConfig {
    fn default() -> Self {
        Self {
            similarity: 0.8,
            prefix_tokens: 2,
            max_children: 100,
            max_templates: 5_000,
            max_services: 10_000,
            max_tokens: 128,
            settle_after: 100,
        }
    }
}

/// Why a miner configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MinerConfigError {
    /// A value outside its range.
    #[error("{key} = {value}: {reason}")]
    OutOfRange {
        /// The key, as written in config.
        key: &'static str,
        /// The refused value.
        value: String,
        /// What it must be.
        reason: &'static str,
    },
}

impl MinerConfig {
    /// Checks the ranges of every field.
    pub fn validate(&self) -> Result<(), MinerConfigError> {
        let out =
            |key, value: String, reason| Err(MinerConfigError::OutOfRange { key, value, reason });
        if !(self.similarity > 0.0 && self.similarity <= 1.0) {
            return out(
                "similarity",
                self.similarity.to_string(),
                "must be in (0, 1]",
            );
        }
        if self.prefix_tokens > MAX_PREFIX_TOKENS {
            return out(
                "prefix_tokens",
                self.prefix_tokens.to_string(),
                "must be at most 8",
            );
        }
        if self.max_children == 0 {
            return out("max_children", "0".into(), "must be at least 1");
        }
        if self.max_templates < 10 {
            return out(
                "max_templates",
                self.max_templates.to_string(),
                "must be at least 10",
            );
        }
        if self.max_services == 0 {
            return out("max_services", "0".into(), "must be at least 1");
        }
        if self.max_tokens < 2 {
            return out(
                "max_tokens",
                self.max_tokens.to_string(),
                "must be at least 2",
            );
        }
        Ok(())
    }
}

/// A template: constant tokens and `<*>` slots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Stable id: a hash of the service and the template's first text.
    pub id: u64,
    /// One entry per token: the constant text, `<*>`, or `key=<*>`.
    pub slots: Slots,
    /// Lines matched so far (including the first).
    pub count: u64,
    /// Event time of the first line, epoch ms.
    pub first_seen_ms: i64,
    /// Event time of the latest line, epoch ms.
    pub last_seen_ms: i64,
    /// Creation order within the service; ties go to the oldest.
    created: u64,
    /// Logical time of the last match, for eviction.
    last_used: u64,
    /// The tree route to this template's leaf (`<*>` for the wildcard child).
    route: Vec<Box<str>>,
}

impl Template {
    /// The template as text, variables written `<*>`.
    pub fn text(&self) -> &str {
        self.slots.as_text()
    }

    /// Appends the variable parts of a line of this template, given its tokens.
    fn parameters<'m>(&self, tokens: &[&'m str], out: &mut Vec<&'m str>) {
        for (slot, token) in self.slots.iter().zip(tokens.iter().copied()) {
            if slot == WILDCARD {
                out.push(token);
            } else if let Some(key) = slot.strip_suffix(WILDCARD) {
                if let Some(value) = token.strip_prefix(key) {
                    out.push(value);
                }
            }
        }
    }
}

/// What the miner did with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineMatch {
    /// The template the line belongs to.
    pub template_id: u64,
    /// The line started a new template (its first sighting).
    pub created: bool,
    /// The line changed an existing template's text (a token became `<*>`).
    pub generalised: bool,
}

/// Counters of the limits the miner enforced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerCounters {
    /// Templates evicted because a service reached `max_templates`.
    pub templates_evicted: u64,
    /// Lines of services beyond `max_services`, mined in the shared tree.
    pub lines_of_overflow_services: u64,
}

#[derive(Debug)]
struct Node {
    children: FastMap<Box<str>, Node>,
    wildcard: Option<Box<Node>>,
    templates: Vec<u32>,
}

impl Default for Node {
    fn default() -> Self {
        Self::new()
    }
}

impl Node {
    fn new() -> Self {
        Self {
            children: fast_map(),
            wildcard: None,
            templates: Vec::new(),
        }
    }

    fn wildcard_child(&mut self) -> &mut Node {
        self.wildcard.get_or_insert_with(|| Box::new(Node::new()))
    }

    fn child(&mut self, key: &str) -> &mut Node {
        if key == WILDCARD {
            return self.wildcard_child();
        }
        // One lookup; the key is only copied on a miss.
        self.children.entry_ref(key).or_default()
    }

    /// Drops template indices `keep` rejects and nodes left empty.
    fn retain(&mut self, keep: &impl Fn(u32) -> bool) -> bool {
        self.templates.retain(|t| keep(*t));
        self.children.retain(|_, child| child.retain(keep));
        if let Some(child) = &mut self.wildcard {
            if !child.retain(keep) {
                self.wildcard = None;
            }
        }
        !(self.templates.is_empty() && self.children.is_empty() && self.wildcard.is_none())
    }
}

/// One service's tree and templates.
#[derive(Debug)]
struct ServiceTree {
    /// Roots by token count.
    roots: Vec<Node>,
    /// Template slab; `None` marks a free slot.
    templates: Vec<Option<Template>>,
    free: Vec<u32>,
    live: usize,
    ids: FastMap<u64, u32>,
    clock: u64,
    created: u64,
}

impl ServiceTree {
    fn new() -> Self {
        Self {
            roots: Vec::new(),
            templates: Vec::new(),
            free: Vec::new(),
            live: 0,
            ids: fast_map(),
            clock: 0,
            created: 0,
        }
    }

    fn root(&mut self, len: u32) -> &mut Node {
        let len = len as usize;
        if self.roots.len() <= len {
            self.roots.resize_with(len + 1, Node::new);
        }
        &mut self.roots[len]
    }

    fn leaf(&mut self, route: &[Box<str>], len: u32) -> &mut Node {
        let mut node = self.root(len);
        for key in route {
            node = node.child(key);
        }
        node
    }

    fn insert(&mut self, template: Template) -> u32 {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.templates.push(None);
                (self.templates.len() - 1) as u32
            }
        };
        let len = template.slots.len() as u32;
        let route = template.route.clone();
        self.ids.insert(template.id, index);
        self.templates[index as usize] = Some(template);
        self.live += 1;
        self.leaf(&route, len).templates.push(index);
        index
    }

    /// Evicts the least recently used tenth of the templates.
    fn evict(&mut self) -> u64 {
        let mut ages: Vec<(u64, u32)> = self
            .templates
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().map(|t| (t.last_used, i as u32)))
            .collect();
        let n = (ages.len() / 10).max(1);
        ages.select_nth_unstable(n - 1);
        for (_, index) in &ages[..n] {
            if let Some(t) = self.templates[*index as usize].take() {
                self.ids.remove(&t.id);
                self.free.push(*index);
                self.live -= 1;
            }
        }
        let slab = &self.templates;
        let keep = |i: u32| slab[i as usize].is_some();
        for root in &mut self.roots {
            root.retain(&keep);
        }
        n as u64
    }
}

/// Mines templates from the lines of many services.
#[derive(Debug)]
pub struct TemplateMiner {
    config: MinerConfig,
    services: FastMap<Box<str>, ServiceTree>,
    counters: MinerCounters,
    /// Masked tokens of the line being parsed; empty between calls.
    scratch: Vec<Masked<'static>>,
    /// The same line's tokens; empty between calls.
    scratch_tokens: Vec<&'static str>,
}

/// The name of the tree shared by services beyond `max_services`.
pub const OVERFLOW_SERVICE: &str = "<other>";

impl TemplateMiner {
    /// An empty miner.
    pub fn new(config: MinerConfig) -> Self {
        Self {
            config,
            services: fast_map(),
            counters: MinerCounters::default(),
            scratch: Vec::new(),
            scratch_tokens: Vec::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &MinerConfig {
        &self.config
    }

    /// Limits enforced so far.
    pub fn counters(&self) -> MinerCounters {
        self.counters
    }

    /// Templates alive, over all services.
    pub fn template_count(&self) -> usize {
        self.services.values().map(|s| s.live).sum()
    }

    /// The service names with trees, sorted.
    pub fn services(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.services.keys().map(|k| &**k).collect();
        names.sort_unstable();
        names
    }

    /// A service's live templates, oldest first.
    pub fn templates(&self, service: &str) -> Vec<&Template> {
        let Some(tree) = self.services.get(service) else {
            return Vec::new();
        };
        let mut list: Vec<&Template> = tree.templates.iter().flatten().collect();
        list.sort_unstable_by_key(|t| t.created);
        list
    }

    /// One template by service and id (a service without a tree of its own has its
    /// templates in the shared overflow tree).
    pub fn template(&self, service: &str, id: u64) -> Option<&Template> {
        let tree = self
            .services
            .get(service)
            .or_else(|| self.services.get(OVERFLOW_SERVICE))?;
        let index = *tree.ids.get(&id)?;
        tree.templates.get(index as usize)?.as_ref()
    }

    /// The tree a service's lines go to (its own, or the shared overflow tree).
    fn tree_name<'s>(&mut self, service: &'s str) -> &'s str {
        if self.services.len() < self.config.max_services || self.services.contains_key(service) {
            service
        } else {
            self.counters.lines_of_overflow_services += 1;
            OVERFLOW_SERVICE
        }
    }

    /// Mines one line of `service` at event time `ts_ms`. Returns the template the
    /// line belongs to; [`TemplateMiner::template`] gives its text.
    pub fn parse(&mut self, service: &str, message: &str, ts_ms: i64) -> LineMatch {
        self.mine(service, message, ts_ms, None)
    }

    /// Mines one line like [`parse`](Self::parse), appends its parameters (the
    /// parts its template has as `<*>`) to `params`, and returns its template too.
    pub fn parse_line<'m>(
        &mut self,
        service: &str,
        message: &'m str,
        ts_ms: i64,
        params: &mut Vec<&'m str>,
    ) -> (LineMatch, Option<&Template>) {
        let line = self.mine(service, message, ts_ms, Some(params));
        (line, self.template(service, line.template_id))
    }

    /// Mines one line; with `params`, appends its parameters.
    fn mine<'m>(
        &mut self,
        service: &str,
        message: &'m str,
        ts_ms: i64,
        params: Option<&mut Vec<&'m str>>,
    ) -> LineMatch {
        let service = self.tree_name(service);
        // Reuse the scratch vectors' allocations for this call's borrowed tokens
        // (an empty vector converts in place).
        let mut masked: Vec<Masked<'_>> = std::mem::take(&mut self.scratch)
            .into_iter()
            .map(|_| Masked::Wild)
            .collect();
        let mut tokens: Vec<&str> = std::mem::take(&mut self.scratch_tokens)
            .into_iter()
            .map(|_| "")
            .collect();
        let keep_tokens = params.is_some().then_some(&mut tokens);
        mask::tokenize_masked(message, self.config.max_tokens, &mut masked, keep_tokens);
        let result = self.parse_masked(service, &masked, ts_ms);
        if let Some(params) = params {
            if let Some(template) = self.template(service, result.template_id) {
                template.parameters(&tokens, params);
            }
        }
        masked.clear();
        tokens.clear();
        self.scratch = masked.into_iter().map(|_| Masked::Wild).collect();
        self.scratch_tokens = tokens.into_iter().map(|_| "").collect();
        result
    }

    fn parse_masked(&mut self, service: &str, masked: &[Masked<'_>], ts_ms: i64) -> LineMatch {
        let config = &self.config;
        let tree = self
            .services
            .entry_ref(service)
            .or_insert_with(ServiceTree::new);
        tree.clock += 1;
        let clock = tree.clock;
        let len = masked.len() as u32;

        // Route: the first constant tokens, or the wildcard child.
        if tree.roots.len() <= len as usize {
            tree.roots.resize_with(len as usize + 1, Node::new);
        }
        let mut node = &mut tree.roots[len as usize];
        let mut route = [WILDCARD; MAX_PREFIX_TOKENS];
        let depth = config
            .prefix_tokens
            .min(MAX_PREFIX_TOKENS)
            .min(masked.len());
        for (token, step) in masked.iter().zip(&mut route[..depth]) {
            let key = match token {
                Masked::Const(text)
                    if node.children.len() < config.max_children
                        || node.children.contains_key(*text) =>
                {
                    text
                }
                _ => WILDCARD,
            };
            *step = key;
            node = node.child(key);
        }

        // The most similar template in the leaf; ties go to the oldest. Every
        // template of a leaf has the line's length, so counts compare directly.
        let needed = needed_matches(config.similarity, masked.len());
        let mut best: Option<(Similarity, u64, u32)> = None;
        for &index in &node.templates {
            let Some(template) = tree.templates[index as usize].as_ref() else {
                continue;
            };
            // A settled template's constants are part of its identity.
            let settled = config.settle_after > 0 && template.count >= config.settle_after;
            let Some(sim) = similarity(&template.slots, masked, needed, settled) else {
                continue;
            };
            let better = match &best {
                None => true,
                Some((b, created, _)) => {
                    (sim.same, sim.params) > (b.same, b.params)
                        || ((sim.same, sim.params) == (b.same, b.params)
                            && template.created < *created)
                }
            };
            if better {
                best = Some((sim, template.created, index));
            }
        }

        if let Some((sim, _, index)) = best {
            let template = tree.templates[index as usize]
                .as_mut()
                .expect("leaf holds live templates");
            let generalised = sim.differs > 0 && generalise(&mut template.slots, masked);
            template.count += 1;
            template.last_seen_ms = template.last_seen_ms.max(ts_ms);
            template.first_seen_ms = template.first_seen_ms.min(ts_ms);
            template.last_used = clock;
            return LineMatch {
                template_id: template.id,
                created: false,
                generalised,
            };
        }

        if tree.live >= config.max_templates {
            self.counters.templates_evicted += tree.evict();
        }
        let slots = Slots::from_masked(masked);
        let mut id = template_id(service, &slots, 0);
        let mut salt = 0;
        while tree.ids.contains_key(&id) {
            salt += 1;
            id = template_id(service, &slots, salt);
        }
        tree.created += 1;
        tree.insert(Template {
            id,
            slots,
            count: 1,
            first_seen_ms: ts_ms,
            last_seen_ms: ts_ms,
            created: tree.created,
            last_used: clock,
            route: route[..depth].iter().map(|k| Box::from(*k)).collect(),
        });
        LineMatch {
            template_id: id,
            created: true,
            generalised: false,
        }
    }

    /// The miner's state, to be stored in a checkpoint.
    pub fn snapshot(&self) -> MinerSnapshot {
        let mut services: Vec<ServiceSnapshot> = self
            .services
            .iter()
            .map(|(name, tree)| {
                let mut templates: Vec<Template> =
                    tree.templates.iter().flatten().cloned().collect();
                templates.sort_unstable_by_key(|t| t.created);
                ServiceSnapshot {
                    service: name.to_string(),
                    clock: tree.clock,
                    created: tree.created,
                    templates,
                }
            })
            .collect();
        services.sort_unstable_by(|a, b| a.service.cmp(&b.service));
        MinerSnapshot {
            counters: self.counters,
            services,
        }
    }

    /// A miner continuing from `snapshot`.
    pub fn restore(config: MinerConfig, snapshot: MinerSnapshot) -> Self {
        let mut miner = Self::new(config);
        miner.counters = snapshot.counters;
        for service in snapshot.services {
            let mut tree = ServiceTree::new();
            tree.clock = service.clock;
            tree.created = service.created;
            for template in service.templates {
                tree.insert(template);
            }
            miner.services.insert(service.service.into(), tree);
        }
        miner
    }
}

/// Serialised miner state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinerSnapshot {
    counters: MinerCounters,
    services: Vec<ServiceSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSnapshot {
    service: String,
    clock: u64,
    created: u64,
    templates: Vec<Template>,
}

/// How a line agrees with a template of its length.
#[derive(Debug, Clone, Copy)]
struct Similarity {
    /// Positions that agree: equal constants, or a variable in both.
    same: usize,
    /// Template variables meeting a constant (`<*>` or `key=<*>` slots).
    params: usize,
    /// Constant slots the line differs in (they would become variables).
    differs: usize,
}

/// The fewest agreeing positions of `len` that reach `threshold`.
fn needed_matches(threshold: f64, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let reaches = |same: usize| same as f64 / len as f64 >= threshold;
    // `ceil` can be one off either way in floating point; settle it exactly.
    let mut same = ((threshold * len as f64).ceil().max(0.0) as usize).min(len);
    while same > 0 && reaches(same - 1) {
        same -= 1;
    }
    while same < len && !reaches(same) {
        same += 1;
    }
    same
}

/// How `masked` agrees with `slots`, or `None` as soon as it cannot reach `needed`
/// agreeing positions (or, for a `settled` template, differs in a constant).
fn similarity(
    slots: &Slots,
    masked: &[Masked<'_>],
    needed: usize,
    settled: bool,
) -> Option<Similarity> {
    let allowed_misses = slots.len().saturating_sub(needed);
    let mut sim = Similarity {
        same: 0,
        params: 0,
        differs: 0,
    };
    let mut misses = 0;
    const WILD: &[u8] = WILDCARD.as_bytes();
    for (slot, token) in slots.iter_bytes().zip(masked) {
        if slot == WILD {
            // A variable meeting a variable is agreement; a constant meeting a
            // variable is only a parameter.
            if token.is_variable() {
                sim.same += 1;
                continue;
            }
            sim.params += 1;
        } else if token.matches_bytes(slot) {
            sim.same += 1;
            continue;
        } else if slot.ends_with(WILD)
            && std::str::from_utf8(&slot[..slot.len() - WILD.len()])
                .is_ok_and(|key| token.has_key(key))
        {
            // `user=root` meeting `user=<*>`.
            sim.params += 1;
        } else if settled {
            return None;
        } else {
            sim.differs += 1;
        }
        misses += 1;
        if misses > allowed_misses {
            return None;
        }
    }
    Some(sim)
}

/// Turns the slots that differ from the line into variables; whether any changed.
fn generalise(slots: &mut Slots, masked: &[Masked<'_>]) -> bool {
    let mut changed = false;
    let rewritten = slots.rewritten(|i, slot| {
        let token = masked.get(i)?;
        if slot == WILDCARD || token.matches_text(slot) {
            return None;
        }
        changed = true;
        // Two values of one key keep the key: `tty=a`, `tty=b` -> `tty=<*>`.
        let key = match token {
            Masked::KeyWild(key) => Some(*key),
            Masked::Const(text) => text
                .find(['=', ':'])
                .map(|at| &text[..=at])
                .filter(|key| key.len() > 1),
            Masked::Wild => None,
        };
        Some(match key {
            Some(key) if slot.starts_with(key) && slot.len() > key.len() => {
                format!("{key}{WILDCARD}")
            }
            _ => WILDCARD.to_owned(),
        })
    });
    if changed {
        *slots = rewritten;
    }
    changed
}

/// FNV-1a of the service, the first template text and a collision salt.
fn template_id(service: &str, slots: &Slots, salt: u32) -> u64 {
    let mut hash = crate::stable_hash::Fnv1a::default();
    hash.feed(service.as_bytes()).feed(&[0x1f]);
    for slot in slots.iter() {
        hash.feed(slot.as_bytes()).feed(&[0x1e]);
    }
    hash.feed(&salt.to_le_bytes());
    // Keep ids within i64 so SQL engines without unsigned types read them as is.
    hash.finish() & (i64::MAX as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn miner() -> TemplateMiner {
        TemplateMiner::new(MinerConfig::default())
    }

    fn text(miner: &TemplateMiner, service: &str, m: LineMatch) -> String {
        miner
            .template(service, m.template_id)
            .map(|t| t.text().to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn lines_of_one_event_share_a_template_that_generalises() {
        let mut m = miner();
        let a = m.parse("api", "login of user alice from web", 1);
        assert!(a.created);
        assert_eq!(text(&m, "api", a), "login of user alice from web");
        let b = m.parse("api", "login of user bob from web", 2);
        assert_eq!(b.template_id, a.template_id);
        assert!(!b.created && b.generalised);
        assert_eq!(text(&m, "api", b), "login of user <*> from web");
        let c = m.parse("api", "login of user carol from web", 3);
        assert!(!c.generalised);
        let t = m.template("api", a.template_id).unwrap();
        assert_eq!((t.count, t.first_seen_ms, t.last_seen_ms), (3, 1, 3));
    }

    #[test]
    fn different_events_and_services_get_different_templates() {
        let mut m = miner();
        let a = m.parse("api", "connection opened to 10.0.0.1", 0);
        let b = m.parse("api", "cache flushed after eviction storm", 0);
        let c = m.parse("db", "connection opened to 10.0.0.1", 0);
        let d = m.parse("api", "connection opened to 10.0.0.2", 0);
        assert_ne!(a.template_id, b.template_id);
        assert_ne!(a.template_id, c.template_id);
        assert_eq!(a.template_id, d.template_id);
        assert!(!d.generalised, "the address was masked from the start");
        assert_eq!(m.template_count(), 3);
        assert_eq!(m.services(), ["api", "db"]);
    }

    #[test]
    fn key_values_generalise_keeping_the_key() {
        let mut m = miner();
        let a = m.parse("s", "session opened by login tty:pts mode:fast", 0);
        let b = m.parse("s", "session opened by login tty:console mode:fast", 0);
        assert_eq!(a.template_id, b.template_id);
        assert_eq!(
            text(&m, "s", a),
            "session opened by login tty:<*> mode:fast"
        );
    }

    #[test]
    fn parameters_are_extracted_in_order() {
        let mut m = miner();
        let mut params = Vec::new();
        m.parse_line("s", "sent 42 bytes to 10.1.1.1 uid=7", 0, &mut params);
        assert_eq!(params, ["42", "10.1.1.1", "7"]);
        // A key that generalised from constants (`tty:<*>`) yields its value.
        params.clear();
        m.parse_line("s", "login on tty:pts from 10.0.0.1", 0, &mut params);
        m.parse_line("s", "login on tty:console from 10.0.0.2", 0, &mut params);
        assert_eq!(params, ["10.0.0.1", "console", "10.0.0.2"]);
    }

    #[test]
    fn ids_do_not_depend_on_the_run_and_survive_a_restore() {
        let lines = [
            "job 1 started on node a",
            "job 2 started on node b",
            "disk full on /dev/sda1",
            "job 3 finished with status ok",
        ];
        let mut first = miner();
        let ids: Vec<u64> = lines
            .iter()
            .map(|l| first.parse("s", l, 0).template_id)
            .collect();
        let mut second = miner();
        let again: Vec<u64> = lines
            .iter()
            .map(|l| second.parse("s", l, 0).template_id)
            .collect();
        assert_eq!(ids, again);

        let snapshot = first.snapshot();
        let json = serde_json::to_string(&snapshot).unwrap();
        let mut restored =
            TemplateMiner::restore(MinerConfig::default(), serde_json::from_str(&json).unwrap());
        assert_eq!(restored.snapshot(), snapshot);
        let more = [
            "job 9 started on node z",
            "disk full on /dev/sdb2",
            "brand new event here",
        ];
        for line in more {
            assert_eq!(first.parse("s", line, 5), restored.parse("s", line, 5));
        }
        assert_eq!(restored.snapshot(), first.snapshot());
    }

    #[test]
    fn templates_per_service_are_bounded_and_evictions_counted() {
        let config = MinerConfig {
            max_templates: 50,
            ..MinerConfig::default()
        };
        let mut m = TemplateMiner::new(config);
        for i in 0..1000u32 {
            // Distinct words so every line is its own template.
            let word: String = format!("{i:b}").replace('0', "x").replace('1', "y");
            m.parse("s", &format!("event {word} happened"), 0);
        }
        assert!(m.template_count() <= 50, "{}", m.template_count());
        assert!(m.counters().templates_evicted >= 950);
        // The most recent template survives eviction.
        let word = format!("{:b}", 999).replace('0', "x").replace('1', "y");
        let last = m.parse("s", &format!("event {word} happened"), 0);
        assert!(!last.created);
    }

    #[test]
    fn memory_stays_bounded_under_a_stream_of_random_lines() {
        // xorshift: random words, random lengths, random first tokens.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut line = || {
            let words = 1 + next() % 12;
            (0..words)
                .map(|_| {
                    let len = 1 + next() % 8;
                    (0..len)
                        .map(|_| char::from(b'a' + (next() % 26) as u8))
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let config = MinerConfig {
            max_templates: 200,
            ..MinerConfig::default()
        };
        let mut m = TemplateMiner::new(config);
        let mut sizes = Vec::new();
        for round in 0..5 {
            for _ in 0..20_000 {
                m.parse("s", &line(), round);
            }
            assert!(m.template_count() <= 200, "{}", m.template_count());
            sizes.push(serde_json::to_string(&m.snapshot()).unwrap().len());
        }
        // The state after 100k lines is no bigger than after 20k (allowing for the
        // spread of random line lengths).
        assert!(sizes[4] < sizes[0] * 3 / 2, "{sizes:?}");
        assert!(m.counters().templates_evicted > 90_000);
    }

    #[test]
    fn services_beyond_the_limit_share_the_overflow_tree() {
        let config = MinerConfig {
            max_services: 2,
            ..MinerConfig::default()
        };
        let mut m = TemplateMiner::new(config);
        m.parse("a", "hello", 0);
        m.parse("b", "hello", 0);
        let c = m.parse("c", "hello", 0);
        assert_eq!(m.services(), ["<other>", "a", "b"]);
        assert_eq!(m.counters().lines_of_overflow_services, 1);
        // Its template is found under its own name, with its parameters.
        assert_eq!(
            m.template("c", c.template_id).map(Template::text),
            Some("hello")
        );
        let mut params = Vec::new();
        let (line, template) = m.parse_line("d", "hello 42", 1, &mut params);
        assert_eq!(template.map(Template::text), Some("hello <*>"));
        assert_eq!((line.created, params), (true, vec!["42"]));
    }

    #[test]
    fn needed_matches_is_the_least_count_reaching_the_threshold() {
        for len in 0..200usize {
            for threshold in [0.1, 0.5, 0.7, 0.8, 0.85, 1.0] {
                let brute = (0..=len)
                    .find(|s| len == 0 || *s as f64 / len as f64 >= threshold)
                    .unwrap_or(len);
                assert_eq!(
                    needed_matches(threshold, len),
                    brute,
                    "{threshold} of {len}"
                );
            }
        }
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad = MinerConfig {
            similarity: 1.5,
            ..MinerConfig::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("similarity = 1.5"));
        assert!(MinerConfig::default().validate().is_ok());
    }
}
