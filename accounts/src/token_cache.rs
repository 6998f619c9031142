//! Who recently used API tokens belong to, kept in memory: a client sending many requests
//! costs the database one lookup per token and [`TTL`], not one per request, which would put the
//! accounts pool on the path of every request and make it the first thing to run out under load
//! (BENCHMARKS.md, "scale-out").
//!
//! The promise: a revoked token stops working on every replica within [`REVOCATION_BOUND`]; at
//! once on the replica that revoked it. Every change that can end a token's validity (revoked,
//! expiry moved, token or account deleted, role changed), whoever makes it and however (an API
//! call or an operator's SQL), fires a NOTIFY from a trigger (migration 0002). Each process
//! LISTENs and forgets every entry when one arrives (usually milliseconds later). Entries are
//! served only while that LISTEN is up, and a quiet listening connection must answer a check
//! every [`QUIET_CHECK`] within [`ANSWER_WITHIN`]: a process that may have missed a notification
//! (its connection closed, or gone silent) looks every token up until it listens again. A lookup
//! that started before a change can finish after it; a generation counter keeps its answer out
//! of the cache. Making writes look the token up every time would make the promise "at once"
//! everywhere, at the price of a lookup per request, which is what the cache removed.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hashlink::LruCache;
use sqlx::postgres::PgListener;
use sqlx::PgPool;

use crate::store::TokenOwner;

/// The channel the triggers of migration 0002 notify.
pub const CREDENTIALS_CHANGED: &str = "accounts_credentials_changed";
/// How long an entry is served. Revocations do not wait for it (they come by NOTIFY); it bounds
/// how late a token's "last used" time is noted, which each lookup does at most once a minute,
/// so that time is at most about two minutes old while a token is in use.
pub const TTL: Duration = Duration::from_secs(60);
/// The longest a replica that cached a token may still serve it after it was revoked: the
/// NOTIFY usually arrives in milliseconds; a listening connection that went silent is given up
/// after [`QUIET_CHECK`] + [`ANSWER_WITHIN`], and from then on nothing is served from the cache.
pub const REVOCATION_BOUND: Duration = Duration::from_secs(10);
const _: () = assert!(QUIET_CHECK.as_secs() + ANSWER_WITHIN.as_secs() < REVOCATION_BOUND.as_secs());
const _: () = assert!(REVOCATION_BOUND.as_secs() < TTL.as_secs());
/// Tokens kept; the least recently used one goes first.
const CAPACITY: usize = 100_000;
/// How long to wait before listening again after the connection was lost.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);
/// How long the listening connection may stay quiet before it is asked whether it still
/// answers (and the task checks whether its cache still exists).
const QUIET_CHECK: Duration = Duration::from_secs(5);
/// How long that answer may take.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct TokenCache {
    state: Arc<Mutex<State>>,
}

struct State {
    entries: LruCache<Vec<u8>, Entry>,
    /// Bumped by every forgetting: a lookup started under an older one is not cached.
    generation: u64,
    listening: bool,
    /// Whether the listening task runs (started by the first lookup, so that a process that
    /// never sees a token holds no connection for it).
    following: bool,
}

struct Entry {
    owner: TokenOwner,
    cached_at: Instant,
}

/// What [`TokenCache::ticket`] hands a lookup that missed: the generation its answer belongs
/// to. Listening starting or stopping bumps the generation too, so a lookup that began while
/// not listening is never cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

impl Default for TokenCache {
    fn default() -> TokenCache {
        let state = State { entries: LruCache::new(CAPACITY), generation: 0, listening: false, following: false };
        TokenCache { state: Arc::new(Mutex::new(state)) }
    }
}

impl TokenCache {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The owner of the token with `digest`, if cached, listening, younger than [`TTL`] and
    /// not past the token's own expiry.
    pub fn get(&self, digest: &[u8], now: DateTime<Utc>) -> Option<TokenOwner> {
        let mut state = self.state();
        if !state.listening {
            return None;
        }
        let entry = state.entries.get(digest)?;
        let fresh = entry.cached_at.elapsed() < TTL && entry.owner.expires_at.is_none_or(|expires| expires > now);
        if fresh {
            return Some(entry.owner);
        }
        state.entries.remove(digest);
        None
    }

    /// Taken before looking a token up in the database; hand it back to [`TokenCache::put`].
    pub fn ticket(&self) -> Ticket {
        Ticket(self.state().generation)
    }

    /// Caches what a lookup found, unless credentials changed (or the LISTEN dropped) since
    /// its `ticket` was taken.
    pub fn put(&self, ticket: Ticket, digest: Vec<u8>, owner: TokenOwner) {
        let mut state = self.state();
        if state.listening && ticket == Ticket(state.generation) {
            state.entries.insert(digest, Entry { owner, cached_at: Instant::now() });
        }
    }

    /// Forgets every entry: some credential changed, or a change may have gone unheard.
    pub fn forget_all(&self) {
        let mut state = self.state();
        state.entries.clear();
        state.generation += 1;
    }

    fn set_listening(&self, listening: bool) {
        self.forget_all();
        self.state().listening = listening;
    }

    /// Starts following credential changes in the database `pool` connects to, once per
    /// cache, on a connection of its own (a listener holds its pool's connection for good).
    pub fn follow(&self, pool: &PgPool) {
        let mut state = self.state();
        if std::mem::replace(&mut state.following, true) {
            return;
        }
        let own = service_kit::postgres::pool_options(1).connect_lazy_with((*pool.connect_options()).clone());
        tokio::spawn(follow_changes(Arc::downgrade(&self.state), own));
    }
}

/// LISTENs for credential changes for as long as the cache exists, forgetting every entry on
/// each one; reconnects after a lost connection, serving nothing from the cache meanwhile.
async fn follow_changes(state: Weak<Mutex<State>>, pool: PgPool) {
    let cache = |state: &Weak<Mutex<State>>| state.upgrade().map(|state| TokenCache { state });
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            // A lost connection ends this listener; reconnecting inside it would resume
            // listening without a word about what was missed in between.
            listener.eager_reconnect(false);
            listener.listen(CREDENTIALS_CHANGED).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listener.await {
            Ok(mut listener) => {
                let Some(listening) = cache(&state) else { return };
                listening.set_listening(true);
                drop(listening);
                loop {
                    let received = tokio::time::timeout(QUIET_CHECK, listener.try_recv()).await;
                    let Some(cache) = cache(&state) else { return };
                    let listening = match received {
                        Ok(Ok(Some(_))) => {
                            cache.forget_all();
                            true
                        }
                        // Quiet for a while: does the connection still answer? One dropped
                        // without a word (a network partition) would go unnoticed until TCP
                        // gives up, and changes with it.
                        Err(_) => answers(&mut listener).await,
                        // The connection was lost (`None`) or failed.
                        Ok(Ok(None)) | Ok(Err(_)) => false,
                    };
                    if !listening {
                        tracing::warn!("lost the LISTEN for credential changes; looking every token up until it is back");
                        cache.set_listening(false);
                        break;
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "cannot LISTEN for credential changes yet; looking every token up"),
        }
        tokio::time::sleep(RELISTEN_AFTER).await;
        if state.strong_count() == 0 {
            return;
        }
    }
}

/// Whether the listening connection answers a query within [`ANSWER_WITHIN`].
async fn answers(listener: &mut PgListener) -> bool {
    matches!(tokio::time::timeout(ANSWER_WITHIN, sqlx::query("SELECT 1").execute(listener)).await, Ok(Ok(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;
    use uuid::Uuid;

    fn owner(expires_at: Option<DateTime<Utc>>) -> TokenOwner {
        TokenOwner { account_id: Uuid::now_v7(), role: Role::User, token_id: Uuid::now_v7(), expires_at }
    }

    fn listening() -> TokenCache {
        let cache = TokenCache::default();
        cache.set_listening(true);
        cache
    }

    #[test]
    fn serves_what_it_was_given_while_listening() {
        let cache = listening();
        let found = owner(None);
        cache.put(cache.ticket(), b"digest".to_vec(), found);
        assert_eq!(cache.get(b"digest", Utc::now()).map(|o| o.token_id), Some(found.token_id));
        assert!(cache.get(b"other", Utc::now()).is_none());
    }

    #[test]
    fn serves_nothing_while_not_listening() {
        let cache = TokenCache::default();
        let before_listening = cache.ticket();
        cache.put(before_listening, b"digest".to_vec(), owner(None));
        assert!(cache.get(b"digest", Utc::now()).is_none());
        cache.set_listening(true);
        cache.put(before_listening, b"digest".to_vec(), owner(None));
        assert!(cache.get(b"digest", Utc::now()).is_none(), "a lookup begun before listening could have missed a change");

        let cache = listening();
        cache.put(cache.ticket(), b"digest".to_vec(), owner(None));
        cache.set_listening(false);
        assert!(cache.get(b"digest", Utc::now()).is_none(), "entries from before the LISTEN dropped are gone");
        cache.set_listening(true);
        assert!(cache.get(b"digest", Utc::now()).is_none());
    }

    #[test]
    fn a_lookup_that_overlapped_a_change_is_not_cached() {
        let cache = listening();
        let ticket = cache.ticket();
        cache.forget_all(); // a token was revoked while the lookup ran
        cache.put(ticket, b"digest".to_vec(), owner(None));
        assert!(cache.get(b"digest", Utc::now()).is_none());
    }

    #[test]
    fn forgetting_drops_every_entry() {
        let cache = listening();
        cache.put(cache.ticket(), b"a".to_vec(), owner(None));
        cache.put(cache.ticket(), b"b".to_vec(), owner(None));
        cache.forget_all();
        assert!(cache.get(b"a", Utc::now()).is_none() && cache.get(b"b", Utc::now()).is_none());
    }

    #[test]
    fn an_entry_ends_with_its_tokens_expiry() {
        let cache = listening();
        let expires = Utc::now() + chrono::Duration::seconds(5);
        cache.put(cache.ticket(), b"digest".to_vec(), owner(Some(expires)));
        assert!(cache.get(b"digest", expires - chrono::Duration::seconds(1)).is_some());
        assert!(cache.get(b"digest", expires).is_none());
    }
}
