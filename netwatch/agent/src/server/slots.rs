//! Who may hold a connection: a cap per client uid (the kernel says who connects,
//! SO_PEERCRED), a cap for everyone, and slots kept for root, so that one local user opening
//! connection after connection cannot keep root's `wait-online` or `status` out.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// Connection caps.
#[derive(Clone, Copy, Debug)]
pub struct SlotLimits {
    /// Connections served at once, everyone together.
    pub total: usize,
    /// Of those, how many only root may take.
    pub reserved_for_root: usize,
    /// Connections one non-root uid may hold at once.
    pub per_uid: usize,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_uid: HashMap<u32, usize>,
}

/// The connection slots, shared by the accept loop and the connections.
#[derive(Clone, Debug)]
pub struct Slots {
    limits: SlotLimits,
    held: Arc<Mutex<Held>>,
}

/// A slot held by one connection; released when dropped.
#[derive(Debug)]
pub struct Slot {
    uid: u32,
    held: Arc<Mutex<Held>>,
}

impl Slots {
    pub fn new(limits: SlotLimits) -> Self {
        Self {
            limits,
            held: Arc::default(),
        }
    }

    /// A slot for a client of `uid`, or why there is none (for the client to read).
    pub fn take(&self, uid: u32) -> Result<Slot, String> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mine = held.by_uid.get(&uid).copied().unwrap_or(0);
        let limits = self.limits;
        if uid != 0 {
            if mine >= limits.per_uid {
                return Err(format!(
                    "too many clients: uid {uid} holds {mine} connections, the most one user \
                     may; close some and try again"
                ));
            }
            if held.total >= limits.total.saturating_sub(limits.reserved_for_root) {
                return Err(format!(
                    "too many clients: {} are connected already; try again later",
                    held.total
                ));
            }
        } else if held.total >= limits.total {
            return Err(format!(
                "too many clients: {} are connected already; try again later",
                held.total
            ));
        }
        held.total += 1;
        *held.by_uid.entry(uid).or_default() += 1;
        Ok(Slot {
            uid,
            held: Arc::clone(&self.held),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.total = held.total.saturating_sub(1);
        if let Some(count) = held.by_uid.get_mut(&self.uid) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.by_uid.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SlotLimits = SlotLimits {
        total: 10,
        reserved_for_root: 3,
        per_uid: 4,
    };

    #[test]
    fn one_user_cannot_take_every_slot_and_root_keeps_its_own() {
        let slots = Slots::new(LIMITS);
        let mine: Vec<Slot> = (0..4).map(|_| slots.take(1000).unwrap()).collect();
        assert!(slots.take(1000).unwrap_err().contains("uid 1000 holds 4"));
        let others: Vec<Slot> = (0..3).map(|_| slots.take(1001).unwrap()).collect();
        // 7 taken: the last 3 are root's.
        assert!(slots.take(1002).is_err());
        let root: Vec<Slot> = (0..3).map(|_| slots.take(0).unwrap()).collect();
        assert!(slots.take(0).is_err(), "the total holds for root too");
        drop(mine);
        assert!(
            slots.take(1002).is_ok(),
            "slots come back when connections close"
        );
        drop((others, root));
    }
}
