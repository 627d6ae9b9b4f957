//! Response playbooks: which alerts they match and the graduated steps
//! they schedule (`[[playbooks]]` in the server's configuration).
//!
//! A step runs `after_secs` after the alert opened if the alert is still
//! unresolved then, so later steps escalate only while a problem stands.
//! Reversible steps (throttle, restrict) may carry `release_after_secs`;
//! irreversible ones (revoke, decommission) wait for an operator's
//! approval unless the step says `approval = "auto"`.

use std::time::Duration;

use anyhow::{bail, Result};
use bulwark_store::NewAlertAction;
use bulwark_types::{ActionKind, ActionState, Severity};
use serde::Deserialize;
use time::OffsetDateTime;

/// One playbook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub name: String,
    /// Detector names it applies to; a trailing `*` matches a prefix
    /// (`rule:*`, `novelty:*`). Empty: every detector.
    #[serde(default)]
    pub detectors: Vec<String>,
    /// Alerts below this severity are left alone. Default `high`.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    pub steps: Vec<Step>,
}

/// Whether an irreversible step may run without an operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    /// Irreversible steps wait for approval; others run by themselves.
    #[default]
    Default,
    /// Every step waits for approval.
    Required,
    /// Runs without approval, even when irreversible (explicit opt-in).
    Auto,
}

/// One step of a playbook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub action: ActionKind,
    /// Seconds after the alert opened (default 0: at once).
    #[serde(default)]
    pub after_secs: u64,
    /// Undo a reversible step after this long.
    #[serde(default)]
    pub release_after_secs: Option<u64>,
    /// Throttle: messages per second and burst (default 1 and 5).
    #[serde(default)]
    pub rate_per_sec: Option<f64>,
    #[serde(default)]
    pub burst: Option<f64>,
    #[serde(default)]
    pub approval: Approval,
}

fn default_min_severity() -> Severity {
    Severity::High
}

/// Most playbooks, and steps in one.
const MAX_PLAYBOOKS: usize = 64;
const MAX_STEPS: usize = 16;

impl Playbook {
    pub fn matches(&self, detector: &str, severity: Severity) -> bool {
        severity >= self.min_severity
            && (self.detectors.is_empty()
                || self.detectors.iter().any(|d| match d.strip_suffix('*') {
                    Some(prefix) => detector.starts_with(prefix),
                    None => detector == d,
                }))
    }

    /// The actions to schedule on an alert opened at `opened`.
    pub fn plan(&self, opened: OffsetDateTime) -> Vec<NewAlertAction> {
        self.steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let wait = match s.approval {
                    Approval::Required => true,
                    Approval::Auto => false,
                    Approval::Default => s.action.irreversible(),
                };
                let mut params = serde_json::Map::new();
                if let Some(r) = s.release_after_secs {
                    params.insert("release_after_secs".into(), r.into());
                }
                if let Some(r) = s.rate_per_sec {
                    params.insert("rate_per_sec".into(), r.into());
                }
                if let Some(b) = s.burst {
                    params.insert("burst".into(), b.into());
                }
                NewAlertAction {
                    playbook: Some(self.name.clone()),
                    step: i as u32,
                    action: s.action,
                    state: if wait {
                        ActionState::AwaitingApproval
                    } else {
                        ActionState::Scheduled
                    },
                    due_at: Some(opened + Duration::from_secs(s.after_secs)),
                    params: params.into(),
                }
            })
            .collect()
    }
}

/// Checks the playbooks before the server starts.
pub fn validate(playbooks: &[Playbook]) -> Result<()> {
    if playbooks.len() > MAX_PLAYBOOKS {
        bail!("at most {MAX_PLAYBOOKS} playbooks");
    }
    let mut names = std::collections::HashSet::new();
    for p in playbooks {
        if p.name.is_empty() || p.name.len() > 64 {
            bail!("a playbook needs a name of 1 to 64 characters");
        }
        if !names.insert(p.name.as_str()) {
            bail!("playbook {:?} is defined twice", p.name);
        }
        if p.steps.is_empty() || p.steps.len() > MAX_STEPS {
            bail!("playbook {:?}: 1 to {MAX_STEPS} steps", p.name);
        }
        for (i, s) in p.steps.iter().enumerate() {
            let at = format!("playbook {:?} step {}", p.name, i + 1);
            if s.release_after_secs.is_some() && !s.action.reversible() {
                bail!("{at}: a {} cannot be released", s.action.as_str());
            }
            if s.release_after_secs == Some(0) {
                bail!("{at}: release_after_secs must be at least 1");
            }
            if (s.rate_per_sec.is_some() || s.burst.is_some()) && s.action != ActionKind::Throttle {
                bail!("{at}: rate_per_sec and burst apply to throttle only");
            }
            for v in [s.rate_per_sec, s.burst].into_iter().flatten() {
                if !(v.is_finite() && v > 0.0) {
                    bail!("{at}: rate_per_sec and burst must be positive");
                }
            }
            if s.after_secs > 30 * 24 * 3600 {
                bail!("{at}: after_secs at most 30 days");
            }
        }
    }
    Ok(())
}

/// The playbooks a server runs when its configuration names none: contain
/// what the built-in detectors are sure of, reversibly; irreversible steps
/// wait for an operator.
pub fn defaults() -> Vec<Playbook> {
    let step = |action, release_after_secs| Step {
        action,
        after_secs: 0,
        release_after_secs,
        rate_per_sec: None,
        burst: None,
        approval: Approval::Default,
    };
    vec![
        Playbook {
            name: "throttle-abuse".into(),
            detectors: vec![
                "rule:flood".into(),
                "rule:exfiltration".into(),
                "rule:connect-churn".into(),
            ],
            min_severity: Severity::High,
            steps: vec![Step {
                rate_per_sec: Some(1.0),
                burst: Some(5.0),
                ..step(ActionKind::Throttle, Some(900))
            }],
        },
        // A device probing topics outside its policy is refused each time
        // already; slowing it down stops the probing from costing the
        // gateway and buys the operator time.
        Playbook {
            name: "throttle-scanner".into(),
            detectors: vec!["rule:topic-scan".into()],
            min_severity: Severity::Medium,
            steps: vec![Step {
                rate_per_sec: Some(1.0),
                burst: Some(5.0),
                ..step(ActionKind::Throttle, Some(900))
            }],
        },
        // Credential stuffing comes from an address before any identity:
        // refuse its connections for a while.
        Playbook {
            name: "block-credential-stuffing".into(),
            detectors: vec!["rule:credential-stuffing".into()],
            min_severity: Severity::High,
            steps: vec![step(ActionKind::Block, Some(900))],
        },
        Playbook {
            name: "quarantine-compromise".into(),
            detectors: vec![
                "novelty:concurrent-source".into(),
                "rule:session-takeover".into(),
                "novelty:listening-port".into(),
                "rule:firmware-downgrade".into(),
            ],
            min_severity: Severity::High,
            steps: vec![
                step(ActionKind::Restrict, Some(3600)),
                step(ActionKind::Disconnect, None),
                step(ActionKind::Revoke, None),
            ],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(toml_text: &str) -> Playbook {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn matching_by_name_prefix_and_severity() {
        let p = book(
            "name = \"p\"\ndetectors = [\"rule:flood\", \"novelty:*\"]\n\
             [[steps]]\naction = \"notify\"\n",
        );
        assert!(p.matches("rule:flood", Severity::High));
        assert!(p.matches("novelty:listening-port", Severity::Critical));
        assert!(!p.matches("rule:flood", Severity::Medium), "below high");
        assert!(!p.matches("rule:flood-2", Severity::High));
        assert!(!p.matches("model:iforest", Severity::High));
    }

    #[test]
    fn irreversible_steps_wait_unless_auto_and_steps_are_timed() {
        let p = book(
            "name = \"p\"\n\
             [[steps]]\naction = \"throttle\"\nrate_per_sec = 2.0\nrelease_after_secs = 60\n\
             [[steps]]\naction = \"restrict\"\nafter_secs = 30\n\
             [[steps]]\naction = \"revoke\"\n\
             [[steps]]\naction = \"decommission\"\napproval = \"auto\"\n\
             [[steps]]\naction = \"disconnect\"\napproval = \"required\"\n",
        );
        validate(std::slice::from_ref(&p)).unwrap();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let plan = p.plan(t0);
        let states: Vec<ActionState> = plan.iter().map(|a| a.state).collect();
        assert_eq!(
            states,
            [
                ActionState::Scheduled,
                ActionState::Scheduled,
                ActionState::AwaitingApproval,
                ActionState::Scheduled,
                ActionState::AwaitingApproval,
            ]
        );
        assert_eq!(plan[1].due_at, Some(t0 + Duration::from_secs(30)));
        assert_eq!(plan[0].params["rate_per_sec"], 2.0);
        assert_eq!(plan[0].params["release_after_secs"], 60);
        assert_eq!(plan[2].step, 2);
    }

    #[test]
    fn bad_playbooks_are_refused() {
        let bad = [
            ("name = \"p\"\nsteps = []\n", "1 to 16 steps"),
            (
                "name = \"p\"\n[[steps]]\naction = \"revoke\"\nrelease_after_secs = 5\n",
                "cannot be released",
            ),
            (
                "name = \"p\"\n[[steps]]\naction = \"restrict\"\nrate_per_sec = 5.0\n",
                "throttle only",
            ),
            (
                "name = \"p\"\n[[steps]]\naction = \"throttle\"\nrate_per_sec = -1.0\n",
                "positive",
            ),
        ];
        for (text, want) in bad {
            let err = validate(&[book(text)]).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let p = book("name = \"p\"\n[[steps]]\naction = \"notify\"\n");
        assert!(validate(&[p.clone(), p])
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(
            toml::from_str::<Playbook>("name = \"p\"\n[[steps]]\naction = \"nuke\"\n").is_err()
        );
        validate(&defaults()).unwrap();
    }
}
