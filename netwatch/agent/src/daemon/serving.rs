//! Serves clients and the metrics exporter on a thread of its own, with its own runtime, so
//! that nothing the agent's loop does (a full re-read in a netlink storm, attaching programs
//! to hundreds of new interfaces) delays an answer: both read the latest published state,
//! which is always there.

use std::sync::Arc;

use tokio::{
    net::{TcpListener, UnixListener},
    sync::watch,
};
use tracing::warn;

use crate::{
    metrics::{self, AgentCosts},
    server::{self, Demand},
    state::StateWatch,
};

/// Starts the serving thread; it ends when the state's source does (the agent stopping).
pub fn spawn(
    socket: Option<UnixListener>,
    metrics: Option<(TcpListener, metrics::Access)>,
    state: StateWatch,
    demand: Demand,
    costs: watch::Receiver<Arc<AgentCosts>>,
) -> std::io::Result<()> {
    // Listeners belong to the runtime that made them: handed over as plain sockets.
    let socket = socket.map(UnixListener::into_std).transpose()?;
    let metrics = metrics
        .map(|(listener, access)| listener.into_std().map(|listener| (listener, access)))
        .transpose()?;
    std::thread::Builder::new()
        .name("netwatch-serve".into())
        .spawn(move || {
            // This thread parses what clients send: it needs no capability at all.
            if let Err(e) = super::drop_thread_capabilities() {
                warn!(error = %e, "the serving thread could not drop its capabilities");
            }
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    warn!(error = %e, "cannot start the serving thread's runtime: no socket or metrics");
                    return;
                }
            };
            runtime.block_on(async move {
                let socket = socket.map(UnixListener::from_std).transpose();
                let metrics = metrics
                    .map(|(listener, access)| {
                        TcpListener::from_std(listener).map(|listener| (listener, access))
                    })
                    .transpose();
                let (socket, metrics) = match (socket, metrics) {
                    (Ok(socket), Ok(metrics)) => (socket, metrics),
                    (Err(e), _) | (_, Err(e)) => {
                        warn!(error = %e, "cannot serve the listeners on the serving thread");
                        return;
                    }
                };
                let clients = async {
                    if let Some(listener) = socket {
                        if let Err(e) = server::serve(listener, state.clone(), demand).await {
                            warn!(error = %e, "the client socket stopped serving");
                        }
                    }
                };
                let exporter = async {
                    if let Some((listener, access)) = metrics {
                        if let Err(e) = metrics::serve(listener, access, state.clone(), costs).await
                        {
                            warn!(error = %e, "the metrics exporter stopped serving");
                        }
                    }
                };
                tokio::join!(clients, exporter);
            });
        })
        .map(|_| ())
}
