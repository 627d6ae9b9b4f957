//! JSON lines: each notice is one line appended to a file (opened with
//! `O_APPEND`, created `0640`), or written to standard output for
//! `path = "-"`.
//!
//! Fsync policy: with `fsync = "always"` (the default) each line is
//! followed by `fdatasync`, and a notice counts as delivered only after
//! it; `"never"` leaves flushing to the kernel. Log rotation: before each
//! line the path is compared with the open file (device and inode); when
//! it was renamed or removed, the file is opened again, so `logrotate`
//! works with or without `copytruncate`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::{Failure, Payload};
use crate::config::{FsyncPolicy, JsonlConfig};
use crate::SinkError;

pub(crate) struct Jsonl {
    /// `None` for standard output.
    path: Option<PathBuf>,
    fsync: FsyncPolicy,
    file: Option<OpenFile>,
}

struct OpenFile {
    file: File,
    id: (u64, u64),
}

impl Jsonl {
    pub fn build(c: &JsonlConfig, name: &str) -> Result<Jsonl, SinkError> {
        let path = if c.path.as_os_str() == "-" {
            None
        } else {
            if c.path.as_os_str().is_empty() {
                return Err(SinkError::config(name, "path must not be empty"));
            }
            let dir = c.path.parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(dir) = dir {
                if !dir.is_dir() {
                    return Err(SinkError::config(
                        name,
                        format!("{} is not a directory", dir.display()),
                    ));
                }
            }
            Some(c.path.clone())
        };
        Ok(Jsonl {
            path,
            fsync: c.fsync,
            file: None,
        })
    }

    pub async fn attempt(&mut self, p: &Payload) -> Result<(), Failure> {
        let Some(path) = self.path.clone() else {
            let mut out = tokio::io::stdout();
            let written = async {
                out.write_all(&p.bytes).await?;
                out.flush().await
            };
            return written
                .await
                .map_err(|e| Failure::retry(SinkError::io("write to standard output", e)));
        };
        let open = self.file.take();
        let line = p.bytes.clone();
        let fsync = self.fsync;
        let (open, result) = tokio::task::spawn_blocking(move || append(open, &path, &line, fsync))
            .await
            .map_err(|e| {
                Failure::retry(SinkError::io(
                    "the file writer task failed",
                    std::io::Error::other(e.to_string()),
                ))
            })?;
        self.file = open;
        result.map_err(Failure::retry)
    }
}

fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

/// Appends `line`, reopening the file when the path no longer names it.
/// Returns the file to keep (none after an error, so the next attempt
/// reopens).
fn append(
    open: Option<OpenFile>,
    path: &Path,
    line: &[u8],
    fsync: FsyncPolicy,
) -> (Option<OpenFile>, Result<(), SinkError>) {
    let current = std::fs::metadata(path).ok().map(|m| file_id(&m));
    let open = match open {
        Some(f) if Some(f.id) == current => f,
        _ => {
            let opened = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .open(path)
                .and_then(|file| {
                    let id = file_id(&file.metadata()?);
                    Ok(OpenFile { file, id })
                });
            match opened {
                Ok(f) => f,
                Err(e) => {
                    return (
                        None,
                        Err(SinkError::io(format!("cannot open {}", path.display()), e)),
                    )
                }
            }
        }
    };
    let mut open = open;
    let written = open.file.write_all(line).and_then(|()| match fsync {
        FsyncPolicy::Always => open.file.sync_data(),
        FsyncPolicy::Never => Ok(()),
    });
    match written {
        Ok(()) => (Some(open), Ok(())),
        Err(e) => (
            None,
            Err(SinkError::io(
                format!("cannot append to {}", path.display()),
                e,
            )),
        ),
    }
}
