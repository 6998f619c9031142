//! Rate limits as fixed windows counted in PostgreSQL.
//!
//! The counters live in the database every replica already shares, so a limit holds however
//! many command-api replicas run, and survives their restarts; an in-process limiter (such as
//! `governor`) would give each replica its own allowance. One statement both checks and spends,
//! so concurrent requests cannot overspend a window.
//!
//! Answers carry the IETF `RateLimit-Policy` and `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers): the quota and window, and what remains and when the
//! window resets.

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

#[derive(Clone)]
pub struct RateLimiter {
    pool: PgPool,
}

impl RateLimiter {
    pub fn new(pool: PgPool) -> RateLimiter {
        RateLimiter { pool }
    }

    /// Spends `cost` units of `subject`'s allowance under `policy`, if that many remain.
    pub async fn take(&self, policy: Policy, subject: &str, cost: u32) -> Result<Decision, sqlx::Error> {
        let key = format!("{}:{subject}", policy.name);
        let refused = |spent: i32, reset: f64| Decision {
            policy,
            allowed: false,
            remaining: policy.limit.saturating_sub(spent.max(0) as u32),
            reset_secs: reset.ceil().max(0.0) as u32,
        };
        if cost > policy.limit {
            return Ok(refused(0, 0.0));
        }
        // Counters need not survive a database crash (at worst, a window's allowance starts
        // over), so their commits do not wait for the disk: with one row per account, waiting
        // for each flush would cap one account at a few hundred submissions per second.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *tx).await?;
        // The update happens only when the cost fits (or the window is over): no row returned
        // means refused, and nothing was spent.
        let granted: Option<(i32, f64)> = sqlx::query_as(
            "INSERT INTO accounts.rate_limits AS r (key, window_start, spent) VALUES ($1, now(), $2)
             ON CONFLICT (key) DO UPDATE SET
                 window_start = CASE WHEN r.window_start + $4 * interval '1 second' <= now() THEN now() ELSE r.window_start END,
                 spent = CASE WHEN r.window_start + $4 * interval '1 second' <= now() THEN $2 ELSE r.spent + $2 END
             WHERE r.window_start + $4 * interval '1 second' <= now() OR r.spent + $2 <= $3
             RETURNING spent, EXTRACT(EPOCH FROM r.window_start + $4 * interval '1 second' - now())::float8",
        )
        .bind(&key)
        .bind(cost as i32)
        .bind(policy.limit as i32)
        .bind(policy.window_secs as f64)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        if let Some((spent, reset)) = granted {
            return Ok(Decision {
                policy,
                allowed: true,
                remaining: policy.limit.saturating_sub(spent as u32),
                reset_secs: reset.ceil().max(0.0) as u32,
            });
        }
        let (spent, reset): (i32, f64) = sqlx::query_as(
            "SELECT spent, EXTRACT(EPOCH FROM window_start + $2 * interval '1 second' - now())::float8
             FROM accounts.rate_limits WHERE key = $1",
        )
        .bind(&key)
        .bind(policy.window_secs as f64)
        .fetch_one(&self.pool)
        .await?;
        Ok(refused(spent, reset))
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
