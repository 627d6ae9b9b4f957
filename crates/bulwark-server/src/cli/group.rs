//! `bulwark group ...`: device groups.

use std::process::ExitCode;

use bulwark_api_types::CreateGroup;
use bulwark_types::{Group, GroupId};

use super::output::{emit, emit_json, key_values, ts, Table};
use super::Ctx;

/// Device groups: list and create.
#[derive(clap::Args, Debug)]
pub struct GroupCmd {
    #[command(subcommand)]
    cmd: GroupSub,
}

#[derive(clap::Subcommand, Debug)]
enum GroupSub {
    /// List groups with their device counts.
    ///
    /// Example: bulwark group ls --output json
    Ls,
    /// Create a group.
    ///
    /// Example: bulwark group create floor-3 --description "third floor sensors"
    Create {
        /// The group name: letters, digits, '.', '_' and '-'.
        name: GroupId,
        /// What the group is for.
        #[arg(long, value_name = "TEXT", default_value = "")]
        description: String,
    },
}

pub(super) async fn run(cmd: GroupCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match cmd.cmd {
        GroupSub::Ls => {
            let groups = ctx.client.list_groups().await?;
            if ctx.json() {
                emit_json(&groups)?;
            } else {
                emit(&group_table(&groups))?;
            }
        }
        GroupSub::Create { name, description } => {
            let group = ctx
                .client
                .create_group(&CreateGroup { name, description })
                .await?;
            if ctx.json() {
                emit_json(&group)?;
            } else {
                emit(&key_values(&[
                    ("name", group.name.to_string()),
                    ("description", group.description.clone()),
                    ("devices", group.device_count.to_string()),
                    ("created", ts(group.created_at)),
                ]))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn group_table(groups: &[Group]) -> String {
    let mut t = Table::new(&["NAME", "DEVICES", "CREATED", "DESCRIPTION"]);
    for g in groups {
        t.row(vec![
            g.name.to_string(),
            g.device_count.to_string(),
            ts(g.created_at),
            g.description.clone(),
        ]);
    }
    t.render()
}
