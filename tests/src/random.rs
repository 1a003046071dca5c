//! The one source of pseudo-random bytes and draws for tests and the bench: SplitMix64,
//! seeded, so a run can be repeated, and fast; its output does not compress (zstd stores it
//! raw), so the bytes on the wire are the bytes of the file.

use std::time::Duration;

use crate::clock::now_ns;

pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Self {
        Random(seed)
    }

    /// Seeded from the clock: a different sequence every run (jitter between bench rounds,
    /// so faults land at random phases of the pollers and the probe loop).
    pub fn from_clock() -> Self {
        Random(now_ns() as u64)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// A duration drawn uniformly from `low..high`.
    pub fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = high.saturating_sub(low).as_nanos() as u64;
        low + Duration::from_nanos(if span == 0 { 0 } else { self.below(span) })
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            word.copy_from_slice(&bytes[..word.len()]);
        }
    }
}

/// `len` pseudo-random bytes from `seed`: incompressible, and the same on every run.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0; len];
    Random::new(seed).fill(&mut data);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_seeded_and_do_not_repeat() {
        assert_eq!(noise(1000, 7), noise(1000, 7));
        assert_ne!(noise(1000, 7), noise(1000, 8));
        let data = noise(1 << 16, 1);
        let distinct: std::collections::HashSet<&[u8]> = data.chunks(8).collect();
        assert_eq!(distinct.len(), data.len() / 8);
        let mut random = Random::new(3);
        let (low, high) = (Duration::from_millis(5), Duration::from_millis(9));
        assert!((0..100).all(|_| (low..high).contains(&random.between(low, high))));
    }
}
