//! The dispatcher: one task and one bounded queue per sink.
//!
//! [`Dispatcher::dispatch`] never waits: it filters by severity and offers
//! the notice to each sink's queue; a full queue drops the notice for that
//! sink and counts it. Each sink's task takes notices in order and retries
//! one until it is delivered, refused, or out of attempts, then moves on:
//! a slow receiver delays only its own sink.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulwark_types::Severity;
use serde::Serialize;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::{Common, SinkConfig};
use crate::sink::{Retry, Transport};
use crate::{Notice, SinkError};

/// A snapshot of one sink's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SinkStats {
    /// The sink's name (`name`, or `<type>-<index>`).
    pub name: String,
    /// `webhook`, `syslog`, `jsonl` or `nats`.
    pub kind: &'static str,
    /// Notices delivered.
    pub delivered: u64,
    /// Attempts that failed (a notice retried three times and then
    /// delivered counts three).
    pub failed_attempts: u64,
    /// Notices given up on: refused by the receiver, out of attempts, or
    /// impossible to encode.
    pub gave_up: u64,
    /// Notices dropped because the queue was full (or, at shutdown, still
    /// queued when the deadline passed).
    pub dropped: u64,
    /// Notices below `min_severity`, not queued.
    pub filtered: u64,
    /// Notices queued or being delivered now.
    pub queued: u64,
    /// The last failure, with its causes.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    gave_up: AtomicU64,
    dropped: AtomicU64,
    filtered: AtomicU64,
    queued: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Counters {
    fn failed(&self, error: &SinkError) -> String {
        self.failed_attempts.fetch_add(1, Ordering::Relaxed);
        let chain = error.chain();
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(chain.clone());
        }
        chain
    }
}

struct SinkHandle {
    name: String,
    kind: &'static str,
    min_severity: Severity,
    tx: mpsc::Sender<Arc<Notice>>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

fn snapshot(name: &str, kind: &'static str, c: &Counters) -> SinkStats {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    SinkStats {
        name: name.to_owned(),
        kind,
        delivered: get(&c.delivered),
        failed_attempts: get(&c.failed_attempts),
        gave_up: get(&c.gave_up),
        dropped: get(&c.dropped),
        filtered: get(&c.filtered),
        queued: get(&c.queued),
        last_error: c.last_error.lock().ok().and_then(|l| l.clone()),
    }
}

/// Delivers notices to the configured sinks.
pub struct Dispatcher {
    sinks: Vec<SinkHandle>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.sinks.iter().map(|s| (&s.name, s.kind)))
            .finish()
    }
}

/// Checks every configuration and builds its transport.
pub(crate) fn build_all(configs: &[SinkConfig]) -> Result<Vec<(Common, Transport)>, SinkError> {
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(configs.len());
    for (index, config) in configs.iter().enumerate() {
        let common = config.common(index);
        let name = common.name.as_str();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(SinkError::config(
                name,
                "name must be 1 to 64 characters without control characters",
            ));
        }
        if !names.insert(common.name.clone()) {
            return Err(SinkError::config(name, "another sink has the same name"));
        }
        if common.queue_capacity == 0 || common.queue_capacity > 1 << 20 {
            return Err(SinkError::config(
                name,
                "queue_capacity must be between 1 and 1048576",
            ));
        }
        let r = &common.retry;
        if r.max_attempts == 0 || r.max_attempts > 100 {
            return Err(SinkError::config(
                name,
                "retry.max_attempts must be between 1 and 100",
            ));
        }
        if r.initial_backoff_ms == 0 || r.initial_backoff_ms > r.max_backoff_ms {
            return Err(SinkError::config(
                name,
                "retry.initial_backoff_ms must be positive and at most retry.max_backoff_ms",
            ));
        }
        let transport = Transport::build(config, name)?;
        out.push((common, transport));
    }
    Ok(out)
}

impl Dispatcher {
    /// Checks every configuration, then spawns one task per sink. Nothing
    /// is spawned when any configuration is refused. Must be called inside
    /// a Tokio runtime (an error otherwise). No connection is made until
    /// the first notice.
    pub fn start(configs: Vec<SinkConfig>) -> Result<Dispatcher, SinkError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            SinkError::config(
                "*",
                "Dispatcher::start must be called inside a Tokio runtime",
            )
        })?;
        let built = build_all(&configs)?;
        let sinks = built
            .into_iter()
            .zip(&configs)
            .map(|((common, transport), config)| {
                let (tx, rx) = mpsc::channel(common.queue_capacity);
                let counters = Arc::new(Counters::default());
                let span = tracing::info_span!("sink", name = %common.name, kind = config.kind());
                let task = runtime
                    .spawn(run(rx, transport, common.clone(), counters.clone()).instrument(span));
                SinkHandle {
                    name: common.name,
                    kind: config.kind(),
                    min_severity: common.min_severity,
                    tx,
                    counters,
                    task,
                }
            })
            .collect();
        Ok(Dispatcher { sinks })
    }

    /// Offers `notice` to every sink whose `min_severity` it meets. Never
    /// waits and never fails: a full queue drops it for that sink (counted
    /// in [`SinkStats::dropped`]).
    pub fn dispatch(&self, notice: Notice) {
        let notice = Arc::new(notice);
        for sink in &self.sinks {
            let c = &sink.counters;
            if notice.severity() < sink.min_severity {
                c.filtered.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            c.queued.fetch_add(1, Ordering::Relaxed);
            match sink.tx.try_send(notice.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Closed(_)) => {
                    c.queued.fetch_sub(1, Ordering::Relaxed);
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(sink = %sink.name, kind = notice.kind(), "sink queue full: notice dropped");
                }
            }
        }
    }

    /// A snapshot of every sink's counters, in configuration order.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.sinks
            .iter()
            .map(|s| snapshot(&s.name, s.kind, &s.counters))
            .collect()
    }

    /// Closes the queues and lets each sink deliver what it holds until
    /// `deadline` has passed; then stops the sinks still working and counts
    /// their undelivered notices as dropped. Returns the final counters.
    pub async fn shutdown(self, deadline: Duration) -> Vec<SinkStats> {
        let until = tokio::time::Instant::now() + deadline;
        // Closing every queue first lets all sinks drain at once; a task
        // ends when its queue is empty and closed.
        let closing: Vec<_> = self
            .sinks
            .into_iter()
            .map(|s| (s.name, s.kind, s.counters, s.task))
            .collect();
        let mut out = Vec::with_capacity(closing.len());
        for (name, kind, counters, mut task) in closing {
            if tokio::time::timeout_at(until, &mut task).await.is_err() {
                task.abort();
                let left = counters.queued.swap(0, Ordering::Relaxed);
                counters.dropped.fetch_add(left, Ordering::Relaxed);
                tracing::warn!(sink = %name, undelivered = left, "sink did not drain before the shutdown deadline");
            }
            out.push(snapshot(&name, kind, &counters));
        }
        out
    }
}

/// One sink's task: delivers its queue in order until it is closed.
async fn run(
    mut rx: mpsc::Receiver<Arc<Notice>>,
    mut transport: Transport,
    common: Common,
    counters: Arc<Counters>,
) {
    while let Some(notice) = rx.recv().await {
        deliver(&mut transport, &notice, &common, &counters).await;
        counters.queued.fetch_sub(1, Ordering::Relaxed);
    }
    transport.close().await;
}

async fn deliver(transport: &mut Transport, notice: &Notice, common: &Common, c: &Counters) {
    let payload = match transport.prepare(notice) {
        Ok(p) => p,
        Err(e) => {
            let chain = c.failed(&e);
            c.gave_up.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(kind = notice.kind(), error = %chain, "notice cannot be encoded: given up");
            return;
        }
    };
    let max = common.retry.max_attempts.max(1);
    for attempt in 1..=max {
        let failure = match transport.attempt(&payload).await {
            Ok(()) => {
                c.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(f) => f,
        };
        let chain = c.failed(&failure.error);
        if attempt == max || failure.retry == Retry::Never {
            c.gave_up.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(kind = notice.kind(), delivery = %payload.delivery_id, attempt, error = %chain, "delivery failed: given up");
            return;
        }
        let wait = match failure.retry {
            Retry::After(d) => d,
            Retry::Backoff | Retry::Never => crate::backoff::backoff(&common.retry, attempt),
        };
        tracing::info!(kind = notice.kind(), delivery = %payload.delivery_id, attempt, error = %chain, retry_in_ms = wait.as_millis() as u64, "delivery failed: will retry");
        tokio::time::sleep(wait).await;
    }
}
