//! What one account may hold at once in this process: live streams, and reads waiting for a
//! write to be projected. Each holds a task and buffers (a stream, for as long as the client
//! stays) or polls the read model (a wait), so one account, or one stolen token, may not hold
//! them without bound and take what every other user's need.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// Streams one account may have open on one query API at once (a browser tab holds one or two).
pub const STREAMS: usize = 16;
/// Reads of one account that may wait for their write at once (the UI waits for one at a time).
pub const WAITS: usize = 4;

/// Slots per account, up to a limit each.
#[derive(Clone)]
pub struct Slots {
    limit: usize,
    held: Arc<Mutex<HashMap<Uuid, usize>>>,
}

impl Slots {
    pub fn new(limit: usize) -> Slots {
        Slots { limit, held: Arc::default() }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A slot for `account`, held until dropped; `None` when it holds all its slots already.
    pub fn take(&self, account: Uuid) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(account).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Slot { slots: self.clone(), account })
    }
}

/// One slot of an account, given back when dropped.
pub struct Slot {
    slots: Slots,
    account: Uuid,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.account) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_gets_its_slots_back_as_they_are_dropped_and_others_are_untouched() {
        let slots = Slots::new(STREAMS);
        let (alice, bob) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut held: Vec<Slot> = (0..STREAMS).map(|_| slots.take(alice).unwrap()).collect();
        assert!(slots.take(alice).is_none());
        assert!(slots.take(bob).is_some(), "another account is not held up");
        held.pop();
        assert!(slots.take(alice).is_some());
        drop(held);
        assert!(slots.held.lock().unwrap().is_empty(), "nothing is kept for accounts with nothing held");
    }
}
