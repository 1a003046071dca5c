//! A service that refuses connections, then comes back. The agent calls its endpoint Down
//! from the refusals, a Down only a connection can clear; the network-aware retry goes on
//! trying on its schedule (a refusal is the peer's host answering: the path works) and is
//! through as soon as the service is back, not once the Down has aged out.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use netwatch_client::{
    retry::RetryPolicy,
    state::{Health, Subject},
};
use netwatch_tests::{
    agent::Agent,
    download::{download, BlobServer},
    require_privileges,
    topology::Pair,
    verdicts::Subscription,
};

const SIZE: u64 = 1 << 20;
/// How long the service stays away once the agent calls it Down: long enough for the retry
/// to meet that Down, far shorter than the 10 s it would hold without a connection.
const AWAY_AFTER_DOWN: Duration = Duration::from_millis(1500);

#[test]
fn a_refusing_service_is_retried_when_it_is_back_not_when_the_down_ages_out() {
    require_privileges();
    let pair = Pair::new();
    pair.default_route_via_a();
    let addr = SocketAddr::new(pair.a_v4.into(), 8080);
    let config = format!("[[endpoint]]\nname = \"blob\"\naddress = \"{addr}\"\n");
    let agent = Agent::start_with(&pair.b, &["--metrics", "off"], Some(&config));
    agent.wait_for("agent ready", |_| true, Duration::from_secs(30));
    let states = Subscription::connect(agent.socket());
    let endpoint = Subject::Endpoint("blob".into());

    // Nothing listens yet: the first connections are refused. Once the agent calls the
    // endpoint Down, the service starts a little later.
    let service = std::thread::scope(|scope| {
        let starter = scope.spawn(|| {
            let down = states.wait_health(&endpoint, Health::Down, Duration::from_secs(20));
            std::thread::sleep(AWAY_AFTER_DOWN);
            let still = states.latest().health(&endpoint);
            let server = BlobServer::start(&pair.a, addr, SIZE);
            (down, still, Instant::now(), server)
        });
        let policy = RetryPolicy {
            max_attempts: 20,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(1),
            deadline: Some(Duration::from_secs(60)),
            ..RetryPolicy::default()
        };
        let (result, verified) = download(
            &pair.b,
            addr,
            SIZE,
            Some((agent.socket(), endpoint.clone())),
            policy,
        );
        let done = Instant::now();
        let (down, still, started, server) = starter.join().expect("the service starter");
        (
            result,
            verified,
            down,
            still,
            done.saturating_duration_since(started),
            server,
        )
    });
    let (result, verified, down, still_down, after_start, _server) = service;

    assert!(
        down,
        "the agent never called the refusing endpoint Down:\n{}",
        states.describe()
    );
    assert_eq!(
        still_down,
        Some(Health::Down),
        "the endpoint was no longer Down when the service started: the test shows nothing"
    );
    let ((), report) = result.unwrap_or_else(|e| panic!("the download gave up: {e}"));
    assert!(verified, "the downloaded bytes differ from the blob");
    assert_eq!(
        report.outages, 0,
        "the retry waited for the network on a refusal: {report:?}"
    );
    // On its schedule the retry is through within a delay (at most 1 s) of the service's
    // start; waiting on the Down it would have been 8.5 s or more.
    assert!(
        after_start < Duration::from_secs(5),
        "through {after_start:?} after the service started: {report:?}"
    );
}
