//! Drops the capabilities the agent no longer needs once its programs are attached.
//!
//! What stays: CAP_BPF, because with the usual `kernel.unprivileged_bpf_disabled` every bpf()
//! call, reading a map included, needs it; and CAP_NET_ADMIN, to attach XDP to interfaces
//! that appear later. Loading programs, attaching tracepoints (CAP_PERFMON), mounting tracefs
//! and entering namespaces (CAP_SYS_ADMIN) are done by then.

use caps::{CapSet, Capability, CapsHashSet};

const KEPT: [Capability; 2] = [Capability::CAP_BPF, Capability::CAP_NET_ADMIN];

/// Returns the capabilities dropped.
pub fn drop_unneeded() -> Result<Vec<Capability>, caps::errors::CapsError> {
    let keep: CapsHashSet = KEPT.into_iter().collect();
    let had = caps::read(None, CapSet::Permitted)?;
    // Bounding first: removing from it needs CAP_SETPCAP, which is itself about to go.
    for cap in caps::read(None, CapSet::Bounding)? {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)?;
        }
    }
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    let kept: CapsHashSet = had.intersection(&keep).copied().collect();
    caps::set(None, CapSet::Effective, &kept)?;
    caps::set(None, CapSet::Permitted, &kept)?;
    let mut dropped: Vec<_> = had.difference(&keep).copied().collect();
    dropped.sort_by_key(|cap| cap.index());
    Ok(dropped)
}
