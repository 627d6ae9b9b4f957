//! The install state machine over [`DirectorySlots`], with "reboots"
//! simulated by reopening the slots and the updater from disk.

use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::slots::{DirectorySlots, IMAGE_FILE};

#[derive(Default)]
struct Recorder(Mutex<Vec<StepReport>>);

#[async_trait]
impl Reporter for Recorder {
    async fn report(&self, report: &StepReport) -> Result<(), AgentError> {
        self.0.lock().unwrap().push(report.clone());
        Ok(())
    }
}

impl Recorder {
    fn steps(&self) -> Vec<(Step, Option<String>)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.state, r.reason.clone()))
            .collect()
    }
}

struct Device {
    dir: tempfile::TempDir,
    slots: Arc<DirectorySlots>,
    reporter: Arc<Recorder>,
    updater: Updater,
}

fn health(cmd: &[&str], timeout: Duration) -> HealthCheck {
    HealthCheck {
        command: cmd.iter().map(|s| (*s).to_owned()).collect(),
        timeout,
    }
}

impl Device {
    async fn new() -> Device {
        let dir = tempfile::tempdir().unwrap();
        let slots = Arc::new(DirectorySlots::open(&dir.path().join("slots")).unwrap());
        slots.boot().await.unwrap();
        let reporter = Arc::new(Recorder::default());
        let updater = Updater::open(
            &dir.path().join("state"),
            "d1",
            slots.clone(),
            reporter.clone(),
            health(&["/bin/true"], Duration::from_secs(10)),
        )
        .unwrap();
        Device {
            dir,
            slots,
            reporter,
            updater,
        }
    }

    /// A simulated reboot: everything is reopened from disk and the
    /// directory "bootloader" runs.
    async fn reboot(self, check: HealthCheck) -> Device {
        let Device { dir, .. } = self;
        let slots = Arc::new(DirectorySlots::open(&dir.path().join("slots")).unwrap());
        slots.boot().await.unwrap();
        let reporter = Arc::new(Recorder::default());
        let updater = Updater::open(
            &dir.path().join("state"),
            "d1",
            slots.clone(),
            reporter.clone(),
            check,
        )
        .unwrap();
        Device {
            dir,
            slots,
            reporter,
            updater,
        }
    }

    fn artifact(&self, content: &[u8], floor: u64) -> (Release, PathBuf) {
        let path = self.dir.path().join("verified.bin");
        std::fs::write(&path, content).unwrap();
        let release = Release {
            target: "fw-acme.bin".into(),
            version: "2.0.0".into(),
            length: content.len() as u64,
            sha256: hex::encode(crate::sha256(content)),
            floor,
            version_floor: Some("2.0.0".into()),
            rollout: Some("r-1".into()),
        };
        (release, path)
    }
}

const BEFORE_REBOOT: [Step; 5] = [
    Step::Queued,
    Step::Downloading,
    Step::Verifying,
    Step::Installing,
    Step::Rebooting,
];

#[tokio::test]
async fn healthy_update_is_confirmed_and_raises_the_floor() {
    let dev = Device::new().await;
    let (release, path) = dev.artifact(b"firmware v2", 7);
    assert_eq!(
        dev.updater.install(release.clone(), &path).await.unwrap(),
        Step::Rebooting
    );
    let steps: Vec<Step> = dev.reporter.steps().into_iter().map(|s| s.0).collect();
    assert_eq!(steps, BEFORE_REBOOT);
    assert_eq!(dev.updater.rollback_floor().await, 0, "not before healthy");
    let err = dev.updater.install(release, &path).await.unwrap_err();
    assert!(err.to_string().contains("in progress"), "{err}");

    let dev = dev
        .reboot(health(&["/bin/true"], Duration::from_secs(10)))
        .await;
    assert!(dev.slots.boot_state().await.unwrap().trial);
    assert_eq!(dev.updater.resume().await.unwrap(), Some(Step::Healthy));
    assert_eq!(dev.reporter.steps(), [(Step::Healthy, None)]);
    let st = dev.slots.boot_state().await.unwrap();
    assert_eq!(
        (st.booted.as_str(), st.trial, st.last_known_good.as_str()),
        ("b", false, "b")
    );
    assert_eq!(dev.updater.rollback_floor().await, 7);
    assert_eq!(dev.updater.version_floor().await.as_deref(), Some("2.0.0"));
    let held = dev.updater.release_in("b").await.unwrap();
    assert_eq!(
        (held.target.as_str(), held.version.as_str()),
        ("fw-acme.bin", "2.0.0")
    );
    assert_eq!(dev.updater.release_in("a").await, None);
    assert_eq!(
        dev.updater.resume().await.unwrap(),
        None,
        "nothing left to do"
    );

    // The floor persists and refuses an older release.
    let dev = dev
        .reboot(health(&["/bin/true"], Duration::from_secs(10)))
        .await;
    assert_eq!(dev.updater.rollback_floor().await, 7);
    let (old, path) = dev.artifact(b"firmware v1", 3);
    assert_eq!(dev.updater.install(old, &path).await.unwrap(), Step::Failed);
    let last = dev.reporter.steps().pop().unwrap();
    assert!(last
        .1
        .unwrap()
        .contains("below the device's anti-rollback floor 7"));
}

#[tokio::test]
async fn failed_health_check_rolls_back_to_the_old_slot() {
    let dev = Device::new().await;
    let (release, path) = dev.artifact(b"bad firmware", 1);
    dev.updater.install(release, &path).await.unwrap();
    let dev = dev
        .reboot(health(
            &["/bin/sh", "-c", "echo service down >&2; exit 4"],
            Duration::from_secs(10),
        ))
        .await;
    assert_eq!(dev.updater.resume().await.unwrap(), Some(Step::RolledBack));
    let (step, reason) = dev.reporter.steps().pop().unwrap();
    assert_eq!(step, Step::RolledBack);
    let reason = reason.unwrap();
    assert!(
        reason.contains("exit status 4") && reason.contains("service down"),
        "{reason}"
    );
    assert!(reason.contains("rolled back to slot a"), "{reason}");
    let st = dev.slots.boot_state().await.unwrap();
    assert_eq!((st.booted.as_str(), st.trial), ("a", false));
    assert_eq!(dev.updater.rollback_floor().await, 0);
    assert_eq!(
        dev.updater.version_floor().await,
        None,
        "no floor from a rolled-back release"
    );
    // Fallback mode survives the next boot too.
    let dev = dev
        .reboot(health(&["/bin/true"], Duration::from_secs(10)))
        .await;
    assert_eq!(dev.slots.active().await.unwrap(), "a");
}

#[tokio::test]
async fn health_check_timeout_rolls_back() {
    let dev = Device::new().await;
    let (release, path) = dev.artifact(b"hangs", 1);
    dev.updater.install(release, &path).await.unwrap();
    let dev = dev
        .reboot(health(&["/bin/sleep", "30"], Duration::from_millis(300)))
        .await;
    let started = std::time::Instant::now();
    assert_eq!(dev.updater.resume().await.unwrap(), Some(Step::RolledBack));
    assert!(started.elapsed() < Duration::from_secs(10));
    let reason = dev.reporter.steps().pop().unwrap().1.unwrap();
    assert!(reason.contains("timed out"), "{reason}");
    assert_eq!(dev.slots.active().await.unwrap(), "a");
}

#[tokio::test]
async fn bad_artifacts_fail_before_any_slot_is_touched() {
    let dev = Device::new().await;
    let (mut release, path) = dev.artifact(b"firmware", 1);
    release.sha256 = hex::encode([0u8; 32]);
    assert_eq!(
        dev.updater.install(release, &path).await.unwrap(),
        Step::Failed
    );
    let reason = dev.reporter.steps().pop().unwrap().1.unwrap();
    assert!(reason.contains("SHA-256 does not match"), "{reason}");

    let (mut release, path) = dev.artifact(b"firmware", 1);
    release.length += 1;
    assert_eq!(
        dev.updater.install(release, &path).await.unwrap(),
        Step::Failed
    );
    let (mut release, path) = dev.artifact(b"firmware", 1);
    release.length -= 1;
    assert_eq!(
        dev.updater.install(release, &path).await.unwrap(),
        Step::Failed
    );
    let reason = dev.reporter.steps().pop().unwrap().1.unwrap();
    assert!(reason.contains("longer than"), "{reason}");

    assert!(!dev.slots.slot_dir("b").join(IMAGE_FILE).exists());
    assert_eq!(dev.slots.state().await.pending_trial, None);
    let steps: Vec<Step> = dev.reporter.steps().into_iter().map(|s| s.0).collect();
    assert!(!steps.contains(&Step::Installing));
}

#[tokio::test]
async fn a_trial_the_bootloader_abandoned_is_reported_rolled_back() {
    let dev = Device::new().await;
    let (release, path) = dev.artifact(b"crashes at boot", 1);
    dev.updater.install(release, &path).await.unwrap();
    // The new slot boots once and dies before the agent decides; the next
    // boot falls back to slot a.
    let dev = dev
        .reboot(health(&["/bin/true"], Duration::from_secs(10)))
        .await;
    let dev = dev
        .reboot(health(&["/bin/true"], Duration::from_secs(10)))
        .await;
    assert_eq!(dev.updater.resume().await.unwrap(), Some(Step::RolledBack));
    let reason = dev.reporter.steps().pop().unwrap().1.unwrap();
    assert!(reason.contains("last known good slot a"), "{reason}");
}

#[tokio::test]
async fn an_install_interrupted_by_a_restart_is_undone() {
    let dev = Device::new().await;
    let (release, path) = dev.artifact(b"v2", 1);
    // Simulate a crash right after mark_trial, before `rebooting` was stored.
    let slot = dev.slots.write_inactive(&path).await.unwrap();
    dev.slots.mark_trial(&slot).await.unwrap();
    let state = UpdateState {
        floor: 0,
        version_floor: None,
        slots: Default::default(),
        current: Some(UpdateRecord {
            release,
            step: Step::Installing,
            reason: None,
            from_slot: Some("a".into()),
            to_slot: Some(slot),
        }),
    };
    fsutil::write_json(&dev.dir.path().join("state").join(STATE_FILE), &state).unwrap();
    let dev = dev
        .reboot(health(&["/bin/true"], Duration::from_secs(10)))
        .await;
    assert!(dev.slots.boot_state().await.unwrap().trial);
    assert_eq!(dev.updater.resume().await.unwrap(), Some(Step::RolledBack));
    assert_eq!(dev.slots.active().await.unwrap(), "a");
    let reason = dev.reporter.steps().pop().unwrap().1.unwrap();
    assert!(reason.contains("interrupted by a restart"), "{reason}");
}

#[test]
fn the_higher_version_floor_is_kept() {
    for (stored, new, expect) in [
        (None, "1.0.0", "1.0.0"),
        (Some("2.0.0"), "1.9.9", "2.0.0"),
        (Some("2.0.0"), "2.0.1", "2.0.1"),
        (Some("garbage"), "1.0.0", "1.0.0"),
        (Some("1.0.0"), "garbage", "1.0.0"),
    ] {
        assert_eq!(
            super::higher_version(stored.map(String::from), new),
            expect,
            "{stored:?} {new}"
        );
    }
}

#[test]
fn step_reports_serialize_with_the_rollout_names() {
    let r = StepReport {
        device_id: "d1".into(),
        target: "t".into(),
        version: "1".into(),
        state: Step::RolledBack,
        reason: Some("x".into()),
        rollout: None,
        at: time::OffsetDateTime::UNIX_EPOCH,
    };
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains("\"state\":\"rolled_back\""), "{json}");
    assert!(json.contains("\"at\":\"1970-01-01T00:00:00Z\""), "{json}");
}
