//! Tests of both slot implementations: the directory one directly, the
//! command one through a small hook script that keeps a U-Boot-like
//! environment in files.

use super::*;

fn artifact(dir: &Path, content: &[u8]) -> PathBuf {
    let p = dir.join("artifact.bin");
    std::fs::write(&p, content).unwrap();
    p
}

#[tokio::test]
async fn directory_slots_install_trial_confirm() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("slots");
    let slots = DirectorySlots::open(&root).unwrap();
    let st = slots.boot().await.unwrap();
    assert_eq!(
        st,
        BootState {
            booted: "a".into(),
            trial: false,
            last_known_good: "a".into()
        }
    );
    assert_eq!(slots.inactive().await.unwrap(), "b");

    let slot = slots
        .write_inactive(&artifact(dir.path(), b"v2"))
        .await
        .unwrap();
    assert_eq!(slot, "b");
    assert_eq!(
        std::fs::read(root.join("b").join(IMAGE_FILE)).unwrap(),
        b"v2"
    );
    slots.mark_trial(&slot).await.unwrap();
    assert!(slots.mark_trial("a").await.is_err(), "the running slot");

    // Reboot: a new process opens the same state and boots the trial.
    drop(slots);
    let slots = DirectorySlots::open(&root).unwrap();
    let st = slots.boot().await.unwrap();
    assert_eq!(
        st,
        BootState {
            booted: "b".into(),
            trial: true,
            last_known_good: "a".into()
        }
    );
    let err = slots
        .write_inactive(&artifact(dir.path(), b"v3"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("on trial"), "{err}");
    slots.confirm().await.unwrap();
    let st = slots.boot_state().await.unwrap();
    assert_eq!(
        st,
        BootState {
            booted: "b".into(),
            trial: false,
            last_known_good: "b".into()
        }
    );

    // Confirmed: it survives further reboots.
    drop(slots);
    let slots = DirectorySlots::open(&root).unwrap();
    assert_eq!(slots.boot().await.unwrap().booted, "b");
    assert_eq!(slots.inactive().await.unwrap(), "a");
}

#[tokio::test]
async fn directory_slots_roll_back_and_fall_back_when_attempts_run_out() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("slots");
    let slots = DirectorySlots::open(&root).unwrap();
    slots.boot().await.unwrap();
    let slot = slots
        .write_inactive(&artifact(dir.path(), b"v2"))
        .await
        .unwrap();
    slots.mark_trial(&slot).await.unwrap();
    assert!(slots.boot().await.unwrap().trial);
    assert_eq!(slots.rollback().await.unwrap(), "a");
    assert_eq!(slots.boot().await.unwrap().booted, "a");

    // A trial never confirmed (the agent died): the next boot falls back.
    slots.mark_trial(&slot).await.unwrap();
    assert_eq!(slots.boot().await.unwrap().booted, "b");
    let st = slots.boot().await.unwrap();
    assert_eq!(
        st,
        BootState {
            booted: "a".into(),
            trial: false,
            last_known_good: "a".into()
        }
    );
    assert_eq!(slots.state().await.pending_trial, None);
}

#[tokio::test]
async fn directory_slots_refuse_an_empty_slot_and_a_corrupt_state() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("slots");
    let slots = DirectorySlots::open(&root).unwrap();
    assert!(slots
        .mark_trial("b")
        .await
        .unwrap_err()
        .to_string()
        .contains("no image"));
    assert!(slots.mark_trial("c").await.is_err());
    std::fs::write(
        root.join("state.json"),
        br#"{"booted":"z","last_known_good":"a","pending_trial":null,"attempts":0}"#,
    )
    .unwrap();
    assert!(DirectorySlots::open(&root)
        .unwrap_err()
        .to_string()
        .contains("unknown slot"));
}

#[test]
fn status_output_is_parsed() {
    let names = ["a".to_owned(), "b".to_owned()];
    let st = parse_status(&names, "booted=b\ntrial=yes\n").unwrap();
    assert_eq!(st.last_known_good, "a");
    let st = parse_status(&names, "noise\nbooted=\"a\"\ntrial=0\ngood=a\n").unwrap();
    assert_eq!(
        st,
        BootState {
            booted: "a".into(),
            trial: false,
            last_known_good: "a".into()
        }
    );
    assert!(parse_status(&names, "trial=no\n").is_err());
    assert!(parse_status(&names, "booted=c\ntrial=no\n").is_err());
    assert!(parse_status(&names, "booted=a\ntrial=maybe\n").is_err());
}

/// A hook keeping `bootslot`, `upgrade_available` and `goodslot` in files,
/// like `fw_setenv`; `install` copies the artifact to `<env>/slot-<slot>`.
const HOOK: &str = r#"#!/bin/sh
set -eu
env="$(dirname "$0")/env"
mkdir -p "$env"
get() { cat "$env/$1" 2>/dev/null || echo "$2"; }
case "$1" in
status) echo "booted=$(get bootslot a)"
        [ "$(get upgrade_available 0)" = 1 ] && echo trial=yes || echo trial=no
        echo "good=$(get goodslot a)" ;;
install) cp "$2" "$env/slot-$3" ;;
trial) echo "$2" > "$env/next"; echo 1 > "$env/upgrade_available" ;;
boot) [ -e "$env/next" ] && mv "$env/next" "$env/bootslot" || true ;;
confirm) echo "$2" > "$env/goodslot"; echo 0 > "$env/upgrade_available" ;;
rollback) echo "$2" > "$env/bootslot"; echo 0 > "$env/upgrade_available" ;;
*) echo "unknown $1" >&2; exit 2 ;;
esac
"#;

fn hooks(dir: &Path) -> CommandHooks {
    use std::os::unix::fs::PermissionsExt as _;
    let hook = dir.join("hook.sh");
    std::fs::write(&hook, HOOK).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o700)).unwrap();
    let h = hook.to_str().unwrap().to_owned();
    let cmd = |args: &[&str]| {
        std::iter::once(h.clone())
            .chain(args.iter().map(|a| (*a).to_owned()))
            .collect::<Vec<_>>()
    };
    CommandHooks {
        status: cmd(&["status"]),
        install: cmd(&["install", "{artifact}", "{slot}"]),
        mark_trial: cmd(&["trial", "{slot}"]),
        confirm: cmd(&["confirm", "{slot}"]),
        rollback: cmd(&["rollback", "{slot}"]),
        reboot: Some(cmd(&["boot"])),
        slot_names: ["a".to_owned(), "b".to_owned()],
        timeout_secs: 10,
    }
}

#[tokio::test]
async fn command_slots_drive_the_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let slots = CommandSlots::new(hooks(dir.path()));
    assert_eq!(slots.active().await.unwrap(), "a");
    // An artifact path with spaces and shell syntax stays one argument.
    let weird = dir.path().join("my artifact; rm -rf $HOME");
    std::fs::write(&weird, b"v2").unwrap();
    let slot = slots.write_inactive(&weird).await.unwrap();
    assert_eq!(slot, "b");
    assert_eq!(std::fs::read(dir.path().join("env/slot-b")).unwrap(), b"v2");
    slots.mark_trial(&slot).await.unwrap();
    slots.reboot().await.unwrap();
    let st = slots.boot_state().await.unwrap();
    assert_eq!(
        st,
        BootState {
            booted: "b".into(),
            trial: true,
            last_known_good: "a".into()
        }
    );
    assert!(slots.write_inactive(&weird).await.is_err(), "on trial");
    assert_eq!(slots.rollback().await.unwrap(), "a");
    assert_eq!(slots.boot_state().await.unwrap().booted, "a");

    slots.mark_trial("b").await.unwrap();
    slots.reboot().await.unwrap();
    slots.confirm().await.unwrap();
    let st = slots.boot_state().await.unwrap();
    assert_eq!(
        st,
        BootState {
            booted: "b".into(),
            trial: false,
            last_known_good: "b".into()
        }
    );
}

#[tokio::test]
async fn a_failing_hook_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = hooks(dir.path());
    h.install = vec!["/bin/false".to_owned(), "{artifact}".to_owned()];
    let slots = CommandSlots::new(h);
    let err = slots
        .write_inactive(Path::new("/nonexistent"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("command \"/bin/false\" exited with status 1"),
        "{err}"
    );
}
