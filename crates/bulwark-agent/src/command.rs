//! Runs configured commands: no shell, arguments as an array, placeholders
//! (`{artifact}`, `{slot}`) replaced only when they are a whole argument, so
//! a value is always exactly one argument and never parsed by a shell.
//! Every run has a timeout, after which the process is killed.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use crate::AgentError;

/// Longest piece of stderr quoted in an error.
const MAX_QUOTED: usize = 300;

/// The outcome of a command that ran to completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// `argv` with every argument equal to a placeholder's name replaced by its value.
pub fn substitute(argv: &[String], subs: &[(&str, OsString)]) -> Vec<OsString> {
    argv.iter()
        .map(|arg| {
            subs.iter()
                .find(|(name, _)| arg == name)
                .map(|(_, value)| value.clone())
                .unwrap_or_else(|| OsString::from(arg))
        })
        .collect()
}

fn quote(text: &str) -> String {
    let text = text.trim();
    let mut end = text.len().min(MAX_QUOTED);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Runs `argv` (after substitution) with a timeout; a non-zero exit is not
/// an error here (see [`run_checked`]).
pub async fn run(
    argv: &[String],
    subs: &[(&str, OsString)],
    timeout: Duration,
) -> Result<Output, AgentError> {
    let args = substitute(argv, subs);
    let program = argv.first().cloned().unwrap_or_default();
    let Some((first, rest)) = args.split_first() else {
        return Err(AgentError::Command {
            program,
            reason: "is empty".to_owned(),
        });
    };
    let child = tokio::process::Command::new(first)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| AgentError::Command {
            program: program.clone(),
            reason: format!("cannot be started: {e}"),
        })?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Err(AgentError::Command {
            program,
            reason: format!("timed out after {} s and was killed", timeout.as_secs()),
        }),
        Ok(Err(e)) => Err(AgentError::Command {
            program,
            reason: format!("failed: {e}"),
        }),
        Ok(Ok(out)) => Ok(Output {
            success: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }),
    }
}

/// Like [`run`], but a non-zero exit is an error quoting stderr.
pub async fn run_checked(
    argv: &[String],
    subs: &[(&str, OsString)],
    timeout: Duration,
) -> Result<Output, AgentError> {
    let out = run(argv, subs, timeout).await?;
    if out.success {
        Ok(out)
    } else {
        Err(AgentError::Command {
            program: argv.first().cloned().unwrap_or_default(),
            reason: format!(
                "exited with {}: {}",
                out.code
                    .map_or_else(|| "a signal".to_owned(), |c| format!("status {c}")),
                quote(&out.stderr)
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn placeholders_are_single_arguments_never_shell_words() {
        let hostile = OsString::from("x; touch /tmp/pwned-by-bulwark-test $(id)");
        let out = run_checked(
            &argv(&[
                "/usr/bin/printf",
                "%s|",
                "{artifact}",
                "{slot}",
                "pre{slot}",
            ]),
            &[("{artifact}", hostile.clone()), ("{slot}", "b".into())],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(
            out.stdout,
            "x; touch /tmp/pwned-by-bulwark-test $(id)|b|pre{slot}|"
        );
        assert!(!std::path::Path::new("/tmp/pwned-by-bulwark-test").exists());
    }

    #[tokio::test]
    async fn failures_and_timeouts_are_errors() {
        let err = run_checked(
            &argv(&["/bin/sh", "-c", "echo broken >&2; exit 3"]),
            &[],
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "command \"/bin/sh\" exited with status 3: broken"
        );
        let started = std::time::Instant::now();
        let err = run(
            &argv(&["/bin/sleep", "30"]),
            &[],
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let err = run(&argv(&["/nonexistent/hook"]), &[], Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cannot be started"), "{err}");
    }
}
