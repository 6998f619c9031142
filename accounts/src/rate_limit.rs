//! Rate limits as fixed windows counted in PostgreSQL.
//!
//! The counters live in the database every replica already shares, so a limit holds however
//! many command-api replicas run, and survives their restarts; an in-process limiter (such as
//! `governor`) would give each replica its own allowance. One statement both checks and spends,
//! so concurrent requests cannot overspend a window. Each process takes a sliver of a limit at
//! a time (`RESERVE_FRACTION`) and hands it out locally, so a busy account costs one database
//! round trip per sliver, not per request. What the database had left is an upper bound for the
//! rest of its window (other processes only spend more), so a request asking for more is
//! refused locally: once a window is spent, a refusal costs no round trip until it resets.
//!
//! Answers carry the IETF `RateLimit-Policy` and `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers): the quota and window, and what remains and when the
//! window resets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use sqlx::PgPool;

/// A limit: at most `limit` units per `window_secs`.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The policy's name in the headers.
    pub name: &'static str,
    pub limit: u32,
    pub window_secs: u32,
}

/// What one request was granted.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub policy: Policy,
    pub allowed: bool,
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset_secs: u32,
}

impl Decision {
    /// Adds `RateLimit-Policy` and `RateLimit` to `response`, and `Retry-After` when refused.
    pub fn annotate(&self, response: &mut Response) {
        let headers = response.headers_mut();
        let policy = format!("\"{}\";q={};w={}", self.policy.name, self.policy.limit, self.policy.window_secs);
        let state = format!("\"{}\";r={};t={}", self.policy.name, self.remaining, self.reset_secs);
        for (name, value) in [(RATE_LIMIT_POLICY, policy), (RATE_LIMIT, state)] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        if !self.allowed {
            headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(self.reset_secs.max(1)));
        }
    }
}

pub const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The most of a limit one process takes from the database ahead of need: 1/64th of it (at
/// least one unit). One round trip then serves that many requests, and units a replica holds
/// unused can refuse others at most that much early.
const RESERVE_FRACTION: u32 = 64;
/// Reservations kept before expired ones are swept out.
const RESERVATIONS_KEPT: usize = 1024;

#[derive(Clone)]
pub struct RateLimiter {
    pool: PgPool,
    reserved: Arc<Mutex<HashMap<String, Reservation>>>,
}

/// Units of one key this process took from the database and has not handed out yet.
struct Reservation {
    units: u32,
    /// What the database had left after granting them.
    left_in_database: u32,
    /// The end of the window they belong to.
    until: Instant,
}

impl Reservation {
    /// At most what is left of the window (what is reserved, and what the database had left,
    /// which only shrinks), and the seconds until it resets; `None` once it has.
    fn window(&self, now: Instant) -> Option<(u32, u32)> {
        (self.until > now).then(|| (self.units + self.left_in_database, (self.until - now).as_secs_f64().ceil() as u32))
    }
}

impl RateLimiter {
    /// A limiter counting in the database `pool` connects to; see [`crate::bookkeeping_pool`]
    /// for why its commits must not wait for the disk.
    pub fn new(pool: PgPool) -> RateLimiter {
        RateLimiter { pool, reserved: Arc::default() }
    }

    /// Takes one unit for `subject`, or the refusal to answer with (429 and the policy's headers).
    pub async fn require(&self, policy: Policy, subject: &str) -> Result<(), crate::AccountsError> {
        let decision = self.take(policy, subject, 1).await?;
        if decision.allowed {
            Ok(())
        } else {
            Err(crate::AccountsError::RateLimited(decision))
        }
    }

    /// Spends `cost` units of `subject`'s allowance under `policy`, if that many remain: from
    /// what this process reserved, or else from the database, reserving a little more.
    pub async fn take(&self, policy: Policy, subject: &str, cost: u32) -> Result<Decision, sqlx::Error> {
        let key = format!("{}:{subject}", policy.name);
        if cost > policy.limit {
            return Ok(Decision { policy, allowed: false, remaining: 0, reset_secs: policy.window_secs });
        }
        if let Some(decision) = self.take_reserved(&key, policy, cost) {
            return Ok(decision);
        }
        let chunk = (policy.limit / RESERVE_FRACTION).max(cost);
        let mut granted = self.spend(&key, policy, chunk).await?;
        let mut reserved = chunk;
        if granted.is_none() && chunk > cost {
            // Not enough left for a reservation; maybe for this request alone.
            granted = self.spend(&key, policy, cost).await?;
            reserved = cost;
        }
        let Some((spent, reset_secs)) = granted else {
            return self.refused(&key, policy).await;
        };
        let left_in_database = policy.limit.saturating_sub(spent);
        let extra = reserved - cost;
        if extra > 0 {
            self.reserve(key, Reservation { units: extra, left_in_database, until: Instant::now() + Duration::from_secs(reset_secs.into()) });
        }
        Ok(Decision { policy, allowed: true, remaining: left_in_database + extra, reset_secs })
    }

    /// The refusal `cost` more units of `subject`'s allowance would get, when this process knows
    /// it already (the window spent, as the database said): no round trip, nothing spent.
    pub fn known_refusal(&self, policy: Policy, subject: &str, cost: u32) -> Option<Decision> {
        let reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        let (at_most_left, reset_secs) = reserved.get(&format!("{}:{subject}", policy.name))?.window(Instant::now())?;
        (cost > at_most_left).then_some(Decision { policy, allowed: false, remaining: at_most_left, reset_secs })
    }

    /// Grants `cost` from what this process reserved, or refuses it when it is more than can be
    /// left; `None` when only the database can tell.
    fn take_reserved(&self, key: &str, policy: Policy, cost: u32) -> Option<Decision> {
        let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        let reservation = reserved.get_mut(key)?;
        let (at_most_left, reset_secs) = reservation.window(Instant::now())?;
        if cost > at_most_left {
            return Some(Decision { policy, allowed: false, remaining: at_most_left, reset_secs });
        }
        if reservation.units < cost {
            return None;
        }
        reservation.units -= cost;
        Some(Decision { policy, allowed: true, remaining: at_most_left - cost, reset_secs })
    }

    fn reserve(&self, key: String, reservation: Reservation) {
        let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        if reserved.len() >= RESERVATIONS_KEPT {
            let now = Instant::now();
            reserved.retain(|_, kept| kept.until > now);
        }
        // Two requests that both found nothing reserved may both have reserved: keep both.
        match reserved.get_mut(&key) {
            Some(kept) if kept.until > Instant::now() => {
                kept.units += reservation.units;
                kept.left_in_database = kept.left_in_database.min(reservation.left_in_database);
            }
            _ => {
                reserved.insert(key, reservation);
            }
        }
    }

    /// Spends `units` in the database if they fit in the window (a window that is over starts
    /// anew): what is then spent, and the seconds until the window resets. The update happens
    /// only when the units fit, so no row returned means refused and nothing spent.
    async fn spend(&self, key: &str, policy: Policy, units: u32) -> Result<Option<(u32, u32)>, sqlx::Error> {
        let granted: Option<(i32, f64)> = sqlx::query_as(
            "INSERT INTO accounts.rate_limits AS r (key, window_start, spent) VALUES ($1, now(), $2)
             ON CONFLICT (key) DO UPDATE SET
                 window_start = CASE WHEN r.window_start + $4 * interval '1 second' <= now() THEN now() ELSE r.window_start END,
                 spent = CASE WHEN r.window_start + $4 * interval '1 second' <= now() THEN $2 ELSE r.spent + $2 END
             WHERE r.window_start + $4 * interval '1 second' <= now() OR r.spent + $2 <= $3
             RETURNING spent, EXTRACT(EPOCH FROM r.window_start + $4 * interval '1 second' - now())::float8",
        )
        .bind(key)
        .bind(units as i32)
        .bind(policy.limit as i32)
        .bind(policy.window_secs as f64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(granted.map(|(spent, reset)| (spent.max(0) as u32, reset.ceil().max(0.0) as u32)))
    }

    /// The refusal of a request the database did not grant; remembered, so that until the
    /// window resets no more than what is left is asked of the database again.
    async fn refused(&self, key: &str, policy: Policy) -> Result<Decision, sqlx::Error> {
        let (spent, reset): (i32, f64) = sqlx::query_as(
            "SELECT spent, EXTRACT(EPOCH FROM window_start + $2 * interval '1 second' - now())::float8
             FROM accounts.rate_limits WHERE key = $1",
        )
        .bind(key)
        .bind(policy.window_secs as f64)
        .fetch_one(&self.pool)
        .await?;
        let left = policy.limit.saturating_sub(spent.max(0) as u32);
        let until = Instant::now() + Duration::from_secs_f64(reset.max(0.0));
        self.reserve(key.to_owned(), Reservation { units: 0, left_in_database: left, until });
        Ok(Decision { policy, allowed: false, remaining: left, reset_secs: reset.ceil().max(0.0) as u32 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_the_ietf_draft() {
        let policy = Policy { name: "submissions", limit: 10, window_secs: 3600 };
        let mut response = Response::new(axum::body::Body::empty());
        Decision { policy, allowed: false, remaining: 0, reset_secs: 42 }.annotate(&mut response);
        let headers = response.headers();
        assert_eq!(headers["ratelimit-policy"], "\"submissions\";q=10;w=3600");
        assert_eq!(headers["ratelimit"], "\"submissions\";r=0;t=42");
        assert_eq!(headers["retry-after"], "42");
    }
}
