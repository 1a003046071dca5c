//! Sends events to userspace through the ring buffer, rate-limited per CPU.
//!
//! Waking the reader is almost all of an event's cost (docs/kernel-notes.md: ~4,400 ns
//! with a wake-up, ~350 ns without), so the reader is woken only when it has not been woken
//! for `WAKEUP_GAP_NS`; events in between ride along, and userspace, once woken, keeps
//! draining every few milliseconds until the ring stays empty.

use aya_ebpf::bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use netwatch_common::{Event, KernelStat};

use crate::maps::{count_stat, EVENTS, EVENT_PACING};

const WAKEUP_GAP_NS: u64 = 5_000_000;
const RATE_WINDOW_NS: u64 = 100_000_000;
/// Events per CPU per window: 640/s per CPU is plenty to show a link going bad, and bounds
/// the reader's work during a retransmit storm.
const RATE_LIMIT: u64 = 64;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Pacing {
    window_start_ns: u64,
    sent_in_window: u64,
    last_wakeup_ns: u64,
}

/// Sends `event`; an `urgent` one always wakes the reader (it is rare by construction).
#[inline(always)]
pub fn send(event: &Event, urgent: bool) {
    let Some(pacing) = EVENT_PACING.get_ptr_mut(0) else {
        return;
    };
    let pacing = unsafe { &mut *pacing };
    let now = event.ts_ns;
    if now.wrapping_sub(pacing.window_start_ns) >= RATE_WINDOW_NS {
        pacing.window_start_ns = now;
        pacing.sent_in_window = 0;
    }
    if pacing.sent_in_window >= RATE_LIMIT {
        count_stat(KernelStat::EventsRateLimited);
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        count_stat(KernelStat::EventsRingFull);
        return;
    };
    entry.write(*event);
    let flags = if urgent || now.wrapping_sub(pacing.last_wakeup_ns) >= WAKEUP_GAP_NS {
        pacing.last_wakeup_ns = now;
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(flags as u64);
    pacing.sent_in_window += 1;
    count_stat(KernelStat::EventsSent);
}
