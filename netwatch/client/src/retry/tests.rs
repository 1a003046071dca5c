//! Runs on tokio's paused clock against a state source the test drives.

use std::{
    error::Error as _,
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::state::{Health, NetworkState, StateWatch};

fn host(health: Health) -> Arc<NetworkState> {
    let mut state = NetworkState::initial(0);
    state.host.health = health;
    Arc::new(state)
}

fn channel(health: Health) -> (watch::Sender<Arc<NetworkState>>, StateWatch) {
    StateWatch::channel((*host(health)).clone())
}

/// 1 s doubling, no jitter: delays the test can state exactly.
fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        jitter: Jitter::None,
        deadline: Some(Duration::from_secs(600)),
        ..RetryPolicy::default()
    }
}

/// A retryer with a budget of its own, so tests do not share the process's.
fn retryer(policy: RetryPolicy) -> Retryer {
    Retryer::new(policy).with_budget(RetryBudget::new(CAPACITY))
}

/// Every call's attempt and when it started.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<(Attempt, Instant)>>>);

impl Calls {
    fn record(&self, attempt: Attempt) {
        self.0.lock().unwrap().push((attempt, Instant::now()));
    }

    /// When each call started, from `start`.
    fn offsets(&self, start: Instant) -> Vec<Duration> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, at)| *at - start)
            .collect()
    }

    fn attempts(&self) -> Vec<Attempt> {
        self.0.lock().unwrap().iter().map(|(a, _)| *a).collect()
    }
}

/// An operation that fails with `error()` until call `succeeds_on` (never if 0).
fn failing(
    calls: &Calls,
    succeeds_on: u32,
    error: impl Fn() -> io::Error,
) -> impl FnMut(Attempt) -> std::future::Ready<io::Result<u32>> {
    let calls = calls.clone();
    move |attempt| {
        calls.record(attempt);
        std::future::ready(if attempt.call == succeeds_on {
            Ok(attempt.call)
        } else {
            Err(error())
        })
    }
}

fn reset() -> io::Error {
    io::Error::from(io::ErrorKind::ConnectionReset)
}

fn secs(list: &[f64]) -> Vec<Duration> {
    list.iter().map(|s| Duration::from_secs_f64(*s)).collect()
}

#[tokio::test(start_paused = true)]
async fn failures_while_down_cost_no_attempt_and_the_retry_starts_the_moment_up_arrives() {
    let (sender, watch) = channel(Health::Down);
    let sender = Arc::new(sender);
    let ups = Arc::new(Mutex::new(Vec::new()));
    let calls = Calls::default();
    // One attempt allowed: any failure that counted would end the run.
    let retryer = retryer(policy(1)).with_state(watch, Subject::Host);
    let start = Instant::now();
    let operation = {
        let (calls, sender, ups) = (calls.clone(), Arc::clone(&sender), Arc::clone(&ups));
        move |attempt: Attempt| {
            calls.record(attempt);
            if attempt.call <= 3 {
                // The network drops under the call, and comes back 5 s later.
                sender.send_replace(host(Health::Down));
                let (sender, ups) = (Arc::clone(&sender), Arc::clone(&ups));
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    ups.lock().unwrap().push(Instant::now());
                    sender.send_replace(host(Health::Up));
                });
                std::future::ready(Err(reset()))
            } else {
                std::future::ready(Ok("done"))
            }
        }
    };

    let (value, report) = retryer
        .run(operation)
        .await
        .expect("succeeds after the outages");

    assert_eq!(value, "done");
    assert_eq!((report.attempts, report.calls, report.outages), (1, 4, 3));
    assert_eq!(report.network_wait, Duration::from_secs(15));
    assert_eq!(report.backoff_wait, Duration::ZERO);
    let ups = ups.lock().unwrap().clone();
    let started = &calls.0.lock().unwrap()[1..]
        .iter()
        .map(|(_, at)| *at)
        .collect::<Vec<_>>();
    assert_eq!(started, &ups, "each retry starts at the instant Up is sent");
    assert!(calls.attempts()[1..]
        .iter()
        .all(|a| a.number == 1 && a.after_outage));
    let resumed = report.resumed.expect("the run resumed after an outage");
    assert_eq!(resumed.at, ups[2]);
    assert_eq!(resumed.at - start, Duration::from_secs(15));
    assert_eq!(resumed.verdict.health, Health::Up);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_ends_a_wait_for_the_network() {
    let (_sender, watch) = channel(Health::Down);
    let calls = Calls::default();
    let retryer = retryer(RetryPolicy {
        deadline: Some(Duration::from_secs(30)),
        ..policy(5)
    })
    .with_state(watch, Subject::Host);

    let error = retryer.run(failing(&calls, 0, reset)).await.unwrap_err();

    assert_eq!(error.reason, GiveUp::Deadline(Duration::from_secs(30)));
    assert_eq!(error.report.elapsed, Duration::from_secs(30));
    assert_eq!(error.report.network_wait, Duration::from_secs(30));
    assert_eq!((error.report.attempts, error.report.calls), (0, 1));
    assert!(error.source().is_some(), "the last failure is the source");
}

#[tokio::test(start_paused = true)]
async fn cancelling_during_a_wait_for_the_network_returns_at_once() {
    let (_sender, watch) = channel(Health::Down);
    let token = CancellationToken::new();
    let calls = Calls::default();
    let retryer = retryer(RetryPolicy {
        deadline: None,
        ..policy(5)
    })
    .with_state(watch, Subject::Host)
    .with_cancellation(token.clone());
    // Spawned: the run's future is Send, as a program's task needs it to be.
    let run = {
        let calls = calls.clone();
        tokio::spawn(async move { retryer.run(failing(&calls, 0, reset)).await })
    };
    tokio::time::sleep(Duration::from_secs(7)).await;
    let cancelled_at = Instant::now();
    token.cancel();

    let error = run.await.unwrap().unwrap_err();

    assert!(error.is_cancelled(), "{error}");
    assert_eq!(
        Instant::now(),
        cancelled_at,
        "no time passed after the cancel"
    );
    assert_eq!(error.report.network_wait, Duration::from_secs(7));
    assert_eq!(
        calls.offsets(cancelled_at - Duration::from_secs(7)),
        secs(&[0.0])
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_stops_it() {
    let calls = Calls::default();
    let retryer = retryer(policy(100));
    let run = retryer.run(failing(&calls, 0, reset));
    assert!(tokio::time::timeout(Duration::from_millis(2500), run)
        .await
        .is_err());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(calls.attempts().len(), 2, "calls at 0 s and 1 s, then none");
}

#[tokio::test(start_paused = true)]
async fn an_empty_budget_stops_retries_with_an_error_that_says_so() {
    let calls = Calls::default();
    let budget = RetryBudget::new(2 * RETRY_COST + 2);
    let retryer = retryer(policy(10)).with_budget(budget.clone());

    let error = retryer.run(failing(&calls, 0, reset)).await.unwrap_err();

    assert_eq!(error.reason, GiveUp::BudgetExhausted);
    assert_eq!((error.report.attempts, error.report.budget_spent), (3, 10));
    assert_eq!(budget.available(), 2);
    assert_eq!(
        error.to_string(),
        "gave up: the process's retry budget is spent, so many operations are failing at \
         once; retries are allowed again as operations succeed: 3 attempts in 3s, 0s of it \
         waiting for the network; last failure: connection reset"
    );

    // A timeout costs double: the same budget refilled pays for one retry.
    let timeouts = RetryBudget::new(TIMEOUT_COST + 2);
    let error = retryer
        .clone()
        .with_budget(timeouts)
        .run(failing(&Calls::default(), 0, || {
            io::Error::from(io::ErrorKind::TimedOut)
        }))
        .await
        .unwrap_err();
    assert_eq!(
        (error.reason, error.report.attempts),
        (GiveUp::BudgetExhausted, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn a_success_refills_the_budget_by_one() {
    let budget = RetryBudget::new(CAPACITY);
    let retryer = retryer(policy(5)).with_budget(budget.clone());
    let (_, report) = retryer
        .run(failing(&Calls::default(), 2, reset))
        .await
        .unwrap();
    assert_eq!(report.budget_spent, RETRY_COST);
    assert_eq!(budget.available(), CAPACITY - RETRY_COST + SUCCESS_REWARD);
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_are_not_retried() {
    let calls = Calls::default();
    let error = retryer(policy(5))
        .run(failing(&calls, 0, || {
            io::Error::from(io::ErrorKind::PermissionDenied)
        }))
        .await
        .unwrap_err();
    assert_eq!((error.reason, error.report.calls), (GiveUp::Permanent, 1));
    let cause = error.source().and_then(|e| e.downcast_ref::<io::Error>());
    assert_eq!(
        cause.map(io::Error::kind),
        Some(io::ErrorKind::PermissionDenied)
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_sets_the_delay_instead_of_the_schedule() {
    let calls = Calls::default();
    let start = Instant::now();
    let busy = || {
        io::Error::other(HttpStatus {
            status: 503,
            retry_after: Some(Duration::from_secs(7)),
        })
    };
    let (_, report) = retryer(policy(5))
        .run(failing(&calls, 3, busy))
        .await
        .unwrap();
    assert_eq!(calls.offsets(start), secs(&[0.0, 7.0, 14.0]));
    assert_eq!(report.backoff_wait, Duration::from_secs(14));
}

#[tokio::test(start_paused = true)]
async fn the_callers_classification_overrides_the_default() {
    let calls = Calls::default();
    let error = retryer(policy(5))
        .run_with(|_| ErrorClass::Permanent, failing(&calls, 0, reset))
        .await
        .unwrap_err();
    assert_eq!(error.reason, GiveUp::Permanent);
}

#[tokio::test(start_paused = true)]
async fn without_a_reachable_agent_it_is_plain_backoff_and_says_so_once() {
    let log = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let source = AgentSource::new(dir.path().join("no-agent.sock"));
    let calls = Calls::default();
    let start = Instant::now();
    let retryer = retryer(policy(4)).with_state(source, Subject::Host);

    let error = retryer.run(failing(&calls, 0, reset)).await.unwrap_err();

    assert_eq!(error.reason, GiveUp::AttemptsExhausted);
    assert_eq!(calls.offsets(start), secs(&[0.0, 1.0, 3.0, 7.0]));
    assert_eq!(error.report.network_wait, Duration::ZERO);
    let log = log.text();
    assert_eq!(
        log.matches("state source unavailable").count(),
        1,
        "logged once in 4 failures:\n{log}"
    );
    assert!(log.contains("cannot reach the netwatch agent"), "{log}");
}

#[tokio::test(start_paused = true)]
async fn a_source_that_closes_during_the_wait_falls_back_to_plain_backoff() {
    let (sender, watch) = channel(Health::Down);
    let calls = Calls::default();
    let start = Instant::now();
    let retryer = retryer(policy(2)).with_state(watch, Subject::Host);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(sender);
    });

    let error = retryer.run(failing(&calls, 0, reset)).await.unwrap_err();

    assert_eq!(error.reason, GiveUp::AttemptsExhausted);
    // Waited 2 s, then counted the failure and backed off 1 s.
    assert_eq!(calls.offsets(start), secs(&[0.0, 3.0]));
    assert_eq!(error.report.network_wait, Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn degraded_stretches_the_delays_and_asks_for_another_mirror() {
    let (_sender, watch) = channel(Health::Degraded);
    let calls = Calls::default();
    let start = Instant::now();
    let retryer = retryer(RetryPolicy {
        degraded: DegradedPolicy {
            delay_factor: 3.0,
            switch_mirror: true,
        },
        ..policy(5)
    })
    .with_state(watch, Subject::Host);

    let (_, report) = retryer.run(failing(&calls, 3, reset)).await.unwrap();

    // 1 s and 2 s, tripled; each failure counted.
    assert_eq!(calls.offsets(start), secs(&[0.0, 3.0, 9.0]));
    assert_eq!(report.attempts, 3);
    let mirrors: Vec<_> = calls
        .attempts()
        .iter()
        .map(|a| (a.mirror, a.switch_mirror))
        .collect();
    assert_eq!(mirrors, [(0, false), (1, true), (2, true)]);
    assert_eq!(report.mirror, 2);
}

#[tokio::test(start_paused = true)]
async fn up_unknown_or_a_subject_the_source_does_not_know_get_the_plain_schedule() {
    for (health, subject) in [
        (Health::Up, Subject::Host),
        (Health::Unknown, Subject::Host),
        (Health::Down, Subject::Endpoint("unconfigured".into())),
    ] {
        let (_sender, watch) = channel(health);
        let calls = Calls::default();
        let start = Instant::now();
        let retryer = retryer(policy(5)).with_state(watch, subject.clone());
        retryer.run(failing(&calls, 3, reset)).await.unwrap();
        assert_eq!(
            calls.offsets(start),
            secs(&[0.0, 1.0, 3.0]),
            "{health} {subject}"
        );
    }
}

/// Everything logged on this thread while the guard lives (the tests' runtime is
/// single-threaded, so that is everything the run logs).
fn capture_logs() -> Captured {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let buffer = Arc::clone(&buffer);
        move || Writer(Arc::clone(&buffer))
    };
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(writer)
        .finish();
    Captured {
        buffer,
        _guard: tracing::subscriber::set_default(subscriber),
    }
}

struct Captured {
    buffer: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Writer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A Down judged from refused connections clears only at the next connection: a refusal
/// (the peer's host answered) is retried on the schedule, not waited out.
#[tokio::test(start_paused = true)]
async fn a_refused_connection_is_retried_on_the_schedule_even_while_down() {
    let (_sender, watch) = channel(Health::Down);
    let calls = Calls::default();
    let retryer = retryer(policy(3)).with_state(watch, Subject::Host);
    let start = Instant::now();
    let refused = || io::Error::from(io::ErrorKind::ConnectionRefused);

    let (value, report) = retryer
        .run(failing(&calls, 3, refused))
        .await
        .expect("succeeds on the third call");

    assert_eq!(value, 3);
    assert_eq!((report.attempts, report.calls, report.outages), (3, 3, 0));
    assert_eq!(report.network_wait, Duration::ZERO);
    assert_eq!(calls.offsets(start), secs(&[0.0, 1.0, 3.0]));
}
