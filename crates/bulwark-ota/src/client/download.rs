//! Downloading a target with resume, then verifying it.
//!
//! The file is written to `<dir>/<sha256>.<name>.partial`; an interrupted
//! download keeps it and the next attempt asks for the rest
//! ([`RangeFetch::fetch_from`] with the partial length as offset). No more
//! bytes than the verified length are ever accepted (endless data). When
//! the length is reached the whole file is hashed (SHA-256, and SHA-512 if
//! the metadata lists one); on a mismatch the partial file is deleted, on a
//! match it is renamed to `<dir>/<sha256>.<name>` and returned as a
//! [`VerifiedArtifact`].

use std::path::{Path, PathBuf};
use std::pin::Pin;

use async_trait::async_trait;
use aws_lc_rs::digest::{Context, SHA256, SHA512};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use semver::Version;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use url::Url;

use super::UpdateCandidate;
use crate::custom::ReleaseInfo;
use crate::error::OtaError;
use crate::name::TargetName;
use crate::repo::Sha256;

/// A response body.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, OtaError>> + Send>>;

/// The answer to a range request: `start` is the offset of the body's
/// first byte (the requested offset, or 0 if the server sent everything).
pub struct RangeResponse {
    pub start: u64,
    pub body: ByteStream,
}

impl std::fmt::Debug for RangeResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeResponse")
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

/// Fetches a URL from a byte offset (HTTP `Range: bytes=N-`).
#[async_trait]
pub trait RangeFetch: Send + Sync {
    async fn fetch_from(&self, url: &Url, offset: u64) -> Result<RangeResponse, OtaError>;
}

/// [`RangeFetch`] over `file://` URLs (tests, simulator).
#[derive(Debug, Clone, Copy, Default)]
pub struct FsRangeFetch;

const CHUNK: usize = 64 * 1024;

#[async_trait]
impl RangeFetch for FsRangeFetch {
    async fn fetch_from(&self, url: &Url, offset: u64) -> Result<RangeResponse, OtaError> {
        let path = url.to_file_path().map_err(|()| OtaError::NotFound {
            what: url.to_string(),
        })?;
        let mut file = tokio::fs::File::open(&path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                OtaError::NotFound {
                    what: url.to_string(),
                }
            } else {
                OtaError::io(&path)(e)
            }
        })?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(OtaError::io(&path))?;
        let body = futures::stream::unfold(Some((file, path)), |state| async move {
            let (mut file, path) = state?;
            let mut buf = vec![0u8; CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), Some((file, path))))
                }
                Err(e) => Some((Err(OtaError::io(&path)(e)), None)),
            }
        });
        Ok(RangeResponse {
            start: offset,
            body: Box::pin(body),
        })
    }
}

/// A downloaded artifact whose length and hashes match the verified
/// targets metadata. Only [`super::UpdateClient::download`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedArtifact {
    path: PathBuf,
    name: TargetName,
    release: ReleaseInfo,
    length: u64,
    sha256: Sha256,
    sha512: Option<Vec<u8>>,
}

impl VerifiedArtifact {
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn name(&self) -> &TargetName {
        &self.name
    }
    pub fn version(&self) -> &Version {
        self.release.version()
    }
    /// The floor to persist (the device keeps the highest it installed).
    pub fn floor(&self) -> Option<&Version> {
        self.release.floor()
    }
    pub fn release(&self) -> &ReleaseInfo {
        &self.release
    }
    pub fn length(&self) -> u64 {
        self.length
    }
    pub fn sha256(&self) -> Sha256 {
        self.sha256
    }
    pub fn sha512(&self) -> Option<&[u8]> {
        self.sha512.as_deref()
    }
}

pub(crate) async fn download(
    c: &UpdateCandidate,
    fetch: &dyn RangeFetch,
    dir: &Path,
) -> Result<VerifiedArtifact, OtaError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(OtaError::io(dir))?;
    let file_name = format!("{}.{}", c.sha256, c.name);
    let partial = dir.join(format!("{file_name}.partial"));
    let final_path = dir.join(&file_name);
    let mut have = match tokio::fs::metadata(&partial).await {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(OtaError::io(&partial)(e)),
    };
    if have > c.length {
        remove(&partial).await?;
        have = 0;
    }
    if have < c.length {
        have = fetch_into(c, fetch, &partial, have).await?;
    }
    if have != c.length {
        return Err(OtaError::Incomplete {
            name: c.name.to_string(),
            have,
            want: c.length,
        });
    }
    if let Err(e) = verify_file(c, &partial).await {
        remove(&partial).await?;
        return Err(e);
    }
    tokio::fs::rename(&partial, &final_path)
        .await
        .map_err(OtaError::io(&final_path))?;
    let d = tokio::fs::File::open(dir)
        .await
        .map_err(OtaError::io(dir))?;
    d.sync_all().await.map_err(OtaError::io(dir))?;
    Ok(VerifiedArtifact {
        path: final_path,
        name: c.name.clone(),
        release: c.release.clone(),
        length: c.length,
        sha256: c.sha256,
        sha512: c.sha512.clone(),
    })
}

async fn remove(path: &Path) -> Result<(), OtaError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OtaError::io(path)(e)),
    }
}

/// Appends the rest of the target to `partial`; returns its new length.
async fn fetch_into(
    c: &UpdateCandidate,
    fetch: &dyn RangeFetch,
    partial: &Path,
    mut have: u64,
) -> Result<u64, OtaError> {
    let resp = fetch.fetch_from(&c.url, have).await?;
    let mut options = tokio::fs::OpenOptions::new();
    if resp.start == 0 {
        // Not resumed (or nothing to resume): start over.
        options.write(true).create(true).truncate(true);
        have = 0;
    } else if resp.start == have {
        options.append(true);
    } else {
        return Err(OtaError::Transport {
            url: c.url.to_string(),
            source: format!("resumed at byte {} instead of {have}", resp.start).into(),
        });
    }
    let mut file = options.open(partial).await.map_err(OtaError::io(partial))?;
    let mut body = resp.body;
    let mut result = Ok(());
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        if have + chunk.len() as u64 > c.length {
            drop(file);
            remove(partial).await?;
            return Err(OtaError::LengthExceeded {
                what: format!("target {}", c.name),
                max: c.length,
                source: None,
            });
        }
        if let Err(e) = file.write_all(&chunk).await {
            result = Err(OtaError::io(partial)(e));
            break;
        }
        have += chunk.len() as u64;
    }
    // Keep what arrived, durable, for the next attempt to resume from.
    file.flush().await.map_err(OtaError::io(partial))?;
    file.sync_all().await.map_err(OtaError::io(partial))?;
    result.map(|()| have)
}

async fn verify_file(c: &UpdateCandidate, path: &Path) -> Result<(), OtaError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(OtaError::io(path))?;
    let mut sha256 = Context::new(&SHA256);
    let mut sha512 = Context::new(&SHA512);
    let mut length: u64 = 0;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf).await.map_err(OtaError::io(path))?;
        if n == 0 {
            break;
        }
        length += n as u64;
        if length > c.length {
            return Err(OtaError::LengthExceeded {
                what: format!("target {}", c.name),
                max: c.length,
                source: None,
            });
        }
        sha256.update(&buf[..n]);
        if c.sha512.is_some() {
            sha512.update(&buf[..n]);
        }
    }
    let what = || format!("target {}", c.name);
    if length != c.length {
        return Err(OtaError::Incomplete {
            name: c.name.to_string(),
            have: length,
            want: c.length,
        });
    }
    if sha256.finish().as_ref() != c.sha256.0 {
        return Err(OtaError::HashMismatch {
            what: what(),
            source: None,
        });
    }
    if let Some(expected) = &c.sha512 {
        if sha512.finish().as_ref() != expected.as_slice() {
            return Err(OtaError::HashMismatch {
                what: what(),
                source: None,
            });
        }
    }
    Ok(())
}
