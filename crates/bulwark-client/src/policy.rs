//! Stored MQTT policies and service principals: `/v1/policies`,
//! `/v1/services`, and the attachments under `/v1/groups/{group}/policies`.

use bulwark_api_types::{
    CreateService, CreatedService, DeletedService, EffectivePolicy, PolicyDetail, PolicySummary,
    PolicyTarget, PolicyTest, PolicyTestResult, PolicyWritten, Service,
};
use bulwark_types::{DeviceId, PolicyName, ServiceName};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, Url};

use crate::{Client, ClientError};

/// `/v1/groups/{group}/policies/{name}` or `/v1/services/{service}/policies/{name}`.
pub(crate) fn attachment_url(client: &Client, name: &PolicyName, target: &PolicyTarget) -> Url {
    let collection = match target {
        PolicyTarget::Group(_) => "groups",
        PolicyTarget::Service(_) => "services",
    };
    client.url(
        &["v1", collection, target.name(), "policies", name.as_str()],
        &[],
    )
}

impl Client {
    /// `POST /v1/policies`: stores a policy document (JSON bytes, sent as
    /// they are so the server's refusal points at the caller's text) as a
    /// new policy or a new version. `created` is false when the document
    /// equals the current version.
    pub async fn put_policy(&self, document_json: Vec<u8>) -> Result<PolicyWritten, ClientError> {
        let url = self.url(&["v1", "policies"], &[]);
        let req = self
            .request(Method::POST, url)
            .header(CONTENT_TYPE, "application/json")
            .body(document_json);
        self.send_json(req).await
    }

    /// `GET /v1/policies`: built-in policies (flagged) and stored ones.
    pub async fn list_policies(&self) -> Result<Vec<PolicySummary>, ClientError> {
        let url = self.url(&["v1", "policies"], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `GET /v1/policies/{name}?version=N`.
    pub async fn get_policy(
        &self,
        name: &PolicyName,
        version: Option<u32>,
    ) -> Result<PolicyDetail, ClientError> {
        let url = self.url(
            &["v1", "policies", name.as_str()],
            &[("version", version.map(|v| v.to_string()))],
        );
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `DELETE /v1/policies/{name}`: refused (409) while attached.
    pub async fn delete_policy(&self, name: &PolicyName) -> Result<(), ClientError> {
        let url = self.url(&["v1", "policies", name.as_str()], &[]);
        self.send(self.request(Method::DELETE, url)).await?;
        Ok(())
    }

    /// `PUT /v1/{groups|services}/{target}/policies/{name}`.
    pub async fn attach_policy(
        &self,
        name: &PolicyName,
        target: &PolicyTarget,
    ) -> Result<PolicySummary, ClientError> {
        let url = attachment_url(self, name, target);
        self.send_json(self.request(Method::PUT, url)).await
    }

    /// `DELETE /v1/{groups|services}/{target}/policies/{name}`.
    pub async fn detach_policy(
        &self,
        name: &PolicyName,
        target: &PolicyTarget,
    ) -> Result<PolicySummary, ClientError> {
        let url = attachment_url(self, name, target);
        self.send_json(self.request(Method::DELETE, url)).await
    }

    /// `POST /v1/policies/test`: the gateway's decision, explained.
    pub async fn test_policy(&self, req: &PolicyTest) -> Result<PolicyTestResult, ClientError> {
        let url = self.url(&["v1", "policies", "test"], &[]);
        self.send_json(self.request(Method::POST, url).json(req))
            .await
    }

    /// `GET /v1/devices/{id}/effective-policy`.
    pub async fn device_effective_policy(
        &self,
        id: &DeviceId,
    ) -> Result<EffectivePolicy, ClientError> {
        let url = self.url(&["v1", "devices", id.as_str(), "effective-policy"], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `GET /v1/services/{name}/effective-policy`.
    pub async fn service_effective_policy(
        &self,
        name: &ServiceName,
    ) -> Result<EffectivePolicy, ClientError> {
        let url = self.url(&["v1", "services", name.as_str(), "effective-policy"], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `POST /v1/services`: the answer is the only time a generated
    /// password is shown.
    pub async fn create_service(&self, req: &CreateService) -> Result<CreatedService, ClientError> {
        let url = self.url(&["v1", "services"], &[]);
        self.send_json(self.request(Method::POST, url).json(req))
            .await
    }

    /// `GET /v1/services`.
    pub async fn list_services(&self) -> Result<Vec<Service>, ClientError> {
        let url = self.url(&["v1", "services"], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `DELETE /v1/services/{name}`: revokes its certificates.
    pub async fn delete_service(&self, name: &ServiceName) -> Result<DeletedService, ClientError> {
        let url = self.url(&["v1", "services", name.as_str()], &[]);
        self.send_json(self.request(Method::DELETE, url)).await
    }

    /// `POST /v1/services/{name}/certificate`: a PEM client certificate
    /// for the service from its PEM CSR.
    pub async fn service_certificate(
        &self,
        name: &ServiceName,
        csr_pem: &str,
        ttl_seconds: Option<u64>,
    ) -> Result<String, ClientError> {
        let url = self.url(
            &["v1", "services", name.as_str(), "certificate"],
            &[("ttl_seconds", ttl_seconds.map(|t| t.to_string()))],
        );
        let req = self
            .request(Method::POST, url)
            .header(CONTENT_TYPE, "application/x-pem-file")
            .body(csr_pem.to_owned());
        self.send_text(req).await
    }
}
