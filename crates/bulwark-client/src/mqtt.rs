//! The operator's view of the MQTT gateway: `/v1/mqtt/sessions` and the
//! Prometheus `/metrics`.

use bulwark_api_types::MqttSession;
use reqwest::Method;

use crate::{Client, ClientError};

impl Client {
    /// `GET /v1/mqtt/sessions`: connected and persistent sessions, sorted
    /// by client id.
    pub async fn mqtt_sessions(&self) -> Result<Vec<MqttSession>, ClientError> {
        let url = self.url(&["v1", "mqtt", "sessions"], &[]);
        self.send_json(self.request(Method::GET, url)).await
    }

    /// `DELETE /v1/mqtt/sessions/{client_id}?kind=K`: disconnects a live
    /// session. `kind` (`device`, `service` or `dev`) is needed only when
    /// live sessions of several kinds share the client id (the server
    /// answers 409 then); a client id with no live session is a 404.
    pub async fn disconnect_mqtt_session(
        &self,
        client_id: &str,
        kind: Option<&str>,
    ) -> Result<(), ClientError> {
        let url = self.url(
            &["v1", "mqtt", "sessions", client_id],
            &[("kind", kind.map(str::to_owned))],
        );
        self.send(self.request(Method::DELETE, url)).await?;
        Ok(())
    }

    /// `GET /metrics`: the Prometheus text exposition, as the server sent it.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let url = self.url(&["metrics"], &[]);
        self.send_text(self.request(Method::GET, url)).await
    }
}
