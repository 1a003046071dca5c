//! Raw rtnetlink over a plain socket: the fault injector (a link set up or down, timed at the
//! syscall that does it) and the raw event listener, the floor for link events.
//!
//! No library sits between the kernel and the timestamps here, so the listener is the fastest
//! a netlink monitor can be. It sends nothing: a unicast RTM_GETLINK would flush the kernel's
//! pending linkwatch event (`rtnl_getlink` -> `linkwatch_sync_dev`) and spoil the very delay
//! the linkwatch test measures. A socket stays in the namespace it was created in, so both are
//! created on a thread inside the namespace and then used from anywhere.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netns::NetNs;

use crate::clock::now_ns;
use crate::history::History;

const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const RTMGRP_LINK: u32 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_CARRIER: u16 = 33;
const IFLA_CARRIER_CHANGES: u16 = 35;
/// include/uapi/linux/if.h
pub const IFF_UP: u32 = 0x1;
pub const IFF_LOWER_UP: u32 = 0x10000;
/// RFC 2863 operstates as the kernel numbers them (IF_OPER_*).
pub const IF_OPER_UP: u8 = 6;

/// One RTM_NEWLINK/RTM_DELLINK as the kernel sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkEvent {
    pub deleted: bool,
    pub ifindex: u32,
    pub flags: u32,
    pub name: Option<String>,
    pub oper: Option<u8>,
    pub carrier: Option<u8>,
    pub carrier_changes: Option<u32>,
}

impl LinkEvent {
    pub fn admin_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }

    /// Carrier as IFLA_CARRIER says, else as IFF_LOWER_UP says.
    pub fn has_carrier(&self) -> bool {
        match self.carrier {
            Some(carrier) => carrier != 0,
            None => self.flags & IFF_LOWER_UP != 0,
        }
    }

    /// Usable by netlink's own account: admin up, carrier, operstate up.
    pub fn is_up(&self) -> bool {
        self.admin_up() && self.has_carrier() && self.oper == Some(IF_OPER_UP)
    }
}

/// Parses every link message in one datagram; other messages are skipped.
pub fn parse_link_messages(mut buf: &[u8]) -> Vec<LinkEvent> {
    let mut events = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(buf[4..6].try_into().expect("2 bytes"));
        if len < NLMSG_HDRLEN || len > buf.len() {
            break;
        }
        if matches!(kind, RTM_NEWLINK | RTM_DELLINK) && len >= NLMSG_HDRLEN + IFINFOMSG_LEN {
            let body = &buf[NLMSG_HDRLEN..len];
            let ifindex = i32::from_ne_bytes(body[4..8].try_into().expect("4 bytes")) as u32;
            let flags = u32::from_ne_bytes(body[8..12].try_into().expect("4 bytes"));
            let mut event = LinkEvent {
                deleted: kind == RTM_DELLINK,
                ifindex,
                flags,
                name: None,
                oper: None,
                carrier: None,
                carrier_changes: None,
            };
            let mut attrs = &body[IFINFOMSG_LEN..];
            while attrs.len() >= 4 {
                let alen = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
                let atype = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
                if alen < 4 || alen > attrs.len() {
                    break;
                }
                let data = &attrs[4..alen];
                match (atype, data.len()) {
                    (IFLA_IFNAME, _) => {
                        let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
                        event.name = Some(String::from_utf8_lossy(&data[..end]).into_owned());
                    }
                    (IFLA_OPERSTATE, 1..) => event.oper = Some(data[0]),
                    (IFLA_CARRIER, 1..) => event.carrier = Some(data[0]),
                    (IFLA_CARRIER_CHANGES, 4..) => {
                        event.carrier_changes =
                            Some(u32::from_ne_bytes(data[..4].try_into().expect("4 bytes")));
                    }
                    _ => {}
                }
                let step = (alen + 3) & !3;
                attrs = &attrs[step.min(attrs.len())..];
            }
            events.push(event);
        }
        let step = (len + 3) & !3;
        buf = &buf[step.min(buf.len())..];
    }
    events
}

fn open_socket(groups: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = groups;
    // SAFETY: addr is a valid sockaddr_nl of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn set_int_opt(fd: &OwnedFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: the option value is an int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn set_recv_timeout(fd: &OwnedFd, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: the option value is a timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn recv(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// A request socket in one namespace: sets links up or down, reads a link.
pub struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

impl Rtnl {
    /// Opens the socket in `ns`.
    pub fn open_in(ns: &NetNs) -> io::Result<Self> {
        let fd = ns.run(|| open_socket(0))?;
        set_recv_timeout(&fd, Duration::from_secs(5))?;
        Ok(Rtnl { fd, seq: 0 })
    }

    fn request(
        &mut self,
        kind: u16,
        flags: u16,
        ifindex: u32,
        if_flags: u32,
        change: u32,
    ) -> Vec<u8> {
        self.seq += 1;
        let mut msg = Vec::with_capacity(NLMSG_HDRLEN + IFINFOMSG_LEN);
        msg.extend_from_slice(&((NLMSG_HDRLEN + IFINFOMSG_LEN) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        // struct ifinfomsg: family, pad, type, index, flags, change.
        msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        msg.extend_from_slice(&(ifindex as i32).to_ne_bytes());
        msg.extend_from_slice(&if_flags.to_ne_bytes());
        msg.extend_from_slice(&change.to_ne_bytes());
        msg
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: msg is readable for its length; the socket's bound peer is the kernel.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Sets link `ifindex` admin up or down; returns CLOCK_MONOTONIC just before the syscall
    /// that did it, after the kernel acknowledged it.
    pub fn set_up(&mut self, ifindex: u32, up: bool) -> io::Result<i64> {
        let msg = self.request(
            RTM_NEWLINK,
            NLM_F_ACK,
            ifindex,
            if up { IFF_UP } else { 0 },
            IFF_UP,
        );
        let at = now_ns();
        self.send(&msg)?;
        let mut buf = vec![0u8; 8192];
        loop {
            let n = recv(&self.fd, &mut buf)?;
            if n >= NLMSG_HDRLEN + 4 && u16::from_ne_bytes([buf[4], buf[5]]) == NLMSG_ERROR {
                let code = i32::from_ne_bytes(buf[16..20].try_into().expect("4 bytes"));
                return if code == 0 {
                    Ok(at)
                } else {
                    Err(io::Error::from_raw_os_error(-code))
                };
            }
        }
    }

    /// The kernel's current message for link `ifindex`.
    pub fn get(&mut self, ifindex: u32) -> io::Result<LinkEvent> {
        let msg = self.request(RTM_GETLINK, 0, ifindex, 0, 0);
        self.send(&msg)?;
        let mut buf = vec![0u8; 65536];
        loop {
            let n = recv(&self.fd, &mut buf)?;
            let kind = if n >= NLMSG_HDRLEN {
                u16::from_ne_bytes([buf[4], buf[5]])
            } else {
                NLMSG_DONE
            };
            if kind == NLMSG_ERROR {
                let code = i32::from_ne_bytes(buf[16..20].try_into().expect("4 bytes"));
                return Err(io::Error::from_raw_os_error(-code));
            }
            if let Some(event) = parse_link_messages(&buf[..n])
                .into_iter()
                .find(|e| e.ifindex == ifindex)
            {
                return Ok(event);
            }
        }
    }
}

/// Every link event of one namespace, stamped on arrival by a thread that does nothing else.
pub struct Listener {
    pub events: History<LinkEvent>,
    /// Times the socket overran (ENOBUFS): events were lost.
    pub overruns: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Subscribes to RTMGRP_LINK in `ns`; listens until dropped or `limit` passes.
    pub fn start(ns: &NetNs, limit: Duration) -> io::Result<Self> {
        let fd = ns.run(|| open_socket(RTMGRP_LINK))?;
        // As root the buffer may exceed rmem_max; a big one keeps a flap storm from overrunning.
        let _ = set_int_opt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 16 << 20);
        set_recv_timeout(&fd, Duration::from_millis(100))?;
        let events = History::new();
        let overruns = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (history, lost, stopping) = (events.clone(), Arc::clone(&overruns), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("raw-rtnetlink".into())
            .spawn(move || {
                let deadline = Instant::now() + limit;
                let mut buf = vec![0u8; 1 << 16];
                while !stopping.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match recv(&fd, &mut buf) {
                        Ok(n) => {
                            let at = now_ns();
                            for event in parse_link_messages(&buf[..n]) {
                                history.push(at, event);
                            }
                        }
                        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                            lost.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock
                                    | io::ErrorKind::TimedOut
                                    | io::ErrorKind::Interrupted
                            ) => {}
                        Err(_) => break,
                    }
                }
                history.close();
            })?;
        Ok(Listener {
            events,
            overruns,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    fn message(ifindex: i32, flags: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![0u8, 0, 1, 0];
        body.extend_from_slice(&ifindex.to_ne_bytes());
        body.extend_from_slice(&flags.to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes());
        for a in attrs {
            body.extend_from_slice(a);
        }
        let mut msg = Vec::new();
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn parses_flags_operstate_carrier_and_counters_of_each_message() {
        let mut datagram = message(
            10,
            IFF_UP | IFF_LOWER_UP,
            &[
                attr(IFLA_IFNAME, b"nwa0\0"),
                attr(IFLA_OPERSTATE, &[IF_OPER_UP]),
                attr(IFLA_CARRIER, &[1]),
                attr(IFLA_CARRIER_CHANGES, &7u32.to_ne_bytes()),
            ],
        );
        datagram.extend(message(10, IFF_UP, &[attr(IFLA_CARRIER, &[0])]));
        let events = parse_link_messages(&datagram);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].name.as_deref(), Some("nwa0"));
        assert_eq!(events[0].carrier_changes, Some(7));
        assert!(events[0].is_up());
        assert!(events[1].admin_up() && !events[1].has_carrier() && !events[1].is_up());
        assert!(parse_link_messages(&datagram[..10]).is_empty());
    }
}
