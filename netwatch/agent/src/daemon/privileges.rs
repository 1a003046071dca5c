//! Gives up what the agent no longer needs once its programs are attached: root itself (it
//! becomes an unprivileged user), every capability but two, and the right to gain any back.
//!
//! What stays, and why: CAP_BPF, because with the usual `kernel.unprivileged_bpf_disabled`
//! every bpf() call, reading a map included, needs it; CAP_NET_ADMIN, to attach the counters
//! to interfaces that appear later and to ask the kernel to re-validate a neighbour. Loading
//! programs, attaching tracepoints (CAP_PERFMON), mounting tracefs, entering namespaces
//! (CAP_SYS_ADMIN) and binding the socket and the metrics port are done by then. With uid 0
//! gone too, those two capabilities cannot write or chmod root's files.

use std::io;

use caps::{CapSet, Capability, CapsHashSet};

const KEPT: [Capability; 2] = [Capability::CAP_BPF, Capability::CAP_NET_ADMIN];

/// Who the agent runs as once attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// What was given up.
#[derive(Debug)]
pub struct Dropped {
    /// The user now run as; `None` if the agent stays the user it started as.
    pub user: Option<RunAs>,
    pub capabilities: Vec<Capability>,
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("changing capabilities failed: {0}")]
    Caps(#[from] caps::errors::CapsError),
    #[error("{what} failed: {source}")]
    Call {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Becomes `user` (if given and the agent is root) keeping only CAP_BPF and CAP_NET_ADMIN,
/// and sets NoNewPrivs. Must run before other threads that should not keep root exist
/// (capabilities are per thread; the uid change reaches every thread).
pub fn drop_privileges(user: Option<&RunAs>) -> Result<Dropped, PrivilegeError> {
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
    // SAFETY: getuid cannot fail.
    let switch = user.filter(|u| u.uid != 0 && unsafe { libc::getuid() } == 0);
    if let Some(user) = switch {
        become_user(user)?;
    }
    let kept: CapsHashSet = had.intersection(&keep).copied().collect();
    caps::set(None, CapSet::Permitted, &kept)?;
    caps::set(None, CapSet::Effective, &kept)?;
    call("prctl(PR_SET_NO_NEW_PRIVS)", unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    })?;
    let mut capabilities: Vec<_> = had.difference(&keep).copied().collect();
    capabilities.sort_by_key(|cap| cap.index());
    Ok(Dropped {
        user: switch.cloned(),
        capabilities,
    })
}

/// Switches every id to `user`'s, keeping the permitted capabilities across (PR_SET_KEEPCAPS;
/// the effective set is cleared by the switch and raised again by the caller).
fn become_user(user: &RunAs) -> Result<(), PrivilegeError> {
    // SAFETY: plain system calls on integers; a null list with length 0 for setgroups.
    unsafe {
        call(
            "prctl(PR_SET_KEEPCAPS)",
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0),
        )?;
        call("setgroups", libc::setgroups(0, std::ptr::null()))?;
        call("setresgid", libc::setresgid(user.gid, user.gid, user.gid))?;
        call("setresuid", libc::setresuid(user.uid, user.uid, user.uid))?;
    }
    Ok(())
}

/// Drops every capability of the calling thread (threads that parse what clients and the
/// network send need none).
pub fn drop_thread_capabilities() -> Result<(), caps::errors::CapsError> {
    caps::clear(None, CapSet::Effective)?;
    caps::clear(None, CapSet::Permitted)
}

fn call(what: &'static str, rc: libc::c_int) -> Result<(), PrivilegeError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(PrivilegeError::Call {
            what,
            source: io::Error::last_os_error(),
        })
    }
}
