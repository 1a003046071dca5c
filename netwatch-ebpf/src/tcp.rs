//! TCP tracepoints: retransmitted segments, RSTs received and connects, counted per
//! destination, the bad ones also sent to userspace as events. Field offsets come from the
//! layouts userspace set; socket and buffer offsets from the kernel's BTF.

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel},
    programs::TracePointContext,
};
use netwatch_common::{
    DestCounters, DestKey, Event, EventKind, KernelStat, TracepointLayout, AF_INET, AF_INET6,
    IPPROTO_TCP, TCP_CLOSE, TCP_ESTABLISHED, TCP_SYN_SENT,
};

use crate::{
    events,
    maps::{self, count_stat, DEST_COUNTERS, RESET_LAYOUT, RETRANSMIT_LAYOUT, SOCK_STATE_LAYOUT},
};

/// A retransmit attempt: the segments it carried (as `nstat TcpRetransSegs` counts them) and
/// the socket's RTO backoff; one that failed locally (non-zero `err`) is counted apart.
#[inline(always)]
pub fn on_retransmit(ctx: &TracePointContext) {
    let layout = maps::layout(&RETRANSMIT_LAYOUT);
    if !in_watched_netns(ctx, &layout) {
        return;
    }
    let Some(dest) = read_dest(ctx, &layout) else {
        return;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    if read::<i32>(ctx, layout.err).unwrap_or(0) != 0 {
        bump(&dest, now, |c| c.retrans_failed += 1);
        return;
    }
    let offsets = maps::socket_offsets();
    let (segs, backoff) = if offsets.enabled == 0 {
        (1, 0)
    } else {
        let skb = read::<u64>(ctx, layout.skbaddr).unwrap_or(0);
        let sk = read::<u64>(ctx, layout.skaddr).unwrap_or(0);
        let segs: u16 = kernel_read(skb, offsets.skb_gso_segs).unwrap_or(1);
        let backoff: u8 = kernel_read(sk, offsets.icsk_backoff).unwrap_or(0);
        (u64::from(segs.max(1)), u32::from(backoff))
    };
    bump(&dest, now, |c| {
        c.retrans_segs += segs;
        c.retransmits += 1;
        c.last_retrans_ns = now;
        c.retrans_backoff = backoff;
        if backoff > 0 {
            c.stall_backoff = backoff;
            c.last_stall_ns = now;
        }
    });
    let state = read_u8_of_int(ctx, layout.state).unwrap_or(0);
    notify(ctx, &layout, &dest, now, EventKind::Retransmit, state);
}

#[inline(always)]
pub fn on_reset_received(ctx: &TracePointContext) {
    let layout = maps::layout(&RESET_LAYOUT);
    if !in_watched_netns(ctx, &layout) {
        return;
    }
    let Some(dest) = read_dest(ctx, &layout) else {
        return;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    bump(&dest, now, |c| c.resets_received += 1);
    notify(ctx, &layout, &dest, now, EventKind::ResetReceived, 0);
}

/// Only active opens matter: SYN_SENT to ESTABLISHED is a connect that worked, SYN_SENT to
/// CLOSE one that failed (refused, timed out or unreachable).
#[inline(always)]
pub fn on_sock_state(ctx: &TracePointContext) {
    let layout = maps::layout(&SOCK_STATE_LAYOUT);
    if read::<u16>(ctx, layout.protocol) != Some(IPPROTO_TCP)
        || read_u8_of_int(ctx, layout.oldstate) != Some(TCP_SYN_SENT)
    {
        return;
    }
    if !in_watched_netns(ctx, &layout) {
        return;
    }
    let Some(dest) = read_dest(ctx, &layout) else {
        return;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    match read_u8_of_int(ctx, layout.state) {
        Some(TCP_ESTABLISHED) => bump(&dest, now, |c| {
            c.connects_ok += 1;
            c.last_connect_ok_ns = now;
        }),
        Some(TCP_CLOSE) => {
            bump(&dest, now, |c| {
                c.connects_failed += 1;
                c.last_connect_failed_ns = now;
            });
            notify(
                ctx,
                &layout,
                &dest,
                now,
                EventKind::ConnectFailed,
                TCP_SYN_SENT,
            );
        }
        _ => {}
    }
}

/// Whether the event's socket lives in the namespace the agent watches: the tracepoints fire
/// for every namespace on the host. Without the offsets (no BTF), every event counts.
#[inline(always)]
fn in_watched_netns(ctx: &TracePointContext, layout: &TracepointLayout) -> bool {
    let filter = maps::netns_filter();
    if filter.enabled == 0 {
        return true;
    }
    let Some(sk) = read::<u64>(ctx, layout.skaddr) else {
        return false;
    };
    let Some(net) = kernel_read::<u64>(sk, filter.sk_net) else {
        return false;
    };
    kernel_read::<u32>(net, filter.net_inum) == Some(filter.inum)
}

/// Tells userspace about a bad signal toward `dest`.
#[inline(always)]
fn notify(
    ctx: &TracePointContext,
    layout: &TracepointLayout,
    dest: &DestKey,
    now: u64,
    kind: EventKind,
    state: u8,
) {
    let mut event = Event {
        ts_ns: now,
        ifindex: 0,
        _pad: 0,
        family: dest.family,
        sport: read::<u16>(ctx, layout.sport).unwrap_or(0),
        dport: read::<u16>(ctx, layout.dport).unwrap_or(0),
        kind: kind as u8,
        tcp_state: state,
        saddr: [0; 16],
        daddr: dest.addr,
    };
    read_addr(
        ctx,
        dest.family,
        layout.saddr,
        layout.saddr_v6,
        &mut event.saddr,
    );
    events::send(&event, false);
}

#[inline(always)]
fn bump(dest: &DestKey, now: u64, update: impl FnOnce(&mut DestCounters)) {
    if let Some(counters) = DEST_COUNTERS.get_ptr_mut(dest) {
        let counters = unsafe { &mut *counters };
        update(counters);
        counters.last_event_ns = now;
        return;
    }
    let mut counters = DestCounters {
        last_event_ns: now,
        ..DestCounters::default()
    };
    update(&mut counters);
    if DEST_COUNTERS.insert(dest, counters, 0).is_err() {
        count_stat(KernelStat::DestInsertFailed);
    }
}

#[inline(always)]
fn read_dest(ctx: &TracePointContext, layout: &TracepointLayout) -> Option<DestKey> {
    let family = read::<u16>(ctx, layout.family)?;
    let mut dest = DestKey {
        family,
        _pad: 0,
        addr: [0; 16],
    };
    read_addr(ctx, family, layout.daddr, layout.daddr_v6, &mut dest.addr).then_some(dest)
}

/// Fills `out` with the IPv4 or IPv6 address field for `family`; false for other families.
#[inline(always)]
fn read_addr(
    ctx: &TracePointContext,
    family: u16,
    v4_offset: u16,
    v6_offset: u16,
    out: &mut [u8; 16],
) -> bool {
    match family {
        AF_INET => match read::<[u8; 4]>(ctx, v4_offset) {
            Some(v4) => {
                out[..4].copy_from_slice(&v4);
                true
            }
            None => false,
        },
        AF_INET6 => match read::<[u8; 16]>(ctx, v6_offset) {
            Some(v6) => {
                *out = v6;
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// A value at `base + offset` in kernel memory; `None` if it cannot be read.
#[inline(always)]
fn kernel_read<T>(base: u64, offset: u32) -> Option<T> {
    if base == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one gives an error.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }.ok()
}

/// TCP states are `int` fields; their values fit a byte.
#[inline(always)]
fn read_u8_of_int(ctx: &TracePointContext, offset: u16) -> Option<u8> {
    read::<i32>(ctx, offset).map(|v| v as u8)
}

/// The one place a tracepoint record is read: absent fields read as `None`.
#[inline(always)]
fn read<T>(ctx: &TracePointContext, offset: u16) -> Option<T> {
    if offset == TracepointLayout::ABSENT {
        return None;
    }
    unsafe { ctx.read_at::<T>(offset as usize) }.ok()
}
