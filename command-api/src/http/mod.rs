pub mod batches;
pub mod intake;
pub mod submissions;
