//! Owns rtnetlink: turns the kernel's link, address, route and neighbour messages into netwatch's own
//! events, says when the kernel reports that events were lost (the caller then re-reads the
//! whole state), answers direct questions (one link's state now, the next hop toward an
//! address), and asks the kernel to re-validate a neighbour. Nothing of rtnetlink leaks past
//! this module.

mod addr;
mod link;
mod neighbour;
mod revalidate;
mod route;

use std::net::IpAddr;

use futures::{channel::mpsc::UnboundedReceiver, StreamExt, TryStreamExt};
use rtnetlink::{
    packet_core::{NetlinkMessage, NetlinkPayload},
    packet_route::{
        route::{RouteAddress, RouteAttribute, RouteMessage},
        AddressFamily, RouteNetlinkMessage,
    },
    sys::{AsyncSocket, SocketAddr},
    Handle, MulticastGroup,
};

pub use addr::Address;
pub use link::{up_down, Link, LinkStats, MacAddr, OperState};
pub use neighbour::{NeighState, Neighbour};
pub use revalidate::Revalidation;
pub use route::{NextHop, Route};

/// Receive buffer of the event socket. Large, so bursts (a hundred veths created at once)
/// do not overrun it; an overrun is recovered from anyway.
pub const DEFAULT_EVENT_BUFFER: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening an rtnetlink socket failed: {0}")]
    Socket(#[source] std::io::Error),
    #[error("rtnetlink request ({what}) failed: {source}")]
    Request {
        what: &'static str,
        source: rtnetlink::Error,
    },
}

/// The full state, as read by a dump.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub links: Vec<Link>,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    pub neighbours: Vec<Neighbour>,
}

/// A change the kernel reported.
#[derive(Clone, Debug)]
pub enum NetEvent {
    /// A link appeared or changed (RTM_NEWLINK carries the whole state each time).
    LinkUpdated(Link),
    LinkRemoved(Link),
    AddressAdded(Address),
    AddressRemoved(Address),
    RouteAdded(Route),
    RouteRemoved(Route),
    NeighbourUpdated(Neighbour),
    NeighbourRemoved(Neighbour),
    /// Events were lost (the socket overran): only a full dump restores the view.
    Overrun,
}

/// Listens to rtnetlink's multicast groups and asks it questions on a second socket, so
/// replies never queue behind a burst of events.
pub struct NetlinkWatcher {
    requests: Handle,
    events: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
    overruns: u64,
}

impl NetlinkWatcher {
    /// Subscribes, then reads the full state: subscribing first means no change falls in the
    /// gap between the two. Needs a tokio runtime; the sockets belong to the calling thread's
    /// network namespace.
    pub async fn start(event_buffer: usize) -> Result<(Self, Snapshot), NetlinkError> {
        let groups = [
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
            MulticastGroup::Ipv4Route,
            MulticastGroup::Ipv6Route,
            MulticastGroup::Neigh,
        ];
        let (mut connection, _, events) =
            rtnetlink::new_multicast_connection(&groups).map_err(NetlinkError::Socket)?;
        connection
            .socket_mut()
            .socket_mut()
            .set_rx_buf_sz(event_buffer)
            .map_err(NetlinkError::Socket)?;
        tokio::spawn(connection);
        let (connection, requests, _) =
            rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
        tokio::spawn(connection);
        let watcher = Self {
            requests,
            events,
            overruns: 0,
        };
        let snapshot = watcher.dump().await?;
        Ok((watcher, snapshot))
    }

    /// The next change; `None` once the event socket has closed. Cancel-safe: it only reads
    /// a channel, so a `select!` may drop it between events without losing one. On
    /// [`NetEvent::Overrun`] the caller re-reads the state with [`NetlinkWatcher::dump`],
    /// outside any `select!`, so the re-read is never abandoned half-way.
    pub async fn next(&mut self) -> Option<NetEvent> {
        loop {
            let (message, _) = self.events.next().await?;
            if let Some(event) = self.decode(message) {
                return Some(event);
            }
        }
    }

    /// The next change if one is already queued, without waiting: to drain a burst before
    /// judging once. `None` when nothing is queued (or the socket closed: `next` says which).
    pub fn try_next(&mut self) -> Option<NetEvent> {
        loop {
            let (message, _) = self.events.try_recv().ok()?;
            if let Some(event) = self.decode(message) {
                return Some(event);
            }
        }
    }

    fn decode(&mut self, message: NetlinkMessage<RouteNetlinkMessage>) -> Option<NetEvent> {
        let event = event_of(message);
        if matches!(event, Some(NetEvent::Overrun)) {
            self.overruns += 1;
        }
        event
    }

    /// How many times the event socket overran (and the state was re-read).
    pub fn overruns(&self) -> u64 {
        self.overruns
    }

    /// Reads links, addresses and routes.
    pub async fn dump(&self) -> Result<Snapshot, NetlinkError> {
        Ok(Snapshot {
            links: self.links().await?,
            addresses: self.addresses().await?,
            routes: self.routes().await?,
            neighbours: self.neighbours().await?,
        })
    }

    pub async fn links(&self) -> Result<Vec<Link>, NetlinkError> {
        let messages: Vec<_> = self
            .requests
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(request("dump links"))?;
        Ok(messages.iter().filter_map(Link::from_message).collect())
    }

    /// One link's state now. A unicast RTM_GETLINK is answered at once, and makes the kernel
    /// flush the link's pending linkwatch event (net/core/rtnetlink.c: rtnl_getlink), so it is
    /// the fast way to learn of a carrier change.
    pub async fn link(&self, ifindex: u32) -> Result<Option<Link>, NetlinkError> {
        let mut replies = self.requests.link().get().match_index(ifindex).execute();
        match replies.try_next().await {
            Ok(message) => Ok(message.as_ref().and_then(Link::from_message)),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(e) => Err(request("get link")(e)),
        }
    }

    pub async fn addresses(&self) -> Result<Vec<Address>, NetlinkError> {
        let messages: Vec<_> = self
            .requests
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(request("dump addresses"))?;
        Ok(messages.iter().filter_map(Address::from_message).collect())
    }

    pub async fn routes(&self) -> Result<Vec<Route>, NetlinkError> {
        let mut routes = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut message = RouteMessage::default();
            message.header.address_family = family;
            let messages: Vec<_> = self
                .requests
                .route()
                .get(message)
                .execute()
                .try_collect()
                .await
                .map_err(request("dump routes"))?;
            routes.extend(messages.iter().filter_map(Route::from_message));
        }
        Ok(routes)
    }

    pub async fn neighbours(&self) -> Result<Vec<Neighbour>, NetlinkError> {
        let messages: Vec<_> = self
            .requests
            .neighbours()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(request("dump neighbours"))?;
        Ok(messages
            .iter()
            .filter_map(Neighbour::from_message)
            .collect())
    }

    /// One neighbour entry now, with its cache times; `None` if the kernel has none.
    pub async fn neighbour(
        &self,
        ifindex: u32,
        addr: IpAddr,
    ) -> Result<Option<Neighbour>, NetlinkError> {
        // A unicast RTM_GETNEIGH needs strict checking on the socket; a dump of the table,
        // filtered here, is as cheap for the few entries a host has.
        Ok(self
            .neighbours()
            .await?
            .into_iter()
            .find(|n| n.ifindex == ifindex && n.addr == addr))
    }

    /// The next hop the kernel would send a packet to `addr` through (RTM_GETROUTE with a
    /// destination, so policy routing and linkdown routes are as the kernel has them now);
    /// `None` if it is unreachable.
    pub async fn route_to(&self, addr: IpAddr) -> Result<Option<NextHop>, NetlinkError> {
        let mut message = RouteMessage::default();
        let (family, prefix_len) = match addr {
            IpAddr::V4(_) => (AddressFamily::Inet, 32),
            IpAddr::V6(_) => (AddressFamily::Inet6, 128),
        };
        message.header.address_family = family;
        message.header.destination_prefix_length = prefix_len;
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::from(addr)));
        let mut replies = self.requests.route().get(message).execute();
        match replies.try_next().await {
            Ok(Some(reply)) => Ok(NextHop::from_reply(&reply)),
            Ok(None) => Ok(None),
            // ENETUNREACH / EHOSTUNREACH: no route, which is an answer, not a failure.
            Err(rtnetlink::Error::NetlinkError(_)) => Ok(None),
            Err(e) => Err(request("route lookup")(e)),
        }
    }
}

/// What the agent makes of one netlink message as the kernel sends it on the event socket,
/// raw bytes in: nothing for a message it cannot parse or does not use. (The agent's own
/// socket is parsed by rtnetlink; this is the same path from bytes, for the fuzz target.)
pub fn decode_bytes(bytes: &[u8]) -> Option<NetEvent> {
    event_of(NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).ok()?)
}

fn event_of(message: NetlinkMessage<RouteNetlinkMessage>) -> Option<NetEvent> {
    match message.payload {
        NetlinkPayload::Overrun(_) => Some(NetEvent::Overrun),
        NetlinkPayload::InnerMessage(inner) => decode_event(inner),
        _ => None,
    }
}

fn decode_event(message: RouteNetlinkMessage) -> Option<NetEvent> {
    Some(match message {
        RouteNetlinkMessage::NewLink(m) => NetEvent::LinkUpdated(Link::from_message(&m)?),
        RouteNetlinkMessage::DelLink(m) => NetEvent::LinkRemoved(Link::from_message(&m)?),
        RouteNetlinkMessage::NewAddress(m) => NetEvent::AddressAdded(Address::from_message(&m)?),
        RouteNetlinkMessage::DelAddress(m) => NetEvent::AddressRemoved(Address::from_message(&m)?),
        RouteNetlinkMessage::NewRoute(m) => NetEvent::RouteAdded(Route::from_message(&m)?),
        RouteNetlinkMessage::DelRoute(m) => NetEvent::RouteRemoved(Route::from_message(&m)?),
        RouteNetlinkMessage::NewNeighbour(m) => {
            NetEvent::NeighbourUpdated(Neighbour::from_message(&m)?)
        }
        RouteNetlinkMessage::DelNeighbour(m) => {
            NetEvent::NeighbourRemoved(Neighbour::from_message(&m)?)
        }
        _ => return None,
    })
}

fn request(what: &'static str) -> impl Fn(rtnetlink::Error) -> NetlinkError {
    move |source| NetlinkError::Request { what, source }
}
