//! The summary writer: the engine's period summaries (taken by the
//! pipeline every `[response] summary_interval_secs`) into the store.
//!
//! ```text
//! pipeline task ──Vec<PeriodSummary> (bounded; full = dropped, counted)──▶ writer task
//!   take_summaries() every interval            chunks of SUMMARY_CHUNK rows, each one
//!                                              store transaction with the retention prune
//! ```
//!
//! The pipeline never waits for the store. A period is written in chunks,
//! one after the other, so other writes (alerts, enrollments) interleave
//! with a large one instead of queueing behind it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bulwark_detect::PeriodSummary;
use bulwark_registry::Registry;
use bulwark_store::MetricSummary;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::{device_id, DetectStats};

/// Periods waiting for the writer; one more is dropped and counted.
pub(super) const SUMMARY_QUEUE: usize = 2;

/// Rows written per store transaction.
const SUMMARY_CHUNK: usize = 2_000;

/// Writes each period's summaries, pruning those older than
/// `retention_days` in the same transactions.
pub(super) async fn write(
    mut rx: mpsc::Receiver<Vec<PeriodSummary>>,
    registry: Arc<Registry>,
    stats: Arc<DetectStats>,
    retention_days: u32,
) {
    let retention = time::Duration::days(i64::from(retention_days));
    while let Some(batch) = rx.recv().await {
        let mut rows = batch.into_iter().map(row);
        loop {
            let chunk: Vec<MetricSummary> = rows.by_ref().take(SUMMARY_CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            let prune_before = OffsetDateTime::now_utc() - retention;
            match registry.metric_summaries_record(chunk, prune_before).await {
                Ok(w) => {
                    stats.summary_rows.fetch_add(w.inserted, Ordering::Relaxed);
                    if w.pruned > 0 {
                        tracing::debug!(pruned = w.pruned, "metric summaries past retention");
                    }
                }
                Err(e) => {
                    stats.summary_batches_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(rows = n, error = %e, "cannot store metric summaries");
                }
            }
        }
    }
}

fn row(s: PeriodSummary) -> MetricSummary {
    MetricSummary {
        device: s.device.as_deref().and_then(device_id),
        entity: s.entity,
        period_start: time_ms(s.start_ms),
        period_end: time_ms(s.end_ms),
        active_windows: s.active_windows,
        metrics: s
            .values
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    }
}

fn time_ms(ms: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_period_summary_becomes_a_row() {
        let s = PeriodSummary {
            entity: "device:m-1".into(),
            device: Some("m-1".into()),
            group: Some("meters".into()),
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_060_000,
            active_windows: 42,
            values: BTreeMap::from([("msgs_in", 7.0)]),
        };
        let r = row(s);
        assert_eq!(r.entity, "device:m-1");
        assert_eq!(r.device.as_ref().map(|d| d.as_str()), Some("m-1"));
        assert_eq!(r.period_start.unix_timestamp(), 1_700_000_000);
        assert_eq!((r.period_end - r.period_start).whole_milliseconds(), 60_000);
        assert_eq!(r.active_windows, 42);
        assert_eq!(r.metrics["msgs_in"], 7.0);
    }
}
