//! Crash-safe file writes: temp file in the same directory, fsync, rename,
//! fsync of the directory. A reader sees the old file or the new one, never
//! a torn one, and after a crash the rename is either durable or absent.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use tempfile::NamedTempFile;

use crate::error::OtaError;

/// Whether an existing file may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replace {
    Allowed,
    Never,
}

/// Writes `bytes` to `dir/name` atomically (mode 0644).
pub(crate) fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    replace: Replace,
) -> Result<(), OtaError> {
    let path = dir.join(name);
    let mut tmp = NamedTempFile::new_in(dir).map_err(OtaError::io(dir))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(OtaError::io(tmp.path()))?;
    set_mode(tmp.as_file(), 0o644).map_err(OtaError::io(tmp.path()))?;
    let persisted = match replace {
        Replace::Allowed => tmp.persist(&path),
        Replace::Never => tmp.persist_noclobber(&path),
    };
    persisted.map_err(|e| OtaError::Io {
        path: path.clone(),
        source: e.error,
    })?;
    sync_dir(dir)
}

/// Makes the directory's entries durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), OtaError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(OtaError::io(dir))
}

pub(crate) fn set_mode(file: &File, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (file, mode);
        Ok(())
    }
}

/// Reads a file, `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, OtaError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(OtaError::Io {
            path: path.to_owned(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_never_keeps_the_first_file() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "1.root.json", b"one", Replace::Never).unwrap();
        assert!(write_atomic(dir.path(), "1.root.json", b"two", Replace::Never).is_err());
        assert_eq!(
            std::fs::read(dir.path().join("1.root.json")).unwrap(),
            b"one"
        );
        write_atomic(dir.path(), "timestamp.json", b"a", Replace::Allowed).unwrap();
        write_atomic(dir.path(), "timestamp.json", b"b", Replace::Allowed).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("timestamp.json")).unwrap(),
            b"b"
        );
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
