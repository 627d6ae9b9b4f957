//! `/v1/devices/{id}/metrics`: detection's metric summaries of a device.

use std::collections::BTreeMap;

use bulwark_types::DeviceId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

/// The query of `GET /v1/devices/{id}/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MetricsQuery {
    /// Only periods that started at or after this RFC 3339 time (default:
    /// everything retained).
    pub since: Option<String>,
    /// At most this many (default 100, 1 to 1000).
    pub limit: Option<u32>,
}

/// The answer to `GET /v1/devices/{id}/metrics`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceMetrics {
    #[schema(value_type = String)]
    pub device: DeviceId,
    pub summaries: Vec<MetricPeriod>,
}

/// One summary period of a device: its 1 s detection windows aggregated
/// (counters summed, maxima and gauges maximal, means averaged over the
/// windows with a value, minima over the non-zero values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricPeriod {
    /// Start of the device's first active window in the period.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub start: OffsetDateTime,
    /// End of its last active window in the period.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub end: OffsetDateTime,
    /// Windows in which the device was active.
    pub active_windows: u32,
    /// Non-zero metrics by name (`msgs_in`, `bytes_in`, `msgs_out`,
    /// `connects`, `auth_failures`, `denials`, …).
    pub metrics: BTreeMap<String, f64>,
}
