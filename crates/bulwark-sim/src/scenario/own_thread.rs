//! The one connection a scenario's result hinges on (the fan-in and
//! latency subscriber, the fan-out publisher) runs on its own OS thread
//! with its own single-threaded runtime.
//!
//! On the shared runtime it would wait in the same queue as the N other
//! connections' tasks; with a window of 20–64 unacknowledged messages every
//! late PUBACK slows its flow down, and the load generator's scheduling,
//! not the broker, would be measured. Its own thread gets its share of a
//! core from the kernel instead.

use std::future::Future;

use anyhow::{Context, Result};
use tokio::sync::oneshot;

use crate::mqtt::{Conn, Failure};

/// A connection being set up on its own thread, waiting for its plan.
pub(crate) struct Lone<P, R> {
    ready: oneshot::Receiver<Result<(), Failure>>,
    plan: oneshot::Sender<P>,
    result: oneshot::Receiver<R>,
}

/// Starts a thread that runs `setup` (connect, subscribe), reports
/// readiness, waits for the plan, then runs `run` and sends its result.
pub(crate) fn spawn<P, R, S, SF, F, FF>(name: &str, setup: S, run: F) -> Result<Lone<P, R>>
where
    P: Send + 'static,
    R: Send + 'static,
    S: FnOnce() -> SF + Send + 'static,
    SF: Future<Output = Result<Conn, Failure>>,
    F: FnOnce(Conn, P) -> FF + Send + 'static,
    FF: Future<Output = R>,
{
    let (ready_tx, ready) = oneshot::channel();
    let (plan, plan_rx) = oneshot::channel();
    let (result_tx, result) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(Failure::Io(e)));
                    return;
                }
            };
            rt.block_on(async move {
                let conn = match setup().await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                match plan_rx.await {
                    Ok(plan) => {
                        let _ = result_tx.send(run(conn, plan).await);
                    }
                    Err(_) => conn.close().await,
                }
            });
        })
        .context("cannot start a thread")?;
    Ok(Lone {
        ready,
        plan,
        result,
    })
}

impl<P, R> Lone<P, R> {
    /// Waits until the setup is done.
    pub(crate) async fn ready(&mut self) -> Result<(), Failure> {
        (&mut self.ready)
            .await
            .unwrap_or(Err(Failure::Unexpected("the connection thread ended")))
    }

    /// Hands over the plan; the result arrives on the returned receiver.
    pub(crate) fn start(self, plan: P) -> oneshot::Receiver<R> {
        let _ = self.plan.send(plan);
        self.result
    }
}
