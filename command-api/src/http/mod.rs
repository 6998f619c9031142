pub mod submissions;
