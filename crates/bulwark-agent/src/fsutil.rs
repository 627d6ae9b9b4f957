//! Small file-system helpers shared by the modules that keep state:
//! atomic replacement (temp file + fsync + rename + directory fsync),
//! exclusive creation of secret files with their final mode, and the
//! permission check applied to every file that holds a secret.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::AgentError;

/// Creates `dir` (and its parents) with mode 0700 if it does not exist.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), AgentError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| AgentError::io("cannot create directory", dir, e))
}

/// `path` with `suffix` appended to its file name (`device.key` → `device.key.next`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Flushes the directory entry changes (creations, renames) of `dir`.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), AgentError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AgentError::io("cannot sync directory", dir, e))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Replaces `path` with `data` atomically: readers see the old or the new
/// content, never a mix, even across a crash. The file gets `mode` from its
/// creation on (the temporary file is created with `O_EXCL`).
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), AgentError> {
    let tmp = with_suffix(path, ".tmp");
    // A temporary file left by a crash is ours and stale.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(AgentError::io("cannot remove stale", &tmp, e)),
    }
    write_new(&tmp, data, mode)?;
    std::fs::rename(&tmp, path).map_err(|e| AgentError::io("cannot replace", path, e))?;
    sync_dir(parent(path))
}

/// Creates `path` (which must not exist) with `mode` set at creation and
/// writes and fsyncs `data`. On failure the partial file is removed.
pub(crate) fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), AgentError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| AgentError::io("cannot create", path, e))?;
    let written = f.write_all(data).and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(path);
        return Err(AgentError::io("cannot write", path, e));
    }
    Ok(())
}

/// Renames `from` to `to` and syncs the directory.
pub(crate) fn rename_durable(from: &Path, to: &Path) -> Result<(), AgentError> {
    std::fs::rename(from, to).map_err(|e| AgentError::io("cannot rename", from, e))?;
    sync_dir(parent(to))
}

/// Refuses a secret file that group or others may read or write.
pub(crate) fn check_private(path: &Path, what: &'static str) -> Result<(), AgentError> {
    let meta = std::fs::metadata(path).map_err(|e| AgentError::io("cannot inspect", path, e))?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(AgentError::InsecurePermissions {
            what,
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Reads a secret file after checking its permissions.
pub(crate) fn read_private(path: &Path, what: &'static str) -> Result<Vec<u8>, AgentError> {
    check_private(path, what)?;
    std::fs::read(path).map_err(|e| AgentError::io("cannot read", path, e))
}

/// Reads a JSON state file; `None` if it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, AgentError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| AgentError::State {
                path: path.to_owned(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AgentError::io("cannot read", path, e)),
    }
}

/// Writes a JSON state file atomically with mode 0600.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), AgentError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| AgentError::State {
        path: path.to_owned(),
        source,
    })?;
    write_atomic(path, &bytes, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert!(!with_suffix(&p, ".tmp").exists());
    }

    #[test]
    fn write_new_refuses_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_new(&p, b"a", 0o600).unwrap();
        assert!(write_new(&p, b"b", 0o600).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"a");
    }

    #[test]
    fn group_readable_secret_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        write_new(&p, b"1234", 0o600).unwrap();
        assert_eq!(read_private(&p, "PIN").unwrap(), b"1234");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_private(&p, "PIN").unwrap_err();
        assert!(matches!(
            err,
            AgentError::InsecurePermissions { mode: 0o640, .. }
        ));
        assert!(err.to_string().contains("mode 640"), "{err}");
    }
}
