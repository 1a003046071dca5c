//! Choosing among mirrors: measuring them, scoring and ranking them (with the network's
//! verdict), remembering the figures, and falling back across them during a transfer.

pub mod fallback;
pub mod measure;
pub mod rank;
pub mod score;
pub mod scoreboard;
