//! Mapping a requested path to a file to serve: a second line against
//! traversal. Only the exact forms a TUF client fetches are recognized;
//! everything else is refused before any file system access.

use std::path::PathBuf;

use super::store::Sha256;
use super::Repository;
use crate::error::OtaError;
use crate::name::TargetName;

/// What a valid request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoPath {
    Root(u64),
    Timestamp,
    Snapshot(u64),
    Targets(u64),
    Target { sha256: Sha256, name: TargetName },
}

/// A metadata version in a file name: decimal, no sign, no leading zero,
/// not zero, fits in u64.
fn version(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

impl RepoPath {
    /// Parses a path relative to the repository root (no leading `/`).
    pub fn parse(rel: &str) -> Option<RepoPath> {
        if rel == "timestamp.json" {
            return Some(RepoPath::Timestamp);
        }
        if let Some(file) = rel.strip_prefix("targets/") {
            let (hex, name) = file.split_at_checked(64)?;
            let name = name.strip_prefix('.')?;
            return Some(RepoPath::Target {
                sha256: Sha256::from_hex(hex)?,
                name: TargetName::new(name).ok()?,
            });
        }
        let (v, kind) = rel.split_once('.')?;
        let v = version(v)?;
        match kind {
            "root.json" => Some(RepoPath::Root(v)),
            "snapshot.json" => Some(RepoPath::Snapshot(v)),
            "targets.json" => Some(RepoPath::Targets(v)),
            _ => None,
        }
    }

    /// The canonical relative path (equal to the parsed input).
    pub fn relative(&self) -> String {
        match self {
            RepoPath::Root(v) => format!("{v}.root.json"),
            RepoPath::Timestamp => "timestamp.json".into(),
            RepoPath::Snapshot(v) => format!("{v}.snapshot.json"),
            RepoPath::Targets(v) => format!("{v}.targets.json"),
            RepoPath::Target { sha256, name } => format!("targets/{sha256}.{name}"),
        }
    }
}

impl Repository {
    /// The file to serve for a request path relative to the repository
    /// root, or `NotFound`: anything that is not one of the client's file
    /// forms, or a file that does not exist (or is not a regular file).
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, OtaError> {
        let not_found = || OtaError::NotFound {
            what: format!("{:?}", rel.chars().take(200).collect::<String>()),
        };
        let parsed = RepoPath::parse(rel).ok_or_else(not_found)?;
        let path = self.served().join(parsed.relative());
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => Ok(path),
            _ => Err(not_found()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_client_file_forms_parse() {
        let sha = "ab".repeat(32);
        let good = [
            "timestamp.json".to_owned(),
            "1.root.json".to_owned(),
            "18446744073709551615.root.json".to_owned(),
            "42.snapshot.json".to_owned(),
            "7.targets.json".to_owned(),
            format!("targets/{sha}.fw.bin"),
        ];
        for p in &good {
            let parsed = RepoPath::parse(p).unwrap_or_else(|| panic!("{p}"));
            assert_eq!(&parsed.relative(), p);
        }
        let bad = [
            "".to_owned(),
            "/timestamp.json".to_owned(),
            "./timestamp.json".to_owned(),
            "timestamp.json/".to_owned(),
            "root.json".to_owned(),
            "snapshot.json".to_owned(),
            "0.root.json".to_owned(),
            "01.root.json".to_owned(),
            "-1.root.json".to_owned(),
            "+1.root.json".to_owned(),
            "18446744073709551616.root.json".to_owned(),
            "1.root.json.bak".to_owned(),
            "1.ROOT.json".to_owned(),
            "1.keys.json".to_owned(),
            "../1.root.json".to_owned(),
            "..%2f1.root.json".to_owned(),
            "%2e%2e/artifacts/x".to_owned(),
            "artifacts/x".to_owned(),
            "tmp/x".to_owned(),
            "targets/".to_owned(),
            "targets/fw.bin".to_owned(),
            format!("targets/{sha}"),
            format!("targets/{sha}."),
            format!("targets/{sha}fw.bin"),
            format!("targets/{}.fw.bin", "AB".repeat(32)),
            format!("targets/{}.fw.bin", "ab".repeat(31)),
            format!("targets/{sha}.../../etc/passwd"),
            format!("targets/{sha}.fw/../../x"),
            format!("targets/{sha}.fw.bin\0"),
            format!("targets/{sha}.%2e%2e"),
            format!("targets//{sha}.fw.bin"),
            format!("targets\\{sha}.fw.bin"),
            format!("targets/{sha}.{}", "a".repeat(200)),
            "1.root.json\0".to_owned(),
        ];
        for p in &bad {
            assert_eq!(RepoPath::parse(p), None, "{p:?}");
        }
    }
}
