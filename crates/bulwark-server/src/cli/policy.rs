//! `bulwark policy ...`: stored MQTT policies, their attachments, and the
//! gateway's decision for a device or service.
//!
//! A policy document is JSON (or TOML with the same keys, chosen by the
//! `.toml` extension):
//!
//! ```json
//! {"version": 1, "name": "sensors-rw",
//!  "statements": [{"effect": "allow", "actions": ["publish"],
//!                  "resources": ["sites/${device.group}/${device.id}/#"]}]}
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use bulwark_api_types::{
    EffectivePolicy, MqttAction, PolicyDecision, PolicyDetail, PolicyRef, PolicySubject,
    PolicySummary, PolicyTarget, PolicyTest, PolicyTestResult,
};
use bulwark_types::{DeviceId, GroupId, PolicyName, ServiceName};

use super::output::{emit, emit_json, key_values, opt_ts, Table};
use super::Ctx;

/// Exit status of `policy test` when the action is denied.
const DENIED: u8 = 2;

/// MQTT policies: create (new versions), list, show, delete, attach,
/// detach, test.
#[derive(clap::Args, Debug)]
pub struct PolicyCmd {
    #[command(subcommand)]
    cmd: PolicySub,
}

/// Exactly one group or service.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
struct TargetArgs {
    /// A device group: its devices get the policy on top of default-device.
    #[arg(long, value_name = "GROUP")]
    group: Option<GroupId>,
    /// A service principal.
    #[arg(long, value_name = "SERVICE")]
    service: Option<ServiceName>,
}

impl TargetArgs {
    fn target(self) -> anyhow::Result<PolicyTarget> {
        match (self.group, self.service) {
            (Some(g), None) => Ok(PolicyTarget::Group(g)),
            (None, Some(s)) => Ok(PolicyTarget::Service(s)),
            _ => anyhow::bail!("give exactly one of --group and --service"),
        }
    }
}

/// Exactly one device or service.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
struct SubjectArgs {
    /// The device whose policy decides.
    #[arg(long, value_name = "DEVICE")]
    device: Option<DeviceId>,
    /// The service principal whose policy decides.
    #[arg(long, value_name = "SERVICE")]
    service: Option<ServiceName>,
}

#[derive(clap::Subcommand, Debug)]
enum PolicySub {
    /// Store a policy document: a new policy, or a new version of the policy
    /// with the document's name (versions are kept; the newest applies).
    ///
    /// The file is JSON, or TOML with the same keys when it ends in .toml.
    /// Storing a document equal to the current version changes nothing.
    /// Devices and services already connected get the new version at once.
    ///
    /// Example: bulwark policy create --file sensors-rw.json
    Create {
        /// The policy document (.json or .toml).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// List policies: built-in ones (read-only) and stored ones, with their
    /// current version and attachments.
    ///
    /// Example: bulwark policy list
    #[command(alias = "ls")]
    List,
    /// Show a policy's document (the current version, or --version N) and
    /// its versions.
    ///
    /// Example: bulwark policy show sensors-rw --version 1
    #[command(disable_version_flag = true)]
    Show {
        name: PolicyName,
        /// Show this version instead of the current one.
        #[arg(long, value_name = "N")]
        version: Option<u32>,
    },
    /// Delete a policy. Refused while it is attached to a group or service.
    ///
    /// Example: bulwark policy delete sensors-rw
    Delete { name: PolicyName },
    /// Attach a policy to a device group or a service principal.
    ///
    /// Example: bulwark policy attach sensors-rw --group floor-3
    Attach {
        name: PolicyName,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Detach a policy from a device group or a service principal.
    ///
    /// Example: bulwark policy detach sensors-rw --service billing
    Detach {
        name: PolicyName,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Ask what the gateway would decide, and why.
    ///
    /// Evaluates exactly what the MQTT gateway evaluates: the device's
    /// lifecycle state, then default-device plus the policies attached to
    /// its group (quarantine alone when quarantined), or a service's
    /// attached policies. Exits 0 when allowed, 2 when denied, 1 on error.
    ///
    /// Example: bulwark policy test --device door-17 --action publish --topic devices/door-17/state
    Test {
        #[command(flatten)]
        subject: SubjectArgs,
        /// connect, publish, subscribe or receive.
        #[arg(long, value_name = "ACTION", value_parser = parse_action)]
        action: MqttAction,
        /// Topic name (publish, receive), topic filter (subscribe) or client id (connect).
        #[arg(long, value_name = "TOPIC", allow_hyphen_values = true)]
        topic: String,
    },
    /// Show the documents that apply to a device or service, as compiled
    /// by the gateway, with resources that could not be substituted for it.
    ///
    /// Example: bulwark policy effective --device door-17
    Effective {
        #[command(flatten)]
        subject: SubjectArgs,
    },
}

pub(super) async fn run(cmd: PolicyCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match cmd.cmd {
        PolicySub::Create { file } => {
            let body = read_document(&file)?;
            let written = ctx.client.put_policy(body).await?;
            if ctx.json() {
                emit_json(&written)?;
            } else {
                let p = &written.policy.summary;
                let version = p.version.map(|v| v.to_string()).unwrap_or_default();
                emit(&if written.created {
                    format!("stored policy {} version {version}", p.name)
                } else {
                    format!(
                        "policy {} unchanged: the document equals version {version}",
                        p.name
                    )
                })?;
            }
        }
        PolicySub::List => {
            let policies = ctx.client.list_policies().await?;
            if ctx.json() {
                emit_json(&policies)?;
            } else {
                emit(&policy_table(&policies))?;
            }
        }
        PolicySub::Show { name, version } => {
            let p = ctx.client.get_policy(&name, version).await?;
            if ctx.json() {
                emit_json(&p)?;
            } else {
                emit(&show(&p)?)?;
            }
        }
        PolicySub::Delete { name } => {
            ctx.client.delete_policy(&name).await?;
            if ctx.json() {
                emit_json(&serde_json::json!({ "deleted": name }))?;
            } else {
                emit(&format!("deleted policy {name}"))?;
            }
        }
        PolicySub::Attach { name, target } => {
            let target = target.target()?;
            let p = ctx.client.attach_policy(&name, &target).await?;
            attached(ctx, &p, &format!("attached policy {name} to {target}"))?;
        }
        PolicySub::Detach { name, target } => {
            let target = target.target()?;
            let p = ctx.client.detach_policy(&name, &target).await?;
            attached(ctx, &p, &format!("detached policy {name} from {target}"))?;
        }
        PolicySub::Test {
            subject,
            action,
            topic,
        } => {
            let req = PolicyTest {
                device: subject.device,
                service: subject.service,
                action,
                topic,
            };
            let result = ctx.client.test_policy(&req).await?;
            if ctx.json() {
                emit_json(&result)?;
            } else {
                emit(&test_text(&result))?;
            }
            if result.decision == PolicyDecision::Deny {
                return Ok(ExitCode::from(DENIED));
            }
        }
        PolicySub::Effective { subject } => {
            let e = match (subject.device, subject.service) {
                (Some(d), None) => ctx.client.device_effective_policy(&d).await?,
                (None, Some(s)) => ctx.client.service_effective_policy(&s).await?,
                _ => anyhow::bail!("give exactly one of --device and --service"),
            };
            if ctx.json() {
                emit_json(&e)?;
            } else {
                emit(&effective_text(&e)?)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The document as JSON bytes: a `.toml` file is converted, anything else
/// is sent as it is (so the server's refusal quotes the file's lines).
fn read_document(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read policy {}", path.display()))?;
    let is_toml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    if !is_toml {
        return Ok(bytes);
    }
    toml_to_json(&bytes).with_context(|| format!("{} is not valid TOML", path.display()))
}

fn toml_to_json(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let text = std::str::from_utf8(bytes).context("it is not UTF-8")?;
    let value: toml::Value = toml::from_str(text)?;
    Ok(serde_json::to_vec(&value)?)
}

fn parse_action(s: &str) -> Result<MqttAction, String> {
    MqttAction::parse(&s.trim().to_ascii_lowercase())
        .ok_or_else(|| format!("unknown action {s:?}; one of connect, publish, subscribe, receive"))
}

fn version_text(version: Option<u32>) -> String {
    version.map_or_else(|| "built in".to_owned(), |v| format!("v{v}"))
}

fn targets(list: &[PolicyTarget]) -> String {
    if list.is_empty() {
        return "-".to_owned();
    }
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn attached(ctx: &Ctx, p: &PolicySummary, line: &str) -> anyhow::Result<()> {
    if ctx.json() {
        emit_json(p)
    } else {
        emit(&format!(
            "{line}\npolicy {} is attached to: {}",
            p.name,
            targets(&p.attachments)
        ))?;
        Ok(())
    }
}

fn policy_table(policies: &[PolicySummary]) -> String {
    let mut t = Table::new(&["NAME", "VERSION", "UPDATED", "ATTACHED TO"]);
    for p in policies {
        t.row(vec![
            p.name.to_string(),
            version_text(p.version),
            opt_ts(p.updated_at),
            if p.builtin {
                "(built in, read-only)".to_owned()
            } else {
                targets(&p.attachments)
            },
        ]);
    }
    t.render()
}

fn show(p: &PolicyDetail) -> anyhow::Result<String> {
    let s = &p.summary;
    let mut out = key_values(&[
        ("name", s.name.to_string()),
        ("built in", if s.builtin { "yes" } else { "no" }.to_owned()),
        ("current", version_text(s.version)),
        ("shown", version_text(p.document_version)),
        ("updated", opt_ts(s.updated_at)),
        ("attached to", targets(&s.attachments)),
    ]);
    if !p.versions.is_empty() {
        let mut t = Table::new(&["VERSION", "CREATED", "BY", "SHA256"]);
        for v in &p.versions {
            t.row(vec![
                v.version.to_string(),
                super::output::ts(v.created_at),
                v.created_by.clone(),
                v.sha256.clone(),
            ]);
        }
        out.push('\n');
        out.push_str(&t.render());
    }
    out.push('\n');
    out.push_str(&serde_json::to_string_pretty(&p.document)?);
    Ok(out)
}

fn policy_ref(p: &PolicyRef) -> String {
    format!("{} ({})", p.name, version_text(p.version))
}

fn test_text(r: &PolicyTestResult) -> String {
    let decision = match r.decision {
        PolicyDecision::Allow => "allow",
        PolicyDecision::Deny => "deny",
    };
    let mut out = format!("{decision}: {}\n", r.reason);
    if let Some(st) = &r.statement {
        out.push_str(&format!(
            "statement: {} #{}: {} {} on {}\n",
            policy_ref(&st.policy),
            st.index,
            st.effect,
            st.actions.join(", "),
            st.resources.join(", ")
        ));
    }
    let evaluated: Vec<String> = r.policies.iter().map(policy_ref).collect();
    out.push_str(&format!(
        "policies: {}",
        if evaluated.is_empty() {
            "none".to_owned()
        } else {
            evaluated.join(", ")
        }
    ));
    out
}

fn effective_text(e: &EffectivePolicy) -> anyhow::Result<String> {
    let (kind, name) = match &e.subject {
        PolicySubject::Device(d) => ("device", d.to_string()),
        PolicySubject::Service(s) => ("service", s.to_string()),
    };
    let mut pairs = vec![(kind, name)];
    if let Some(state) = e.state {
        pairs.push(("state", state.to_string()));
    }
    if let Some(group) = &e.group {
        pairs.push(("group", group.to_string()));
    }
    pairs.push((
        "may connect",
        if e.may_connect { "yes" } else { "no" }.to_owned(),
    ));
    pairs.push(("rules", e.rule_count.to_string()));
    let mut out = key_values(&pairs);
    for note in &e.notes {
        out.push_str(&format!(
            "note: {} statement {} resource {} ({}): {}\n",
            policy_ref(&note.policy),
            note.statement,
            note.resource,
            note.template,
            match note.kind.as_str() {
                "allow_dropped" => "allow dropped: a variable has no safe value here",
                "deny_widened" => "deny widened: a variable has no safe value here",
                other => other,
            }
        ));
    }
    for d in &e.documents {
        out.push_str(&format!(
            "\n# {}\n{}\n",
            policy_ref(&d.policy),
            serde_json::to_string_pretty(&d.document)?
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_documents_become_json() {
        let toml = br#"
version = 1
name = "sensors-rw"

[[statements]]
effect = "allow"
actions = ["publish"]
resources = ["sites/${device.group}/#"]
"#;
        let json: serde_json::Value = serde_json::from_slice(&toml_to_json(toml).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "version": 1, "name": "sensors-rw",
                "statements": [{"effect": "allow", "actions": ["publish"],
                                "resources": ["sites/${device.group}/#"]}]
            })
        );
        assert!(toml_to_json(b"version = ").is_err());
    }

    #[test]
    fn actions() {
        assert_eq!(parse_action("Publish"), Ok(MqttAction::Publish));
        assert!(parse_action("fly").unwrap_err().contains("subscribe"));
    }
}
