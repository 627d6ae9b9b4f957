//! Detection's metric summaries through the registry: the pipeline's write,
//! an operator's read of one device, and who may read.

mod common;

use std::collections::BTreeMap;

use bulwark_registry::RegistryError;
use bulwark_store::{MetricSummary, StoreError};
use bulwark_types::{DeviceId, Role};
use common::fixture;
use time::{Duration, OffsetDateTime};

fn summary(device: &DeviceId, start: OffsetDateTime, msgs_in: f64) -> MetricSummary {
    MetricSummary {
        entity: format!("device:{device}"),
        device: Some(device.clone()),
        period_start: start,
        period_end: start + Duration::minutes(1),
        active_windows: 60,
        metrics: BTreeMap::from([("msgs_in".to_owned(), msgs_in)]),
    }
}

#[tokio::test]
async fn readers_of_alerts_read_a_devices_summaries_and_others_are_refused() {
    let f = fixture().await;
    let dev = f.enrolled("meters", "m-1").await;
    let t0 = OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp())
        .unwrap()
        - Duration::minutes(10);
    let batch = vec![
        summary(&dev, t0, 1.0),
        summary(&dev, t0 + Duration::minutes(1), 2.0),
    ];
    let written = f
        .registry
        .metric_summaries_record(batch, t0 - Duration::days(7))
        .await
        .unwrap();
    assert_eq!(written.inserted, 2);

    let since = t0 - Duration::hours(1);
    let auditor = f.operator(Role::Auditor).await;
    let got = f
        .registry
        .device_metrics(&auditor, &dev, since, 100)
        .await
        .unwrap();
    let values: Vec<f64> = got.iter().map(|s| s.metrics["msgs_in"]).collect();
    assert_eq!(values, [2.0, 1.0], "newest first");

    // Reading the inventory is not enough: the metrics reveal behaviour.
    let release = f.operator(Role::ReleaseManager).await;
    let err = f
        .registry
        .device_metrics(&release, &dev, since, 100)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Forbidden { .. }), "{err}");
    // Refused before the device is looked up.
    let ghost = DeviceId::new("ghost").unwrap();
    let err = f
        .registry
        .device_metrics(&release, &ghost, since, 100)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Forbidden { .. }), "{err}");

    let err = f
        .registry
        .device_metrics(&f.admin, &ghost, since, 100)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Store(StoreError::NotFound { what: "device" })
        ),
        "{err}"
    );
    for limit in [0, 1001] {
        let err = f
            .registry
            .device_metrics(&f.admin, &dev, since, limit)
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::Invalid(_)), "{err}");
    }
}
