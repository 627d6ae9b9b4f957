//! Small file system helpers: private directories and crash-safe writes.
//!
//! Every file this crate writes goes through [`write_atomic`]: the bytes
//! land in a temporary file in the same directory, are fsynced, renamed over
//! the target and the directory is fsynced, so a crash leaves either the old
//! file or the new one, never a torn mix.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::CaError;

/// Mode for directories holding secrets.
pub(crate) const PRIVATE_DIR: u32 = 0o700;
/// Mode for files holding secrets (sealed or not).
pub(crate) const PRIVATE_FILE: u32 = 0o600;
/// Mode for public files such as certificates.
pub(crate) const PUBLIC_FILE: u32 = 0o644;

/// Creates `dir` (not its parents) with `mode`; fails if it exists.
pub(crate) fn create_dir(dir: &Path, mode: u32) -> Result<(), CaError> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(dir)
        .map_err(|e| CaError::io("create directory", dir, e))?;
    // The umask may have masked bits off; set exactly what was asked for.
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .map_err(|e| CaError::io("set permissions on", dir, e))
}

/// Writes `bytes` to `path` atomically with permissions `mode`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = temp_name(path)?;
    let result = write_new(&tmp, bytes, mode).and_then(|()| {
        fs::rename(&tmp, path).map_err(|e| CaError::io("rename into place", path, e))
    });
    if result.is_err() {
        // Best effort: the temp file is useless now; the original error matters.
        let _ = fs::remove_file(&tmp);
        return result;
    }
    sync_dir(dir)
}

/// Reads a whole file, mapping errors to [`CaError::Io`].
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, CaError> {
    fs::read(path).map_err(|e| CaError::io("read", path, e))
}

/// Fsyncs a directory so renames and creations inside it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), CaError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CaError::io("sync directory", dir, e))
}

fn write_new(tmp: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .map_err(|e| CaError::io("create", tmp, e))?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| CaError::io("set permissions on", tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| CaError::io("write", tmp, e))?;
    f.sync_all().map_err(|e| CaError::io("sync", tmp, e))
}

fn temp_name(path: &Path) -> Result<PathBuf, CaError> {
    let mut suffix = [0u8; 8];
    aws_lc_rs::rand::fill(&mut suffix).map_err(|_| CaError::Crypto {
        detail: "random number generation",
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(path.with_file_name(format!(".{name}.{}.tmp", hex::encode(suffix))))
}
