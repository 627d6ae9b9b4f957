//! `/v1/alerts`: alerts, response actions and evidence bundles.

use bulwark_api_types::{Alert, AlertList, AlertNote, AlertQuery, Escalate};
use reqwest::Method;

use crate::{Client, ClientError};

impl Client {
    /// `GET /v1/alerts` (ascending by id; `after` follows new ones).
    pub async fn list_alerts(&self, q: &AlertQuery) -> Result<Vec<Alert>, ClientError> {
        let url = self.url(
            &["v1", "alerts"],
            &[
                ("after", q.after.map(|a| a.to_string())),
                ("device", q.device.clone()),
                ("state", q.state.clone()),
                ("limit", q.limit.map(|l| l.to_string())),
            ],
        );
        let list: AlertList = self.send_json(self.request(Method::GET, url)).await?;
        Ok(list.alerts)
    }

    /// `GET /v1/alerts/{id}`.
    pub async fn get_alert(&self, id: i64) -> Result<Alert, ClientError> {
        let url = self.url(&["v1", "alerts", &id.to_string()], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `GET /v1/alerts/{id}/bundle`: the evidence bundle, JSON bytes.
    pub async fn alert_bundle(&self, id: i64) -> Result<Vec<u8>, ClientError> {
        let url = self.url(&["v1", "alerts", &id.to_string(), "bundle"], &[]);
        self.send_bytes(self.request(Method::GET, url)).await
    }

    /// `POST /v1/alerts/{id}/acknowledge` or `.../resolve`.
    pub async fn set_alert_state(
        &self,
        id: i64,
        command: &str,
        reason: Option<String>,
    ) -> Result<Alert, ClientError> {
        let url = self.url(&["v1", "alerts", &id.to_string(), command], &[]);
        self.send_json(self.request(Method::POST, url).json(&AlertNote { reason }))
            .await
    }

    /// `POST /v1/alerts/{id}/escalate`.
    pub async fn escalate_alert(&self, id: i64, req: &Escalate) -> Result<Alert, ClientError> {
        let url = self.url(&["v1", "alerts", &id.to_string(), "escalate"], &[]);
        self.send_json(self.request(Method::POST, url).json(req))
            .await
    }

    /// `POST /v1/alerts/{id}/actions/{action}/{approve|reject|release}`.
    pub async fn alert_action(
        &self,
        id: i64,
        action: i64,
        command: &str,
    ) -> Result<Alert, ClientError> {
        let url = self.url(
            &[
                "v1",
                "alerts",
                &id.to_string(),
                "actions",
                &action.to_string(),
                command,
            ],
            &[],
        );
        self.send_json(self.request(Method::POST, url)).await
    }
}
