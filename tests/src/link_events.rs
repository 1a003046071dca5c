//! `LinkListener`: a plain rtnetlink multicast socket, the baseline a monitor that only waits
//! for the kernel's RTM_NEWLINK events would see.
//!
//! Deliberately raw (libc, no library, no requests of its own): a unicast RTM_GETLINK would
//! flush the kernel's pending linkwatch event (`rtnl_getlink` -> `linkwatch_sync_dev`) and
//! spoil the very delay it measures.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;
/// Netlink messages are 4-byte aligned.
const NLMSG_ALIGNTO: usize = 4;

/// Listens to link events (RTMGRP_LINK) in the namespace of the thread that opened it.
pub struct LinkListener {
    fd: OwnedFd,
}

impl LinkListener {
    /// Opens and binds the socket in the calling thread's network namespace.
    pub fn open() -> Self {
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        assert!(
            raw >= 0,
            "opening a netlink socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = libc::RTMGRP_LINK as u32;
        // SAFETY: `addr` is a valid sockaddr_nl and its size is passed with it.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::addr_of!(addr).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        assert!(
            rc == 0,
            "binding a netlink socket to RTMGRP_LINK: {}",
            std::io::Error::last_os_error()
        );
        LinkListener { fd }
    }

    /// Waits for an RTM_NEWLINK about link `index` whose carrier (IFF_LOWER_UP) is `carrier`,
    /// and returns when it was read; `None` if none came within `timeout`.
    pub fn wait_carrier(&self, index: u32, carrier: bool, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let mut poll = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut poll, 1, ms) };
            if ready <= 0 {
                continue;
            }
            // SAFETY: the buffer is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    0,
                )
            };
            let read_at = Instant::now();
            assert!(
                n >= 0,
                "reading the netlink socket: {}",
                std::io::Error::last_os_error()
            );
            if links_in(&buffer[..n as usize])
                .any(|(i, flags)| i == index && (flags & libc::IFF_LOWER_UP as u32 != 0) == carrier)
            {
                return Some(read_at);
            }
        }
    }
}

/// (ifindex, ifi_flags) of each RTM_NEWLINK in a datagram.
fn links_in(mut data: &[u8]) -> impl Iterator<Item = (u32, u32)> + '_ {
    std::iter::from_fn(move || loop {
        if data.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(data[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(data[4..6].try_into().ok()?);
        if len < NLMSG_HDRLEN || len > data.len() {
            return None;
        }
        let message = &data[..len];
        data = &data[len.next_multiple_of(NLMSG_ALIGNTO).min(data.len())..];
        // struct ifinfomsg: family u8, pad u8, type u16, index i32, flags u32, change u32.
        if kind == libc::RTM_NEWLINK && message.len() >= NLMSG_HDRLEN + 16 {
            let body = &message[NLMSG_HDRLEN..];
            let index = u32::from_ne_bytes(body[4..8].try_into().ok()?);
            let flags = u32::from_ne_bytes(body[8..12].try_into().ok()?);
            return Some((index, flags));
        }
    })
}
