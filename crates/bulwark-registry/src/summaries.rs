//! Detection's metric summaries: recording them (the server's detection
//! pipeline, a system write) and reading a device's (an operator's read,
//! with the same permission as reading alerts).

use bulwark_store::{MetricSummary, StoreError, SummariesWritten};
use bulwark_types::DeviceId;
use time::OffsetDateTime;

use crate::auth::Action;
use crate::{Operator, Registry, RegistryError};

/// Most summaries one read returns.
pub const MAX_SUMMARIES: u32 = 1000;

impl Registry {
    /// Records a batch of period summaries in one transaction and prunes
    /// those whose period ended before `prune_before`.
    pub async fn metric_summaries_record(
        &self,
        batch: Vec<MetricSummary>,
        prune_before: OffsetDateTime,
    ) -> Result<SummariesWritten, RegistryError> {
        Ok(self
            .store
            .record_metric_summaries(batch, prune_before)
            .await?)
    }

    /// A device's summaries whose period started at or after `since`,
    /// newest first, at most `limit` (1 to [`MAX_SUMMARIES`]). An unknown
    /// device is `NotFound`; the permission is checked first, so a caller
    /// without it learns nothing about which devices exist.
    pub async fn device_metrics(
        &self,
        op: &Operator,
        device: &DeviceId,
        since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<MetricSummary>, RegistryError> {
        self.allow(op, Action::ReadAlerts).await?;
        if !(1..=MAX_SUMMARIES).contains(&limit) {
            return Err(RegistryError::Invalid(format!(
                "limit must be between 1 and {MAX_SUMMARIES}"
            )));
        }
        if self.store.get_device(device).await?.is_none() {
            return Err(StoreError::NotFound { what: "device" }.into());
        }
        Ok(self
            .store
            .metric_summaries(&format!("device:{device}"), since, limit)
            .await?)
    }
}
