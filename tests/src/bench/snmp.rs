//! The retransmit baseline: `/proc/net/snmp`'s TCP `RetransSegs` polled every second, from a
//! thread inside the namespace (`/proc/thread-self/net` is the thread's own namespace).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::netns::NetNs;

use crate::clock::now_ns;
use crate::history::History;
use crate::worker::Worker;

/// `RetransSegs` from the text of /proc/net/snmp: the `Tcp:` header line names the columns,
/// the next `Tcp:` line holds the values.
pub fn retrans_segs(snmp: &str) -> Option<u64> {
    let mut tcp = snmp.lines().filter(|line| line.starts_with("Tcp:"));
    let header = tcp.next()?;
    let values = tcp.next()?;
    let column = header
        .split_whitespace()
        .position(|name| name == "RetransSegs")?;
    values.split_whitespace().nth(column)?.parse().ok()
}

/// Reads RetransSegs every `interval` until stopped or `limit` passes.
pub struct SnmpPoller {
    pub retrans: History<u64>,
    _worker: Worker<()>,
}

impl SnmpPoller {
    pub fn start(ns: &NetNs, interval: Duration, limit: Duration) -> Self {
        let retrans = History::new();
        let history = retrans.clone();
        let worker = Worker::spawn_in(ns, "snmp-poller", move |stop| {
            let deadline = Instant::now() + limit;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if let Some(value) = std::fs::read_to_string("/proc/thread-self/net/snmp")
                    .ok()
                    .and_then(|text| retrans_segs(&text))
                {
                    history.push(now_ns(), value);
                }
                next += interval;
                while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep((next - Instant::now()).min(Duration::from_millis(50)));
                }
            }
            history.close();
        });
        SnmpPoller {
            retrans,
            _worker: worker,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn retrans_segs_is_read_by_column_name() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Tcp: RtoAlgorithm RtoMin InSegs OutSegs RetransSegs InErrs\n\
                    Tcp: 1 200 10 20 37 0\nUdp: InDatagrams\nUdp: 5\n";
        assert_eq!(super::retrans_segs(text), Some(37));
        assert_eq!(super::retrans_segs("Ip: a\nIp: 1\n"), None);
    }
}
