//! The operator API (`/v1/...`): one method per endpoint.
//!
//! Each method builds its URL from validated newtypes (device ids, group
//! names, serials), sends the `bulwark-api-types` body and decodes the
//! promised response type; anything else is a [`ClientError`].

use bulwark_api_types::{
    AuditEntry, AuditVerification, Certificate, Claim, CreateClaim, CreateDevice,
    CreateEnrollToken, CreateGroup, CreateOperatorToken, CreatedClaim, CreatedEnrollToken,
    CreatedOperatorToken, Device, DeviceState, DeviceView, EnrollToken, Group, Health,
    LifecycleAction, OperatorToken, RevokeCertificate, UpdateDevice,
};
use bulwark_types::{CertSerial, DeviceId, GroupId};
use reqwest::Method;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::{Client, ClientError};

/// A move in the device lifecycle that the API exposes as `POST /v1/devices/{id}/<action>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleVerb {
    /// pending -> active, for a device registered just in time by a
    /// manufacturer CA's certificate.
    Activate,
    Quarantine,
    Release,
    Decommission,
}

impl LifecycleVerb {
    /// The last path segment of the endpoint.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Activate => "activate",
            Self::Quarantine => "quarantine",
            Self::Release => "release",
            Self::Decommission => "decommission",
        }
    }
}

impl Client {
    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        let url = self.url(&["v1", "health"], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    // ---- devices ----

    /// `GET /v1/devices?group=G&state=S`.
    pub async fn list_devices(
        &self,
        group: Option<&GroupId>,
        state: Option<DeviceState>,
    ) -> Result<Vec<Device>, ClientError> {
        let url = devices_url(self, group, state);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `POST /v1/devices`: pre-register a device (state `pending`).
    pub async fn create_device(&self, req: &CreateDevice) -> Result<Device, ClientError> {
        let url = self.url(&["v1", "devices"], &[]);
        self.send_json(self.request(Method::POST, url).json(req))
            .await
    }

    /// `GET /v1/devices/{id}`: the device, its certificates (newest first)
    /// and its MQTT counters.
    pub async fn get_device(&self, id: &DeviceId) -> Result<DeviceView, ClientError> {
        let url = self.url(&["v1", "devices", id.as_str()], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `PATCH /v1/devices/{id}`.
    pub async fn update_device(
        &self,
        id: &DeviceId,
        req: &UpdateDevice,
    ) -> Result<Device, ClientError> {
        let url = self.url(&["v1", "devices", id.as_str()], &[]);
        self.send_json(self.request(Method::PATCH, url).json(req))
            .await
    }

    /// `POST /v1/devices/{id}/{activate|quarantine|release|decommission}`.
    pub async fn device_lifecycle(
        &self,
        id: &DeviceId,
        verb: LifecycleVerb,
        action: &LifecycleAction,
    ) -> Result<Device, ClientError> {
        let url = self.url(&["v1", "devices", id.as_str(), verb.as_str()], &[]);
        self.send_json(self.request(Method::POST, url).json(action))
            .await
    }

    /// `POST /v1/devices/{id}/activate`: a pending device registered just
    /// in time by a manufacturer CA's certificate becomes active.
    pub async fn activate_device(
        &self,
        id: &DeviceId,
        action: &LifecycleAction,
    ) -> Result<Device, ClientError> {
        self.device_lifecycle(id, LifecycleVerb::Activate, action)
            .await
    }

    /// `POST /v1/devices/{id}/quarantine`.
    pub async fn quarantine_device(
        &self,
        id: &DeviceId,
        action: &LifecycleAction,
    ) -> Result<Device, ClientError> {
        self.device_lifecycle(id, LifecycleVerb::Quarantine, action)
            .await
    }

    /// `POST /v1/devices/{id}/release`.
    pub async fn release_device(
        &self,
        id: &DeviceId,
        action: &LifecycleAction,
    ) -> Result<Device, ClientError> {
        self.device_lifecycle(id, LifecycleVerb::Release, action)
            .await
    }

    /// `POST /v1/devices/{id}/decommission`: terminal; revokes every certificate.
    pub async fn decommission_device(
        &self,
        id: &DeviceId,
        action: &LifecycleAction,
    ) -> Result<Device, ClientError> {
        self.device_lifecycle(id, LifecycleVerb::Decommission, action)
            .await
    }

    // ---- groups ----

    /// `GET /v1/groups`.
    pub async fn list_groups(&self) -> Result<Vec<Group>, ClientError> {
        let url = self.url(&["v1", "groups"], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `POST /v1/groups`.
    pub async fn create_group(&self, req: &CreateGroup) -> Result<Group, ClientError> {
        let url = self.url(&["v1", "groups"], &[]);
        self.send_json(self.request(Method::POST, url).json(req))
            .await
    }

    // ---- enrollment tokens ----

    /// `POST /v1/enroll-tokens`: the answer is the only time the secret is shown.
    pub async fn create_enroll_token(
        &self,
        req: &CreateEnrollToken,
    ) -> Result<CreatedEnrollToken, ClientError> {
        let url = self.url(&["v1", "enroll-tokens"], &[]);
        self.send_json(self.request(Method::POST, url).json(req))
            .await
    }

    /// `GET /v1/enroll-tokens`.
    pub async fn list_enroll_tokens(&self) -> Result<Vec<EnrollToken>, ClientError> {
        let url = self.url(&["v1", "enroll-tokens"], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    // ---- certificates ----

    /// `GET /v1/certificates/{serial}`.
    pub async fn get_certificate(&self, serial: &CertSerial) -> Result<Certificate, ClientError> {
        let url = certificate_url(self, serial, None);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `POST /v1/certificates/{serial}/revoke`.
    pub async fn revoke_certificate(
        &self,
        serial: &CertSerial,
        req: &RevokeCertificate,
    ) -> Result<Certificate, ClientError> {
        let url = certificate_url(self, serial, Some("revoke"));
        self.send_json(self.request(Method::POST, url).json(req))
            .await
    }

    // ---- claims ----

    /// `POST /v1/claims`: register a factory batch's claim key and get its certificate.
    pub async fn create_claim(&self, req: &CreateClaim) -> Result<CreatedClaim, ClientError> {
        let url = self.url(&["v1", "claims"], &[]);
        self.send_json(self.request(Method::POST, url).json(req))
            .await
    }

    /// `GET /v1/claims`.
    pub async fn list_claims(&self) -> Result<Vec<Claim>, ClientError> {
        let url = self.url(&["v1", "claims"], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    // ---- operator tokens ----

    /// `POST /v1/tokens`: the answer is the only time the secret is shown.
    pub async fn create_token(
        &self,
        req: &CreateOperatorToken,
    ) -> Result<CreatedOperatorToken, ClientError> {
        let url = self.url(&["v1", "tokens"], &[]);
        self.send_json(self.request(Method::POST, url).json(req))
            .await
    }

    /// `GET /v1/tokens`.
    pub async fn list_tokens(&self) -> Result<Vec<OperatorToken>, ClientError> {
        let url = self.url(&["v1", "tokens"], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `POST /v1/tokens/{id}/revoke`.
    pub async fn revoke_token(&self, id: &str) -> Result<OperatorToken, ClientError> {
        let url = self.url(&["v1", "tokens", id, "revoke"], &[]);
        self.send_json(self.request(Method::POST, url)).await
    }

    // ---- audit ----

    /// `GET /v1/audit?after=SEQ&limit=N`: entries with `seq > after`, oldest first.
    pub async fn list_audit(
        &self,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> Result<Vec<AuditEntry>, ClientError> {
        let url = self.url(
            &["v1", "audit"],
            &[
                ("after", after.map(|a| a.to_string())),
                ("limit", limit.map(|l| l.to_string())),
            ],
        );
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `GET /v1/audit/export`: streams the NDJSON log (one [`AuditEntry`]
    /// per line, bytes exactly as the server sent them) into `out`, then
    /// flushes it. Returns the number of lines written.
    pub async fn export_audit<W>(&self, out: &mut W) -> Result<u64, ClientError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let url = self.url(&["v1", "audit", "export"], &[]);
        let mut resp = self.send(self.request(Method::GET, url)).await?;
        let mut lines = 0u64;
        let mut last = b'\n';
        while let Some(chunk) = resp.chunk().await.map_err(ClientError::Transport)? {
            lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            if let Some(b) = chunk.last() {
                last = *b;
            }
            out.write_all(&chunk).await.map_err(ClientError::Output)?;
        }
        if last != b'\n' {
            lines += 1;
        }
        out.flush().await.map_err(ClientError::Output)?;
        Ok(lines)
    }

    /// `GET /v1/audit/verify`: the server re-checks the hash chain.
    pub async fn verify_audit(&self) -> Result<AuditVerification, ClientError> {
        let url = self.url(&["v1", "audit", "verify"], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    // ---- CA material ----

    /// `GET /v1/ca/chain.pem`: the issuing chain, PEM.
    pub async fn ca_chain_pem(&self) -> Result<String, ClientError> {
        let url = self.url(&["v1", "ca", "chain.pem"], &[]);
        self.send_text(self.request(Method::GET, url)).await
    }

    /// `GET /v1/ca/crl`: the current CRL, DER.
    pub async fn crl_der(&self) -> Result<Vec<u8>, ClientError> {
        let url = self.url(&["v1", "ca", "crl"], &[]);
        self.send_bytes(self.request(Method::GET, url)).await
    }

    /// `GET /v1/ca/crl.pem`: the current CRL, PEM.
    pub async fn crl_pem(&self) -> Result<String, ClientError> {
        let url = self.url(&["v1", "ca", "crl.pem"], &[]);
        self.send_text(self.request(Method::GET, url)).await
    }
}

pub(crate) fn devices_url(
    client: &Client,
    group: Option<&GroupId>,
    state: Option<DeviceState>,
) -> reqwest::Url {
    client.url(
        &["v1", "devices"],
        &[
            ("group", group.map(|g| g.as_str().to_owned())),
            ("state", state.map(|s| s.as_str().to_owned())),
        ],
    )
}

pub(crate) fn certificate_url(
    client: &Client,
    serial: &CertSerial,
    action: Option<&str>,
) -> reqwest::Url {
    let hex = serial.to_hex();
    match action {
        Some(action) => client.url(&["v1", "certificates", &hex, action], &[]),
        None => client.url(&["v1", "certificates", &hex], &[]),
    }
}
