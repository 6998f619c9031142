//! What sealing and opening cost per submission, on one core:
//! `cargo run --release -p keyring --example seal_cost [CHARS]` (BENCHMARKS.md keeps the
//! numbers). A data key is unwrapped once per account and batch, not per submission; it is
//! measured apart.

use std::hint::black_box;
use std::time::Instant;

use keyring::{DataKey, Keyring, KeyringArgs};
use uuid::Uuid;

const ROUNDS: u32 = 200_000;

fn main() {
    let chars: usize = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(100);
    let text: String = "submitted text 42 ".chars().cycle().take(chars).collect();
    let key = DataKey::generate();
    let event = Uuid::from_u128(0x0123_4567_89ab_cdef);

    let started = Instant::now();
    let mut sealed = Vec::new();
    for _ in 0..ROUNDS {
        sealed = black_box(key.seal(black_box(event), black_box(&text)));
    }
    let seal = started.elapsed() / ROUNDS;

    let started = Instant::now();
    for _ in 0..ROUNDS {
        black_box(key.open(black_box(event), black_box(&sealed)).ok());
    }
    let open = started.elapsed() / ROUNDS;

    let keyring = Keyring::from_args(&KeyringArgs::default()).expect("the development key");
    let account = Uuid::from_u128(7);
    let (kek_id, wrapped) = keyring.wrap(account, &key);
    let started = Instant::now();
    for _ in 0..ROUNDS {
        black_box(keyring.unwrap(account, &kek_id, black_box(&wrapped)).ok());
    }
    let unwrap = started.elapsed() / ROUNDS;
    println!("{chars} characters: seal {seal:?}, open {open:?} per submission; unwrapping a data key {unwrap:?}");
}
