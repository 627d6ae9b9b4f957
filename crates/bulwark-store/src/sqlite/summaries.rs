//! Detection's metric summaries: the bodies of the `Store` operations
//! (`ops.rs` runs each as one read or write job).
//!
//! A batch is inserted in one transaction together with a bounded
//! retention prune, so the table's size follows the retention without a
//! separate sweeper. Not audited: these are measurements, not decisions.

use rusqlite::{params, Connection, Row};
use time::OffsetDateTime;

use super::rows::{self, from_ms, ms};
use super::writer::WriteTx;
use crate::{MetricSummary, Result, StoreError, SummariesWritten};

/// Longest list answer.
pub const MAX_LIST: u32 = 1000;

/// Rows a prune deletes at least (when that many are past retention); it
/// deletes up to twice the batch if that is more, so it keeps up with the
/// inserts and a shortened retention catches up over a few batches.
const MIN_PRUNE: usize = 10_000;

const COLS: &str = "entity, device, period_start, period_end, active_windows, metrics";

fn summary_row(r: &Row) -> rusqlite::Result<MetricSummary> {
    let metrics: String = r.get(5)?;
    Ok(MetricSummary {
        entity: r.get(0)?,
        device: match r.get::<_, Option<String>>(1)? {
            None => None,
            Some(_) => Some(rows::device_id(r, 1)?),
        },
        period_start: from_ms(r.get(2)?),
        period_end: from_ms(r.get(3)?),
        active_windows: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(u32::MAX),
        metrics: serde_json::from_str(&metrics).map_err(|e| rows::bad(5, e))?,
    })
}

pub(super) fn record(
    tx: &mut WriteTx<'_>,
    batch: &[MetricSummary],
    prune_before: OffsetDateTime,
) -> Result<SummariesWritten> {
    let mut insert = tx.conn.prepare_cached(
        "INSERT INTO metric_summaries (entity, device, period_start, period_end, \
         active_windows, metrics) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for s in batch {
        // serde_json writes a non-finite f64 as `null`, which would not read
        // back as a number: leave such values out.
        let finite = s.metrics.iter().filter(|(_, v)| v.is_finite());
        let metrics = serde_json::to_string(&finite.collect::<std::collections::BTreeMap<_, _>>())
            .map_err(StoreError::internal)?;
        insert.execute(params![
            s.entity,
            s.device.as_ref().map(|d| d.as_str()),
            ms(s.period_start),
            ms(s.period_end),
            s.active_windows,
            metrics,
        ])?;
    }
    let most = MIN_PRUNE.max(batch.len().saturating_mul(2));
    let pruned = tx
        .conn
        .prepare_cached(
            "DELETE FROM metric_summaries WHERE id IN \
             (SELECT id FROM metric_summaries WHERE period_end < ?1 LIMIT ?2)",
        )?
        .execute(params![ms(prune_before), most as i64])?;
    Ok(SummariesWritten {
        inserted: batch.len() as u64,
        pruned: pruned as u64,
    })
}

pub(super) fn list(
    conn: &Connection,
    entity: &str,
    since: OffsetDateTime,
    limit: u32,
) -> Result<Vec<MetricSummary>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLS} FROM metric_summaries WHERE entity = ?1 AND period_start >= ?2 \
         ORDER BY period_start DESC, id DESC LIMIT ?3"
    ))?;
    let rows = stmt.query_map(
        params![entity, ms(since), limit.clamp(1, MAX_LIST)],
        summary_row,
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
