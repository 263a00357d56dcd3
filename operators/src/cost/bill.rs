//! The bill of one resource for one window, split over its owners.
//!
//! Owns the rule, a pure function of the window's usage ([`bill`]): the resource is
//! paid for at its capacity (or its usage, when larger or when no capacity is
//! known), one price computation gives the window's bill, and the bill is split in
//! proportion to what each owner used, what no owner used (shared: usage without an
//! owner, or by an owner configured as shared) and what nobody used (idle:
//! capacity beyond usage). The shared and idle parts are then spread over the owners
//! by their [`SpreadRule`]; an amount with no one to spread it to stays on a line of
//! its own ([`SHARED`], [`IDLE`]). Every split is [`split_exact`], so the lines add
//! up to the bill exactly.

use std::collections::{BTreeMap, BTreeSet};

use super::money::{price_micros, split_exact, Micros};
use super::{Prices, Resource, SpreadRule};

/// The owner of shared cost nobody could be charged for.
pub const SHARED: &str = "(shared)";
/// The owner of idle cost nobody could be charged for.
pub const IDLE: &str = "(idle)";

/// One resource's usage in a window, in its base units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceUsage {
    /// Used by each owner (owners charged directly).
    pub by_owner: BTreeMap<String, u128>,
    /// Used by nobody named: usage without an owner, or by a shared owner.
    pub shared: u128,
    /// Paid for in the window (capacity × time), when known.
    pub capacity: Option<u128>,
}

impl ResourceUsage {
    /// Adds `amount` used by `owner` (`None`: no owner). Usage of an owner in
    /// `shared_owners` is shared.
    pub fn add(&mut self, owner: Option<&str>, amount: u128, shared_owners: &[String]) {
        match owner {
            Some(owner) if !shared_owners.iter().any(|s| s == owner) => {
                let used = self.by_owner.entry(owner.to_owned()).or_default();
                *used = used.saturating_add(amount);
            }
            _ => self.shared = self.shared.saturating_add(amount),
        }
    }

    /// Everything used.
    pub fn used(&self) -> u128 {
        self.by_owner
            .values()
            .fold(self.shared, |sum, u| sum.saturating_add(*u))
    }
}

/// How a window's bill is split.
#[derive(Debug, Clone, PartialEq)]
pub struct BillSettings {
    /// The price table.
    pub prices: Prices,
    /// Where shared cost goes.
    pub shared: SpreadRule,
    /// Where idle cost goes.
    pub idle: SpreadRule,
}

/// One owner's part of one resource's bill.
#[derive(Debug, Clone, PartialEq)]
pub struct CostLine {
    /// The owner ([`SHARED`] or [`IDLE`] for an amount nobody could be charged).
    pub owner: String,
    /// What the owner used, in the resource's price unit.
    pub usage: f64,
    /// The cost of that usage.
    pub cost: Micros,
    /// The owner's part of the shared cost.
    pub shared: Micros,
    /// The owner's part of the idle cost.
    pub idle: Micros,
}

impl CostLine {
    /// Everything the owner is charged.
    pub fn total(&self) -> Micros {
        self.cost + self.shared + self.idle
    }
}

/// One resource's bill for a window.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceBill {
    /// What the window of the resource costs in all.
    pub total: Micros,
    /// Its split, one line per owner, in owner order.
    pub lines: Vec<CostLine>,
}

/// The category of a part of the bill, before spreading.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Owner(String),
    Shared,
    Idle,
}

/// The bill of `resource` for a window with `usage` (see the module docs).
pub fn bill(resource: Resource, usage: &ResourceUsage, settings: &BillSettings) -> ResourceBill {
    let used = usage.used();
    let paid = usage.capacity.map_or(used, |capacity| capacity.max(used));
    let total = price_micros(resource.in_price_units(paid), settings.prices.of(resource));
    let mut weights: Vec<(Part, u128)> = usage
        .by_owner
        .iter()
        .map(|(owner, used)| (Part::Owner(owner.clone()), *used))
        .collect();
    weights.push((Part::Shared, usage.shared));
    weights.push((Part::Idle, paid - used));
    let mut lines: BTreeMap<String, CostLine> = BTreeMap::new();
    let mut shared_total = 0;
    let mut idle_total = 0;
    for (part, amount) in split_exact(total, &weights) {
        match part {
            Part::Owner(owner) => {
                let base = usage.by_owner.get(&owner).copied().unwrap_or(0);
                lines.insert(
                    owner.clone(),
                    CostLine {
                        owner,
                        usage: resource.in_price_units(base),
                        cost: amount,
                        shared: 0,
                        idle: 0,
                    },
                );
            }
            Part::Shared => shared_total = amount,
            Part::Idle => idle_total = amount,
        }
    }
    spread(
        &mut lines,
        shared_total,
        &settings.shared,
        usage,
        SHARED,
        |l| &mut l.shared,
    );
    spread(&mut lines, idle_total, &settings.idle, usage, IDLE, |l| {
        &mut l.idle
    });
    ResourceBill {
        total,
        lines: lines.into_values().collect(),
    }
}

/// Spreads `amount` over the owners `rule` names into the field `part` picks; what
/// has no one to go to stays on the line of `nobody`.
fn spread(
    lines: &mut BTreeMap<String, CostLine>,
    amount: Micros,
    rule: &SpreadRule,
    usage: &ResourceUsage,
    nobody: &str,
    part: impl Fn(&mut CostLine) -> &mut Micros,
) {
    if amount == 0 {
        return;
    }
    let weights: Vec<(String, u128)> = match rule {
        SpreadRule::Proportional => usage
            .by_owner
            .iter()
            .map(|(owner, used)| (owner.clone(), *used))
            .collect(),
        SpreadRule::Even => usage
            .by_owner
            .iter()
            .filter(|(_, used)| **used > 0)
            .map(|(owner, _)| (owner.clone(), 1))
            .collect(),
        SpreadRule::To(owners) => owners
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|owner| (owner.clone(), 1))
            .collect(),
    };
    let parts = split_exact(amount, &weights);
    let spread_to_someone = parts.iter().any(|(_, p)| *p > 0);
    let parts = match spread_to_someone {
        true => parts,
        false => vec![(nobody.to_owned(), amount)],
    };
    for (owner, amount) in parts {
        if amount == 0 {
            continue;
        }
        let line = lines.entry(owner.clone()).or_insert_with(|| CostLine {
            owner,
            usage: 0.0,
            cost: 0,
            shared: 0,
            idle: 0,
        });
        *part(line) += amount;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn settings(shared: SpreadRule, idle: SpreadRule) -> BillSettings {
        BillSettings {
            prices: Prices::default(),
            shared,
            idle,
        }
    }

    fn usage(owners: &[(&str, u128)], shared: u128, capacity: Option<u128>) -> ResourceUsage {
        ResourceUsage {
            by_owner: owners.iter().map(|(o, u)| (o.to_string(), *u)).collect(),
            shared,
            capacity,
        }
    }

    /// (owner, usage, cost, shared, idle) of each line.
    fn lines(b: &ResourceBill) -> Vec<(&str, f64, Micros, Micros, Micros)> {
        b.lines
            .iter()
            .map(|l| (l.owner.as_str(), l.usage, l.cost, l.shared, l.idle))
            .collect()
    }

    /// A reference bill computed by hand: 4 cores for an hour at 0.05 a core-hour
    /// (0.20, 200,000 micro-units); team-a used 1.5 core-hours, team-b 0.5 and
    /// unlabelled work 0.25; 1.75 idle. By core-hours the parts are 75,000 (a),
    /// 25,000 (b), 12,500 shared and 87,500 idle; shared and idle go 3 : 1 to a and b.
    #[test]
    fn a_reference_bill_with_shared_and_idle_parts() {
        let core_hour = Resource::Cpu.base_units_per_price_unit() as u128;
        let quarter = core_hour / 4;
        let mut s = settings(SpreadRule::Proportional, SpreadRule::Proportional);
        s.prices.cpu_core_hour = 0.05;
        let b = bill(
            Resource::Cpu,
            &usage(
                &[("team-a", 6 * quarter), ("team-b", 2 * quarter)],
                quarter,
                Some(4 * core_hour),
            ),
            &s,
        );
        assert_eq!(b.total, 200_000);
        assert_eq!(
            lines(&b),
            vec![
                ("team-a", 1.5, 75_000, 9_375, 65_625),
                ("team-b", 0.5, 25_000, 3_125, 21_875),
            ]
        );
    }

    /// Rounding by hand: 100 and 200 GiB held for an hour (no capacity known) at
    /// 0.04 a GiB-month of 730 hours: 300/730 × 0.04 = 0.0164383… → 16,438
    /// micro-units. Shares 5,479.45 and 10,958.90: 5,479 and 10,958, and the one
    /// micro-unit left goes to the larger remainder (team-b).
    #[test]
    fn a_reference_bill_that_rounds() {
        let gib_hour = Resource::Memory.base_units_per_price_unit() as u128;
        let s = settings(SpreadRule::Proportional, SpreadRule::Proportional);
        let b = bill(
            Resource::Storage,
            &usage(
                &[("team-a", 100 * gib_hour), ("team-b", 200 * gib_hour)],
                0,
                None,
            ),
            &s,
        );
        assert_eq!(b.total, 16_438);
        let got: Vec<(&str, Micros)> = b.lines.iter().map(|l| (l.owner.as_str(), l.cost)).collect();
        assert_eq!(got, vec![("team-a", 5_479), ("team-b", 10_959)]);
    }

    #[test]
    fn shared_and_idle_go_where_their_rules_say() {
        let unit = Resource::Egress.base_units_per_price_unit() as u128;
        let mut s = settings(
            SpreadRule::Even,
            SpreadRule::To(vec!["platform".into(), "platform".into()]),
        );
        s.prices.egress_gib = 1.0;
        // 10 GiB paid; a used 3, b 1, unlabelled 2: shared 2.0 evenly, idle 4.0 to
        // the platform team, which used nothing.
        let b = bill(
            Resource::Egress,
            &usage(&[("a", 3 * unit), ("b", unit)], 2 * unit, Some(10 * unit)),
            &s,
        );
        assert_eq!(b.total, 10_000_000);
        assert_eq!(
            lines(&b),
            vec![
                ("a", 3.0, 3_000_000, 1_000_000, 0),
                ("b", 1.0, 1_000_000, 1_000_000, 0),
                ("platform", 0.0, 0, 0, 4_000_000),
            ]
        );
    }

    #[test]
    fn what_nobody_can_be_charged_keeps_a_line_of_its_own() {
        let unit = Resource::Egress.base_units_per_price_unit() as u128;
        let mut s = settings(SpreadRule::Proportional, SpreadRule::Proportional);
        s.prices.egress_gib = 1.0;
        // Only unlabelled usage: nobody to spread to.
        let b = bill(Resource::Egress, &usage(&[], unit, Some(3 * unit)), &s);
        assert_eq!(
            lines(&b),
            vec![(IDLE, 0.0, 0, 0, 2_000_000), (SHARED, 0.0, 0, 1_000_000, 0)]
        );
        // Usage beyond the capacity: paid for as used, nothing idle.
        let b = bill(
            Resource::Egress,
            &usage(&[("a", 5 * unit)], 0, Some(3 * unit)),
            &s,
        );
        assert_eq!(lines(&b), vec![("a", 5.0, 5_000_000, 0, 0)]);
    }

    #[test]
    fn usage_of_shared_owners_is_shared() {
        let mut u = ResourceUsage::default();
        let shared_owners = vec!["kube-system".to_string()];
        u.add(Some("a"), 5, &shared_owners);
        u.add(Some("kube-system"), 7, &shared_owners);
        u.add(None, 1, &shared_owners);
        u.add(Some("a"), 2, &shared_owners);
        assert_eq!(u.by_owner, BTreeMap::from([("a".to_string(), 7)]));
        assert_eq!((u.shared, u.used()), (8, 15));
    }

    fn rule() -> impl Strategy<Value = SpreadRule> {
        prop_oneof![
            Just(SpreadRule::Proportional),
            Just(SpreadRule::Even),
            prop::collection::vec("[a-e]", 0..3).prop_map(SpreadRule::To),
        ]
    }

    proptest! {
        /// Whatever the owners, usage, capacity and rules, the lines add up to the
        /// bill to the micro-unit, and no line is negative.
        #[test]
        fn the_lines_add_up_to_the_bill(
            owners in prop::collection::btree_map("[a-h]", 0u128..1u128 << 50, 0..8),
            shared in 0u128..1u128 << 50,
            capacity in prop::option::of(0u128..1u128 << 52),
            shared_rule in rule(),
            idle_rule in rule(),
            resource in prop::sample::select(Resource::ALL.to_vec()),
        ) {
            let usage = ResourceUsage { by_owner: owners, shared, capacity };
            let b = bill(resource, &usage, &settings(shared_rule, idle_rule));
            let sum: Micros = b.lines.iter().map(CostLine::total).sum();
            prop_assert_eq!(sum, b.total);
            prop_assert!(b.lines.iter().all(|l| l.cost >= 0 && l.shared >= 0 && l.idle >= 0));
        }
    }
}
