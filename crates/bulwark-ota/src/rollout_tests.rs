//! Tests of the rollout state machine.

use std::time::Duration;

use time::macros::datetime;

use super::*;

fn spec() -> RolloutSpec {
    RolloutSpec {
        phases: vec![
            Phase {
                size: PhaseSize::Count(2),
                min_soak: Duration::from_secs(600),
            },
            Phase {
                size: PhaseSize::Percent(50),
                min_soak: Duration::ZERO,
            },
            Phase {
                size: PhaseSize::Percent(100),
                min_soak: Duration::ZERO,
            },
        ],
        min_healthy_percent: 90,
        abort: AbortPolicy {
            max_failure_percent: 20,
            min_failures: 2,
            action: AbortAction::Pause,
        },
        device_timeout: Duration::from_secs(3600),
        max_retries: 1,
    }
}

fn counts(total: u32, healthy: u32, failed: u32, flagged: u32) -> PhaseCounts {
    PhaseCounts {
        total,
        healthy,
        failed,
        flagged,
    }
}

const T0: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);

#[test]
fn reports_only_move_forward_and_never_out_of_a_terminal_step() {
    use DeviceStep::*;
    assert!(Notified.may_advance_to(Downloading));
    assert!(
        Notified.may_advance_to(Healthy),
        "a resumed device may skip steps"
    );
    assert!(Installing.may_advance_to(RolledBack));
    assert!(!Downloading.may_advance_to(Notified), "backwards");
    assert!(!Downloading.may_advance_to(Downloading), "repeated");
    assert!(!Notified.may_advance_to(Queued), "queued is the engine's");
    for terminal in [Healthy, Failed, RolledBack] {
        for next in DeviceStep::ALL {
            assert!(
                !terminal.may_advance_to(next),
                "{terminal} must be final, not → {next}"
            );
        }
    }
}

#[test]
fn steps_round_trip_through_their_names() {
    for step in DeviceStep::ALL {
        assert_eq!(step.as_str().parse::<DeviceStep>(), Ok(step));
    }
    assert!(matches!(
        "exploded".parse::<DeviceStep>(),
        Err(RolloutError::UnknownStep(_))
    ));
}

#[test]
fn invalid_plans_are_refused_with_the_reason() {
    let check = |edit: fn(&mut RolloutSpec), expect: RolloutError| {
        let mut s = spec();
        edit(&mut s);
        assert_eq!(s.validate(), Err(expect));
    };
    assert_eq!(spec().validate(), Ok(()));
    check(|s| s.phases.clear(), RolloutError::NoPhases);
    check(
        |s| s.phases[1].size = PhaseSize::Count(0),
        RolloutError::BadPhase {
            phase: 2,
            what: "a phase takes at least one device",
        },
    );
    check(
        |s| s.phases[0].size = PhaseSize::Percent(101),
        RolloutError::BadPhase {
            phase: 1,
            what: "a percentage must be 1..=100",
        },
    );
    check(
        |s| s.phases[0].min_soak = Duration::from_secs(31 * 24 * 3600),
        RolloutError::BadPhase {
            phase: 1,
            what: "a soak time is at most 30 days",
        },
    );
    check(
        |s| s.min_healthy_percent = 0,
        RolloutError::BadHealthyPercent,
    );
    check(
        |s| s.abort.max_failure_percent = 0,
        RolloutError::BadFailurePercent,
    );
    check(
        |s| s.device_timeout = Duration::from_secs(5),
        RolloutError::BadTimeout,
    );
    check(
        |s| s.max_retries = 11,
        RolloutError::TooManyRetries { max: 10 },
    );
    check(
        |s| {
            s.phases = vec![
                Phase {
                    size: PhaseSize::Count(1),
                    min_soak: Duration::ZERO
                };
                33
            ]
        },
        RolloutError::TooManyPhases { max: 32 },
    );
}

#[test]
fn phases_split_the_fleet_and_the_last_takes_the_rest() {
    let s = spec();
    assert_eq!(s.phase_sizes(10), vec![2, 5, 3]);
    assert_eq!(s.phase_sizes(1000), vec![2, 500, 498]);
    assert_eq!(
        s.phase_sizes(3),
        vec![2, 1, 0],
        "rounded up, never more than left"
    );
    assert_eq!(s.phase_sizes(1), vec![1, 0, 0]);
    assert_eq!(s.phase_sizes(0), vec![0, 0, 0]);
    for n in 0..200 {
        assert_eq!(
            s.phase_sizes(n).iter().sum::<usize>(),
            n,
            "every device once"
        );
    }
}

#[test]
fn a_failed_device_is_retried_until_its_retries_are_spent() {
    let s = spec();
    assert_eq!(s.on_failure(1), FailureOutcome::Retry { attempt: 2 });
    assert_eq!(s.on_failure(2), FailureOutcome::Final);
    let none = RolloutSpec {
        max_retries: 0,
        ..spec()
    };
    assert_eq!(none.on_failure(1), FailureOutcome::Final);
}

#[test]
fn a_silent_device_times_out_only_while_unfinished() {
    let s = spec();
    let late = T0 + Duration::from_secs(3600);
    assert!(s.timed_out(DeviceStep::Downloading, T0, late));
    assert!(!s.timed_out(DeviceStep::Downloading, T0, late - Duration::from_secs(1)));
    assert!(!s.timed_out(DeviceStep::Healthy, T0, late), "finished");
    assert!(!s.timed_out(DeviceStep::Queued, T0, late), "never notified");
}

#[test]
fn a_phase_waits_for_its_devices_then_soaks_then_advances() {
    let s = spec();
    assert_eq!(s.evaluate(&[], None, T0), Verdict::Advance { to: 0 });
    assert_eq!(s.evaluate(&[counts(2, 1, 0, 0)], None, T0), Verdict::Wait);
    assert_eq!(
        s.evaluate(&[counts(2, 2, 0, 0)], None, T0),
        Verdict::SoakStarted
    );
    let soaking = Some(T0);
    assert_eq!(
        s.evaluate(
            &[counts(2, 2, 0, 0)],
            soaking,
            T0 + Duration::from_secs(599)
        ),
        Verdict::Wait
    );
    assert_eq!(
        s.evaluate(
            &[counts(2, 2, 0, 0)],
            soaking,
            T0 + Duration::from_secs(600)
        ),
        Verdict::Advance { to: 1 }
    );
    // No soak on phase 2: straight on; the last phase completes.
    let two = [counts(2, 2, 0, 0), counts(5, 5, 0, 0)];
    assert_eq!(s.evaluate(&two, None, T0), Verdict::Advance { to: 2 });
    let three = [counts(2, 2, 0, 0), counts(5, 5, 0, 0), counts(3, 3, 0, 0)];
    assert_eq!(s.evaluate(&three, None, T0), Verdict::Complete);
}

#[test]
fn failures_at_the_threshold_abort_and_below_it_do_not() {
    let s = spec();
    // One failure never aborts (min_failures = 2), even at 100 %.
    assert_eq!(s.evaluate(&[counts(10, 0, 1, 0)], None, T0), Verdict::Wait);
    // 2 of 10 finished = 20 %: abort.
    let v = s.evaluate(&[counts(10, 8, 2, 0)], None, T0);
    let Verdict::Abort { action, reason } = v else {
        panic!("expected an abort, got {v:?}");
    };
    assert_eq!(action, AbortAction::Pause);
    assert!(reason.contains("2 of 10"), "{reason}");
    // 2 of 11 finished ≈ 18 %: go on (and 9 of 10 healthy meets 90 %).
    let phases = [counts(1, 1, 0, 0), counts(10, 9, 1, 0)];
    assert!(!matches!(
        s.evaluate(&phases, None, T0),
        Verdict::Abort { .. }
    ));
}

#[test]
fn security_signals_count_against_the_rollout_like_failures() {
    let s = spec();
    let v = s.evaluate(&[counts(10, 8, 0, 2)], None, T0);
    assert!(matches!(v, Verdict::Abort { .. }), "{v:?}");
    // And a flagged device is not healthy for the success criterion.
    let lenient = RolloutSpec {
        abort: AbortPolicy {
            max_failure_percent: 100,
            min_failures: 100,
            action: AbortAction::Cancel,
        },
        ..spec()
    };
    let v = lenient.evaluate(&[counts(10, 8, 0, 2)], None, T0);
    let Verdict::Abort { action, reason } = v else {
        panic!("expected an abort, got {v:?}");
    };
    assert_eq!(action, AbortAction::Cancel);
    assert!(reason.contains("8 of 10 devices healthy"), "{reason}");
}

#[test]
fn failures_of_earlier_phases_still_count() {
    let s = spec();
    let phases = [counts(2, 0, 2, 0), counts(5, 0, 0, 0)];
    assert!(matches!(
        s.evaluate(&phases, None, T0),
        Verdict::Abort { .. }
    ));
}

#[test]
fn empty_trailing_phases_do_not_block_completion() {
    let s = spec();
    let phases = [counts(1, 1, 0, 0), counts(0, 0, 0, 0)];
    assert_eq!(s.evaluate(&phases, None, T0), Verdict::Advance { to: 2 });
    let phases = [counts(1, 1, 0, 0), counts(0, 0, 0, 0), counts(0, 0, 0, 0)];
    assert_eq!(s.evaluate(&phases, None, T0), Verdict::Complete);
}

#[test]
fn resuming_accepts_the_failures_so_far_but_not_new_ones() {
    let s = spec();
    // Paused at 2 of 10 failed (20 %).
    let at_pause = [counts(10, 8, 2, 0), counts(10, 0, 0, 0)];
    assert!(matches!(
        s.evaluate(&at_pause[..1], None, T0),
        Verdict::Abort { .. }
    ));
    let accepted = Accepted {
        failures: 2,
        finished: 10,
        phase: Some(0),
    };
    // The same counts no longer abort, and the phase that missed its
    // success criterion (8 of 10 < 90 %) is let through to its soak.
    assert_eq!(
        s.evaluate_accepting(&at_pause[..1], None, accepted, T0),
        Verdict::SoakStarted
    );
    // One new failure is below min_failures: wait for the rest.
    let later = [counts(10, 8, 2, 0), counts(10, 3, 1, 0)];
    assert_eq!(
        s.evaluate_accepting(&later, None, accepted, T0),
        Verdict::Wait
    );
    // Two new failures out of 4 finished since the resume abort again.
    let later = [counts(10, 8, 2, 0), counts(10, 2, 2, 0)];
    let v = s.evaluate_accepting(&later, None, accepted, T0);
    let Verdict::Abort { reason, .. } = v else {
        panic!("expected an abort, got {v:?}");
    };
    assert!(reason.contains("2 of 4"), "{reason}");
    // A later phase is still held to the success criterion.
    let later = [counts(10, 8, 2, 0), counts(1, 0, 1, 0)];
    let lenient = RolloutSpec {
        abort: AbortPolicy {
            max_failure_percent: 100,
            min_failures: 100,
            action: AbortAction::Pause,
        },
        ..spec()
    };
    assert!(matches!(
        lenient.evaluate_accepting(&later, None, accepted, T0),
        Verdict::Abort { .. }
    ));
}
