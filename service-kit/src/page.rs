//! One page of a list, the shape every list endpoint answers with: its items, and the cursor
//! that reads the next page (keyset pagination: a page costs the same wherever it starts).

use serde::Serialize;

use crate::http_error::BadRequest;

/// Items per page when the client names no `limit`, and the most it may ask for.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

/// One page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` (`after` for a batch's items) to get the next page; null on the last.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page of `rows` read with `LIMIT limit + 1`: a row beyond `limit` only says that a next
    /// page exists, which starts after the last row kept (`cursor_of` it).
    pub fn of(mut rows: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> Option<String>) -> Page<T> {
        let next_cursor = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().and_then(cursor_of)
        } else {
            None
        };
        Page { items: rows, next_cursor }
    }
}

/// The `limit` a client asked for of a page (the default when none), or why it cannot be.
pub fn limit(asked: Option<i64>) -> Result<i64, BadRequest> {
    limit_within(asked, DEFAULT_LIMIT, MAX_LIMIT)
}

/// The `limit` a client asked for of a list with other bounds: 1 to `max`, `default` when none.
pub fn limit_within(asked: Option<i64>, default: i64, max: i64) -> Result<i64, BadRequest> {
    match asked.unwrap_or(default) {
        limit if (1..=max).contains(&limit) => Ok(limit),
        _ => Err(BadRequest::InvalidQuery(format!("limit must be between 1 and {max}"))),
    }
}
