//! One memory budget for the keyed state of every operator in a process.
//!
//! Owns the accounting: a [`StateBudget`] is shared by all partitions' operators
//! (whatever thread runs them); each operator holds a [`BudgetShare`] through which
//! it takes bytes for a new key (a series) before creating it, and gives them back
//! when the key is forgotten. A key the budget cannot cover is refused (its points
//! are archived, not analysed, and counted), so state stays within the budget
//! however many partitions a process owns. Bytes are the operators' estimates of
//! what a key costs (its struct, strings and hash-map slot), not allocator counts.
//!
//! State restored from a checkpoint is taken whatever the budget says (a restart must
//! not lose state it held before); new keys are then refused until enough is given
//! back. Below the budget, outputs depend on the rows alone; at the budget, which
//! new keys are refused depends on which partition asked first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The bytes of keyed operator state a process may hold, and what it holds.
#[derive(Debug)]
pub struct StateBudget {
    limit: u64,
    used: AtomicU64,
}

impl StateBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<StateBudget> {
        Arc::new(StateBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// A budget nothing exceeds (backtests, benches, tests).
    pub fn unlimited() -> Arc<StateBudget> {
        StateBudget::new(u64::MAX)
    }

    /// Bytes held by all shares.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn try_reserve(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn force_reserve(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
    }

    fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

/// One operator's part of a [`StateBudget`]; what it holds goes back to the budget
/// when it is dropped (a partition revoked, an operator replaced).
#[derive(Debug)]
pub struct BudgetShare {
    budget: Arc<StateBudget>,
    held: u64,
}

impl BudgetShare {
    /// A share of `budget` holding nothing.
    pub fn new(budget: Arc<StateBudget>) -> BudgetShare {
        BudgetShare { budget, held: 0 }
    }

    /// Takes `bytes` if the budget has them; false (nothing taken) otherwise.
    pub fn try_take(&mut self, bytes: u64) -> bool {
        let taken = self.budget.try_reserve(bytes);
        if taken {
            self.held += bytes;
        }
        taken
    }

    /// Takes `bytes` even beyond the budget (state restored from a checkpoint).
    pub fn take(&mut self, bytes: u64) {
        self.budget.force_reserve(bytes);
        self.held += bytes;
    }

    /// Gives `bytes` back.
    pub fn give_back(&mut self, bytes: u64) {
        let bytes = bytes.min(self.held);
        self.budget.release(bytes);
        self.held -= bytes;
    }

    /// Bytes this share holds.
    pub fn held(&self) -> u64 {
        self.held
    }
}

impl Default for BudgetShare {
    /// A share of a budget of its own, unlimited.
    fn default() -> Self {
        BudgetShare::new(StateBudget::unlimited())
    }
}

impl Clone for BudgetShare {
    /// A copy of the state is state too: the clone takes as much again.
    fn clone(&self) -> Self {
        let mut share = BudgetShare::new(self.budget.clone());
        share.take(self.held);
        share
    }
}

impl PartialEq for BudgetShare {
    /// Accounting, not state: every share is equal.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Drop for BudgetShare {
    fn drop(&mut self) {
        self.budget.release(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_take_within_the_limit_and_give_back_when_dropped() {
        let budget = StateBudget::new(100);
        let mut a = BudgetShare::new(budget.clone());
        let mut b = BudgetShare::new(budget.clone());
        assert!(a.try_take(60));
        assert!(!b.try_take(41), "over the shared limit");
        assert!(b.try_take(40));
        assert_eq!((budget.used(), a.held(), b.held()), (100, 60, 40));
        a.give_back(10);
        assert_eq!(budget.used(), 90);
        drop(a);
        assert_eq!(budget.used(), 40);
        assert!(b.try_take(60));
        assert_eq!(budget.used(), 100);
    }

    #[test]
    fn restored_state_is_taken_beyond_the_limit_and_blocks_new_keys() {
        let budget = StateBudget::new(100);
        let mut restored = BudgetShare::new(budget.clone());
        restored.take(150);
        assert_eq!(budget.used(), 150);
        let mut other = BudgetShare::new(budget.clone());
        assert!(!other.try_take(1));
        restored.give_back(60);
        assert!(other.try_take(10));
        assert_eq!(budget.used(), 100);
    }

    #[test]
    fn a_clone_holds_as_much_again_and_giving_back_never_goes_below_zero() {
        let budget = StateBudget::new(1_000);
        let mut share = BudgetShare::new(budget.clone());
        assert!(share.try_take(300));
        let copy = share.clone();
        assert_eq!(budget.used(), 600);
        drop(copy);
        share.give_back(500);
        assert_eq!((budget.used(), share.held()), (0, 0));
    }
}
