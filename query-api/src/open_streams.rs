//! Live streams open per account in this process. Each holds a task, a subscription and its
//! buffers for as long as the client stays, so one account (or one stolen token) may not open
//! them without bound and take the memory every other user's streams need.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// Streams one account may have open on one query API at once (a browser tab holds one or two).
pub const MAX_PER_ACCOUNT: usize = 16;

/// The count of open streams per account.
#[derive(Clone, Default)]
pub struct OpenStreams(Arc<Mutex<HashMap<Uuid, usize>>>);

impl OpenStreams {
    /// A slot for one more stream of `account`, held until the stream ends; `None` when the
    /// account already has [`MAX_PER_ACCOUNT`] open here.
    pub fn open(&self, account: Uuid) -> Option<StreamSlot> {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(account).or_default();
        if *count >= MAX_PER_ACCOUNT {
            return None;
        }
        *count += 1;
        Some(StreamSlot { streams: self.clone(), account })
    }
}

/// One open stream of an account, given back when dropped.
pub struct StreamSlot {
    streams: OpenStreams,
    account: Uuid,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.account) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_gets_its_slots_back_as_its_streams_end_and_others_are_untouched() {
        let streams = OpenStreams::default();
        let (alice, bob) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut held: Vec<StreamSlot> = (0..MAX_PER_ACCOUNT).map(|_| streams.open(alice).unwrap()).collect();
        assert!(streams.open(alice).is_none());
        assert!(streams.open(bob).is_some(), "another account is not held up");
        held.pop();
        assert!(streams.open(alice).is_some());
        drop(held);
        assert!(streams.0.lock().unwrap().is_empty(), "nothing is kept for accounts with no stream");
    }
}
