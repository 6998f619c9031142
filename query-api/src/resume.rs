//! Where a live stream resumes and what it does with each change the hub sends: the state
//! machine behind the SSE endpoints ([`crate::http::stream`]), free of HTTP, so that every rule
//! of resuming across replicas and generations is tested on its own.

use crate::changes::{Position, Scope, StatusChange};

/// Where a stream starts: after a position, telling the client to reload first if its
/// `Last-Event-ID` cannot be resumed from.
pub struct Start {
    pub after: Position,
    pub reset: bool,
}

impl Start {
    /// Resumes after `seen` when it is a position of the live read model; otherwise starts at
    /// `fresh`, with a reset when the client had seen something else. `live` comes from the
    /// database, not from this replica's hub, which may lag behind the replica that sent `seen`.
    pub fn new(seen: Option<Position>, live: Position, fresh: Position) -> Start {
        match seen {
            Some(seen) if seen.generation == live.generation && seen.seq <= live.seq => Start { after: seen, reset: false },
            Some(_) => Start { after: fresh, reset: true },
            None => Start { after: fresh, reset: false },
        }
    }
}

/// What a stream does with a change from the hub.
#[derive(Debug, PartialEq, Eq)]
pub enum LiveStep {
    Send,
    /// Already sent (read from the table meanwhile), or not in the stream's scope.
    Skip,
    /// Go back to the table: the change is from another generation, or, on a feed of every
    /// change, does not directly follow the last one seen (a gap: never skip silently).
    CatchUp,
}

impl LiveStep {
    /// `every_seq`: the feed carries every change, so a stream of everyone's changes can check
    /// that each follows the one before. A feed of one owner's changes has gaps by design;
    /// lagging behind it is reported by the channel instead.
    pub fn of(at: Position, change: &StatusChange, scope: Scope, every_seq: bool) -> LiveStep {
        if change.generation != at.generation {
            return LiveStep::CatchUp;
        }
        if change.seq <= at.seq {
            return LiveStep::Skip;
        }
        match every_seq && !scope.is_narrow() {
            // Every change has the next seq of its generation.
            true if change.seq != at.seq + 1 => LiveStep::CatchUp,
            _ if !scope.includes(change) => LiveStep::Skip,
            _ => LiveStep::Send,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use uuid::Uuid;

    const OWNER: Uuid = Uuid::from_u128(7);
    const EVERYONE: Scope = Scope { submission: None, owner: None, batch: None };

    const fn at(generation: i32, seq: i64) -> Position {
        Position { generation, seq }
    }

    fn change(generation: i32, seq: i64, submission_id: Uuid) -> StatusChange {
        StatusChange {
            generation,
            seq,
            submission_id,
            owner_id: Some(OWNER),
            batch_id: None,
            event_type: "ProcessingStarted".into(),
            status: "PROCESSING".into(),
            occurred_at: chrono::Utc::now(),
            content: None,
            reasons: Vec::new(),
        }
    }

    #[test]
    fn a_stream_resumes_after_any_position_the_database_has_reached() {
        let live = at(3, 100);
        let start = Start::new(Some(at(3, 90)), live, live);
        assert_eq!((start.after, start.reset), (at(3, 90), false));
        // Seen through a replica whose hub is ahead of this one's: still this generation.
        let start = Start::new(Some(at(3, 100)), live, live);
        assert_eq!((start.after, start.reset), (at(3, 100), false));
    }

    #[test]
    fn a_position_of_another_generation_or_beyond_the_live_one_resets() {
        let live = at(3, 100);
        let fresh = at(3, 0);
        for seen in [at(2, 50), at(3, 101), at(4, 1)] {
            let start = Start::new(Some(seen), live, fresh);
            assert_eq!((start.after, start.reset), (fresh, true), "{seen:?}");
        }
        let start = Start::new(None, live, fresh);
        assert_eq!((start.after, start.reset), (fresh, false));
    }

    #[test]
    fn the_stream_of_every_submission_goes_back_to_the_table_on_a_gap() {
        let id = Uuid::new_v4();
        assert_eq!(LiveStep::of(at(1, 10), &change(1, 11, id), EVERYONE, true), LiveStep::Send);
        assert_eq!(LiveStep::of(at(1, 10), &change(1, 12, id), EVERYONE, true), LiveStep::CatchUp);
        assert_eq!(LiveStep::of(at(1, 10), &change(1, 10, id), EVERYONE, true), LiveStep::Skip);
        assert_eq!(LiveStep::of(at(1, 10), &change(2, 11, id), EVERYONE, true), LiveStep::CatchUp);
    }

    #[test]
    fn on_one_owners_feed_the_next_change_is_sent_across_the_gap_of_other_owners_seqs() {
        let id = Uuid::new_v4();
        let mine = Scope { owner: Some(OWNER), ..EVERYONE };
        assert_eq!(LiveStep::of(at(1, 10), &change(1, 15, id), mine, false), LiveStep::Send);
        assert_eq!(LiveStep::of(at(1, 10), &change(1, 15, id), mine, true), LiveStep::CatchUp);
        assert_eq!(LiveStep::of(at(1, 15), &change(1, 15, id), mine, false), LiveStep::Skip);
        assert_eq!(LiveStep::of(at(1, 10), &change(2, 11, id), mine, false), LiveStep::CatchUp);
    }

    #[test]
    fn another_owners_change_is_never_sent() {
        let id = Uuid::new_v4();
        let theirs = Scope { owner: Some(Uuid::from_u128(8)), ..EVERYONE };
        assert_eq!(LiveStep::of(at(1, 10), &change(1, 11, id), theirs, false), LiveStep::Skip);
        let one = Scope { submission: Some(id), owner: Some(Uuid::from_u128(8)), batch: None };
        assert_eq!(LiveStep::of(at(1, 10), &change(1, 11, id), one, true), LiveStep::Skip);
    }

    #[test]
    fn the_stream_of_one_submission_skips_the_others_seqs() {
        let (mine, other) = (Uuid::new_v4(), Uuid::new_v4());
        let scope = Scope { submission: Some(mine), ..EVERYONE };
        assert_eq!(LiveStep::of(at(1, 10), &change(1, 15, mine), scope, true), LiveStep::Send);
        assert_eq!(LiveStep::of(at(1, 10), &change(1, 11, other), scope, true), LiveStep::Skip);
        assert_eq!(LiveStep::of(at(1, 10), &change(1, 9, mine), scope, true), LiveStep::Skip);
    }
}
