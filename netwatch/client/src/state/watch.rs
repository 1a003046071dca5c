//! `StateWatch`: the one way consumers read the verdict, whether it comes from the monitor in
//! this process, from the agent's socket, or from a test double. Each holds the latest state
//! and wakes on every change.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

use super::{Health, NetworkState, Subject, Verdict};

/// How a wait for Up ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The subject reached the health waited for (Up, for `wait_for_up`).
    Up(Verdict),
    /// The timeout passed; the verdict then, if the subject exists.
    TimedOut(Option<Verdict>),
    /// The source of state went away (the agent stopped, the connection closed).
    SourceClosed,
}

#[derive(Clone, Debug)]
pub struct StateWatch {
    receiver: watch::Receiver<Arc<NetworkState>>,
}

impl StateWatch {
    pub fn new(receiver: watch::Receiver<Arc<NetworkState>>) -> Self {
        Self { receiver }
    }

    /// A source that the caller feeds: for tests, and for anything that computes state itself.
    pub fn channel(initial: NetworkState) -> (watch::Sender<Arc<NetworkState>>, Self) {
        let (sender, receiver) = watch::channel(Arc::new(initial));
        (sender, Self::new(receiver))
    }

    /// The latest state.
    pub fn current(&self) -> Arc<NetworkState> {
        Arc::clone(&self.receiver.borrow())
    }

    /// Waits for the next change and returns the new state; `None` once the source is gone.
    pub async fn changed(&mut self) -> Option<Arc<NetworkState>> {
        self.receiver.changed().await.ok()?;
        Some(Arc::clone(&self.receiver.borrow_and_update()))
    }

    /// Whether the source is gone (the agent stopped, the connection closed): no further
    /// change will come.
    pub fn is_closed(&self) -> bool {
        self.receiver.has_changed().is_err()
    }

    /// The verdict for `subject` now, if it exists.
    pub fn verdict(&self, subject: &Subject) -> Option<Verdict> {
        self.receiver.borrow().verdict(subject).cloned()
    }

    /// Returns as soon as `subject` is Up, or when `timeout` has passed.
    pub async fn wait_for_up(&mut self, subject: &Subject, timeout: Duration) -> WaitOutcome {
        self.wait_until(subject, |h| h == Health::Up, timeout).await
    }

    /// Returns as soon as `subject` exists and is no longer Down (Up, Degraded, or Unknown: a
    /// link back after a long silence is Unknown until something arrives, and whatever the
    /// waiter sends next is that evidence), or when `timeout` has passed.
    pub async fn wait_while_down(&mut self, subject: &Subject, timeout: Duration) -> WaitOutcome {
        self.wait_until(subject, |h| h != Health::Down, timeout)
            .await
    }

    /// Returns as soon as `subject`'s health satisfies `accept` (as `WaitOutcome::Up`, with
    /// the verdict then), or when `timeout` has passed.
    async fn wait_until(
        &mut self,
        subject: &Subject,
        accept: impl Fn(Health) -> bool,
        timeout: Duration,
    ) -> WaitOutcome {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let verdict = self.receiver.borrow_and_update().verdict(subject).cloned();
            if let Some(v) = verdict.as_ref().filter(|v| accept(v.health)) {
                return WaitOutcome::Up(v.clone());
            }
            match tokio::time::timeout_at(deadline, self.receiver.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return WaitOutcome::SourceClosed,
                Err(_) => return WaitOutcome::TimedOut(verdict),
            }
        }
    }

    /// `wait_for_up` for the host.
    pub async fn wait_for_network(&mut self, timeout: Duration) -> WaitOutcome {
        self.wait_for_up(&Subject::Host, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(health: Health) -> NetworkState {
        let mut s = NetworkState::initial(0);
        s.host.health = health;
        s
    }

    #[tokio::test(start_paused = true)]
    async fn wait_returns_the_moment_the_host_is_up() {
        let (sender, mut watch) = StateWatch::channel(state(Health::Down));
        let waiter =
            tokio::spawn(async move { watch.wait_for_network(Duration::from_secs(30)).await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        sender.send_replace(Arc::new(state(Health::Degraded)));
        tokio::time::sleep(Duration::from_secs(5)).await;
        sender.send_replace(Arc::new(state(Health::Up)));
        assert!(matches!(waiter.await.unwrap(), WaitOutcome::Up(v) if v.health == Health::Up));
    }

    #[tokio::test(start_paused = true)]
    async fn wait_times_out_with_the_last_verdict() {
        let (_sender, mut watch) = StateWatch::channel(state(Health::Down));
        let outcome = watch.wait_for_network(Duration::from_secs(2)).await;
        assert!(matches!(outcome, WaitOutcome::TimedOut(Some(v)) if v.health == Health::Down));
    }

    #[tokio::test(start_paused = true)]
    async fn wait_for_an_unknown_endpoint_times_out_without_a_verdict() {
        let (_sender, mut watch) = StateWatch::channel(state(Health::Up));
        let outcome = watch
            .wait_for_up(&Subject::Endpoint("nope".into()), Duration::from_secs(1))
            .await;
        assert_eq!(outcome, WaitOutcome::TimedOut(None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_while_down_ends_on_unknown_but_not_on_down() {
        let (sender, mut watch) = StateWatch::channel(state(Health::Down));
        let waiter = tokio::spawn(async move {
            watch
                .wait_while_down(&Subject::Host, Duration::from_secs(30))
                .await
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        sender.send_replace(Arc::new(state(Health::Down)));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished());
        sender.send_replace(Arc::new(state(Health::Unknown)));
        assert!(matches!(waiter.await.unwrap(), WaitOutcome::Up(v) if v.health == Health::Unknown));
    }

    #[tokio::test]
    async fn wait_ends_when_the_source_goes() {
        let (sender, mut watch) = StateWatch::channel(state(Health::Down));
        drop(sender);
        assert_eq!(
            watch.wait_for_network(Duration::from_secs(30)).await,
            WaitOutcome::SourceClosed
        );
    }
}
