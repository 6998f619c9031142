//! Where an event is in the log: the consistency token the command API hands out with every
//! write, and the query API waits for. Kafka assigns it; nothing here talks to Kafka.

/// A record's partition and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for Position {
    /// `partition:offset`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.partition, self.offset)
    }
}

impl std::str::FromStr for Position {
    type Err = ();

    fn from_str(text: &str) -> Result<Position, ()> {
        let (partition, offset) = text.split_once(':').ok_or(())?;
        let position = Position { partition: partition.parse().map_err(drop)?, offset: offset.parse().map_err(drop)? };
        (position.partition >= 0 && position.offset >= 0).then_some(position).ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_reads_back_what_it_writes_and_nothing_negative() {
        let position = Position { partition: 3, offset: 42 };
        assert_eq!(position.to_string().parse(), Ok(position));
        for text in ["", "3", "3:", ":4", "-1:4", "3:-4", "a:b", "3:4:5"] {
            assert_eq!(text.parse::<Position>(), Err(()), "{text:?}");
        }
    }
}
