//! Ports for brokers that restart.
//!
//! A node keeps its ports across restarts (they are in the quorum's membership and in every
//! client's bootstrap list). A port the kernel handed out with `bind(0)` lies in the ephemeral
//! range, which outgoing connections draw their local ports from: while a node is down, any
//! client connection may take its port and the restarted node then fails to bind. Ports below
//! that range are only ever taken by someone asking for them by number.

use std::net::TcpListener;

use crate::Error;

/// Lowest port considered: below it live well-known services (PostgreSQL, Kafka's 9092).
const LOWEST: u16 = 10_000;

/// The first of `len` consecutive ports that are free now and below the ephemeral range.
pub fn free_port_block(len: u16) -> Result<u16, Error> {
    let highest = ephemeral_range_start().saturating_sub(len);
    if highest <= LOWEST {
        return Err(Error::NoFreePorts { wanted: len });
    }
    for _ in 0..1_000 {
        let span = u128::from(highest - LOWEST);
        let base = LOWEST + (uuid::Uuid::new_v4().as_u128() % span) as u16;
        if (base..base + len).all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok()) {
            return Ok(base);
        }
    }
    Err(Error::NoFreePorts { wanted: len })
}

/// Where the kernel's ephemeral ports start (Linux's default when it cannot be read).
fn ephemeral_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_free_and_below_the_ephemeral_range() {
        let base = free_port_block(6).unwrap();
        assert!(base >= LOWEST && base + 6 <= ephemeral_range_start(), "{base}");
        let held: Vec<TcpListener> = (base..base + 6).map(|port| TcpListener::bind(("127.0.0.1", port)).unwrap()).collect();
        assert_eq!(held.len(), 6);
    }
}
