//! `/v1/devices/{id}/metrics`: detection's metric summaries of a device.

use bulwark_api_types::{DeviceMetrics, MetricsQuery};
use bulwark_types::DeviceId;
use reqwest::Method;

use crate::{Client, ClientError};

impl Client {
    /// `GET /v1/devices/{id}/metrics` (newest first).
    pub async fn device_metrics(
        &self,
        id: &DeviceId,
        q: &MetricsQuery,
    ) -> Result<DeviceMetrics, ClientError> {
        let url = self.url(
            &["v1", "devices", id.as_str(), "metrics"],
            &[
                ("since", q.since.clone()),
                ("limit", q.limit.map(|l| l.to_string())),
            ],
        );
        self.send_json(self.request(Method::GET, url)).await
    }
}
