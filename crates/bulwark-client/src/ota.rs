//! OTA (`/v1/ota`): artifact upload (streamed from a file), releases, root
//! rotation, and files of the TUF repository.

use std::path::Path;

use bulwark_api_types::{
    ArtifactStored, CreateRelease, OtaRelease, OtaRoot, PreparedRelease, PreparedRoot,
    RootPublished, RotateRoot,
};
use reqwest::Method;
use tokio::io::AsyncReadExt;

use crate::{Client, ClientError};

const CHUNK: usize = 256 * 1024;

impl Client {
    /// `POST /v1/ota/artifacts`: streams the file (never whole in memory).
    pub async fn upload_artifact(&self, path: &Path) -> Result<ArtifactStored, ClientError> {
        let unreadable = |source| ClientError::ReadFile {
            path: path.to_owned(),
            source,
        };
        let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
        let length = file.metadata().await.map_err(unreadable)?.len();
        let stream = futures::stream::unfold(file, |mut f| async move {
            let mut buf = vec![0u8; CHUNK];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(buf), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        });
        let url = self.url(&["v1", "ota", "artifacts"], &[]);
        let req = self
            .request(Method::POST, url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(reqwest::Body::wrap_stream(stream));
        self.send_json(req).await
    }

    /// `POST /v1/ota/releases/prepare`: the unsigned targets metadata to
    /// sign offline.
    pub async fn prepare_release(
        &self,
        req: &CreateRelease,
    ) -> Result<PreparedRelease, ClientError> {
        let url = self.url(&["v1", "ota", "releases", "prepare"], &[]);
        self.send_json(self.request(Method::POST, url).json(req))
            .await
    }

    /// `POST /v1/ota/releases`: publish.
    pub async fn create_release(&self, req: &CreateRelease) -> Result<OtaRelease, ClientError> {
        let url = self.url(&["v1", "ota", "releases"], &[]);
        self.send_json(self.request(Method::POST, url).json(req))
            .await
    }

    /// `GET /v1/ota/releases`.
    pub async fn list_releases(&self) -> Result<Vec<OtaRelease>, ClientError> {
        let url = self.url(&["v1", "ota", "releases"], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `GET /v1/ota/releases/{name}`.
    pub async fn get_release(&self, name: &str) -> Result<OtaRelease, ClientError> {
        let url = self.url(&["v1", "ota", "releases", name], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `GET /v1/ota/root`: the newest root's version and keys per role.
    pub async fn ota_root(&self) -> Result<OtaRoot, ClientError> {
        let url = self.url(&["v1", "ota", "root"], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `POST /v1/ota/root/prepare`: the next root, unsigned, to sign
    /// offline with the old and the new root keys.
    pub async fn prepare_root(&self, req: &RotateRoot) -> Result<PreparedRoot, ClientError> {
        let url = self.url(&["v1", "ota", "root", "prepare"], &[]);
        self.send_json(self.request(Method::POST, url).json(req))
            .await
    }

    /// `POST /v1/ota/root`: publish the next root (signed offline, or by a
    /// dev server from the role changes).
    pub async fn publish_root(&self, req: &RotateRoot) -> Result<RootPublished, ClientError> {
        let url = self.url(&["v1", "ota", "root"], &[]);
        self.send_json(self.request(Method::POST, url).json(req))
            .await
    }

    /// `GET /v1/ota/tuf/{path}`: a file of the repository (`1.root.json`,
    /// `timestamp.json`, ...), as a device (client certificate) or operator.
    pub async fn tuf_file(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let mut segments = vec!["v1", "ota", "tuf"];
        segments.extend(path.split('/'));
        let url = self.url(&segments, &[]);
        self.send_bytes(self.request(Method::GET, url)).await
    }
}

impl Client {
    /// `POST /v1/ota/rollouts`.
    pub async fn create_rollout(
        &self,
        req: &bulwark_api_types::CreateRollout,
    ) -> Result<bulwark_api_types::Rollout, ClientError> {
        let url = self.url(&["v1", "ota", "rollouts"], &[]);
        self.send_json(self.request(Method::POST, url).json(req))
            .await
    }

    /// `GET /v1/ota/rollouts`.
    pub async fn list_rollouts(&self) -> Result<Vec<bulwark_api_types::Rollout>, ClientError> {
        let url = self.url(&["v1", "ota", "rollouts"], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `GET /v1/ota/rollouts/{id}`.
    pub async fn get_rollout(&self, id: &str) -> Result<bulwark_api_types::Rollout, ClientError> {
        let url = self.url(&["v1", "ota", "rollouts", id], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `GET /v1/ota/rollouts/{id}/devices`.
    pub async fn rollout_devices(
        &self,
        id: &str,
    ) -> Result<Vec<bulwark_api_types::RolloutDevice>, ClientError> {
        let url = self.url(&["v1", "ota", "rollouts", id, "devices"], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `POST /v1/ota/rollouts/{id}/{pause|resume|cancel}`.
    pub async fn control_rollout(
        &self,
        id: &str,
        command: &str,
        reason: Option<String>,
    ) -> Result<bulwark_api_types::Rollout, ClientError> {
        let url = self.url(&["v1", "ota", "rollouts", id, command], &[]);
        let body = bulwark_api_types::RolloutCommand { reason };
        self.send_json(self.request(Method::POST, url).json(&body))
            .await
    }
}
