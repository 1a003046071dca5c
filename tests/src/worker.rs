//! `Worker`: a background thread inside a namespace, told to stop and joined on drop, so
//! nothing the bench starts outlives the scenario that started it (also while unwinding).

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::netns::NetNs;

pub struct Worker<T> {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Worker<T> {
    /// Runs `f` on a new thread that entered `ns` (setns moves only the calling thread, so
    /// every socket `f` creates lives there). `f` must return soon after its flag is set.
    pub fn spawn_in(
        ns: &NetNs,
        name: &str,
        f: impl FnOnce(&AtomicBool) -> T + Send + 'static,
    ) -> Self {
        let file = ns.open();
        let path = ns.path();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                // SAFETY: `file` is an open namespace file; setns only changes this thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert!(
                    rc == 0,
                    "setns into {path}: {}",
                    std::io::Error::last_os_error()
                );
                drop(file);
                f(&flag)
            })
            .unwrap_or_else(|e| panic!("spawning the {name} thread: {e}"));
        Worker {
            stop,
            handle: Some(handle),
        }
    }
}

impl<T> Drop for Worker<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
