//! The rollout engine's side of update reports, without I/O: the body of
//! `POST /v1/ota/reports` ([`RolloutReport`]), what each answer means
//! ([`classify`]) and the bounded, ordered queue the delivery task drains
//! ([`ReportQueue`]), with its JSON lines form for the state directory.
//!
//! The queue keeps reports in the order they were made. When it is full,
//! the oldest *non-terminal* report is dropped (and counted); a terminal
//! report (`healthy`, `failed`, `rolled_back`) is never dropped: if every
//! queued report is terminal, a terminal one is still accepted (the queue
//! then exceeds its capacity by terminal reports only, at most one per
//! finished update) and a non-terminal one is dropped instead.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::update::{Step, StepReport};

/// Longest `reason` sent (longer ones are cut at a character boundary).
pub const MAX_REASON_BYTES: usize = 1024;

/// The body of `POST {api_url}/v1/ota/reports`; every field is sent
/// (`reason: null` when there is none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutReport {
    pub rollout: String,
    /// The TUF target name.
    pub release: String,
    pub step: Step,
    pub reason: Option<String>,
}

impl RolloutReport {
    /// The report the rollout engine gets for `report`: none when the
    /// instruction named no rollout, or for `queued` (the server's step).
    pub fn from_step(report: &StepReport) -> Option<RolloutReport> {
        let rollout = report.rollout.clone()?;
        if report.state == Step::Queued {
            return None;
        }
        let reason = report.reason.as_deref().map(|r| {
            let mut end = r.len().min(MAX_REASON_BYTES);
            while !r.is_char_boundary(end) {
                end -= 1;
            }
            r[..end].to_owned()
        });
        Some(RolloutReport {
            rollout,
            release: report.target.clone(),
            step: report.state,
            reason,
        })
    }
}

/// Why the server's answer ends a report's delivery without recording it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// 409: stale, replayed or out of order; it does not advance the device.
    NotAdvancing,
    /// 404: no such rollout, or the device is not in it.
    UnknownRollout,
    /// 401 / 403: the server does not accept this device's identity.
    Refused(u16),
    /// Any other answer that a retry cannot change (400, 413, 3xx ...).
    Rejected(u16),
}

/// What to do with a report after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// 2xx: durably recorded.
    Recorded,
    /// Do not send it again.
    Drop(DropReason),
    /// Send it again, after `after` (the server's `Retry-After`) or the
    /// next back-off delay.
    Retry { after: Option<Duration> },
}

/// The disposition of an answer with `status` and the `Retry-After`
/// header's value, if any (only delay-seconds is understood; an HTTP date
/// falls back to the back-off).
pub fn classify(status: u16, retry_after: Option<&str>) -> Disposition {
    match status {
        200..=299 => Disposition::Recorded,
        409 => Disposition::Drop(DropReason::NotAdvancing),
        404 => Disposition::Drop(DropReason::UnknownRollout),
        401 | 403 => Disposition::Drop(DropReason::Refused(status)),
        408 | 429 | 500..=599 => Disposition::Retry {
            after: retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        },
        _ => Disposition::Drop(DropReason::Rejected(status)),
    }
}

/// A queued report and its sequence number (unique while the agent runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub seq: u64,
    pub report: RolloutReport,
}

/// Reports waiting for the server, oldest first.
#[derive(Debug)]
pub struct ReportQueue {
    capacity: usize,
    next_seq: u64,
    items: VecDeque<Queued>,
    dropped: u64,
}

impl ReportQueue {
    /// An empty queue for `capacity` reports (at least 1).
    pub fn new(capacity: usize) -> ReportQueue {
        ReportQueue {
            capacity: capacity.max(1),
            next_seq: 0,
            items: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Appends `report`; returns the report dropped to make room, if one
    /// was (see the module documentation).
    pub fn push(&mut self, report: RolloutReport) -> Option<RolloutReport> {
        let mut dropped = None;
        if self.items.len() >= self.capacity {
            match self.items.iter().position(|q| !q.report.step.is_terminal()) {
                Some(i) => dropped = self.items.remove(i).map(|q| q.report),
                None if !report.step.is_terminal() => {
                    self.dropped += 1;
                    return Some(report);
                }
                None => {}
            }
        }
        if dropped.is_some() {
            self.dropped += 1;
        }
        self.items.push_back(Queued {
            seq: self.next_seq,
            report,
        });
        self.next_seq += 1;
        dropped
    }

    /// The oldest report.
    pub fn front(&self) -> Option<&Queued> {
        self.items.front()
    }

    /// Removes the report `seq` (if it is still queued).
    pub fn remove(&mut self, seq: u64) -> bool {
        match self.items.iter().position(|q| q.seq == seq) {
            Some(i) => self.items.remove(i).is_some(),
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Reports dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The queued reports, oldest first.
    pub fn reports(&self) -> impl Iterator<Item = &RolloutReport> {
        self.items.iter().map(|q| &q.report)
    }

    /// The queue as JSON lines (one report a line).
    pub fn to_json_lines(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for report in self.reports() {
            // A struct of strings and an enum always serializes.
            if let Ok(line) = serde_json::to_vec(report) {
                out.extend_from_slice(&line);
                out.push(b'\n');
            }
        }
        out
    }

    /// Appends the reports of a JSON lines file; returns how many lines
    /// were not reports (skipped).
    pub fn extend_from_json_lines(&mut self, data: &[u8]) -> usize {
        let mut skipped = 0;
        for line in data.split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<RolloutReport>(line) {
                Ok(report) => {
                    self.push(report);
                }
                Err(_) => skipped += 1,
            }
        }
        skipped
    }
}
