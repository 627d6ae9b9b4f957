//! Manufacturer CAs (`/v1/manufacturer-cas`): registration, listing,
//! removal.

use bulwark_api_types::{
    CreateManufacturerCa, DeletedManufacturerCa, ManufacturerCa, ManufacturerCaDetail,
};
use bulwark_types::ManufacturerCaName;
use reqwest::Method;

use crate::{Client, ClientError};

impl Client {
    /// `GET /v1/manufacturer-cas`.
    pub async fn list_manufacturer_cas(&self) -> Result<Vec<ManufacturerCa>, ClientError> {
        let url = self.url(&["v1", "manufacturer-cas"], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `POST /v1/manufacturer-cas`: register a manufacturer CA (admin only).
    pub async fn create_manufacturer_ca(
        &self,
        req: &CreateManufacturerCa,
    ) -> Result<ManufacturerCaDetail, ClientError> {
        let url = self.url(&["v1", "manufacturer-cas"], &[]);
        self.send_json(self.request(Method::POST, url).json(req))
            .await
    }

    /// `GET /v1/manufacturer-cas/{name}`: the CA with its certificate.
    pub async fn get_manufacturer_ca(
        &self,
        name: &ManufacturerCaName,
    ) -> Result<ManufacturerCaDetail, ClientError> {
        let url = self.url(&["v1", "manufacturer-cas", name.as_str()], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `DELETE /v1/manufacturer-cas/{name}`: its certificates stop
    /// authenticating and its devices' sessions are cut.
    pub async fn delete_manufacturer_ca(
        &self,
        name: &ManufacturerCaName,
    ) -> Result<DeletedManufacturerCa, ClientError> {
        let url = self.url(&["v1", "manufacturer-cas", name.as_str()], &[]);
        self.send_json(self.request(Method::DELETE, url)).await
    }
}
