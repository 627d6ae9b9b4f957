//! The OpenAPI 3 document, generated from the handlers' annotations.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Bulwark API",
        description = "Operator API and EST endpoints of Bulwark, a self-hosted security control plane for IoT fleets. Errors are RFC 9457 problem documents (application/problem+json). Every endpoint but health, this document, the CA material and EST needs an operator token (Authorization: Bearer), including the Prometheus `/metrics`, which reveals fleet activity.",
    ),
    paths(
        routes::health, routes::openapi, routes::chain_pem, routes::crl_der, routes::crl_pem,
        routes::list_devices, routes::create_device, routes::get_device, routes::update_device,
        routes::activate, routes::quarantine, routes::release, routes::decommission,
        routes::device_metrics,
        routes::list_groups, routes::create_group,
        routes::create_enroll_token, routes::list_enroll_tokens,
        routes::get_certificate, routes::revoke_certificate,
        routes::create_claim, routes::list_claims,
        routes::create_token, routes::list_tokens, routes::revoke_token,
        routes::audit_entries, routes::audit_export, routes::audit_verify,
        routes::est_cacerts, routes::est_simpleenroll, routes::est_simplereenroll,
        routes::list_policies, routes::put_policy, routes::get_policy, routes::delete_policy,
        routes::attach_group_policy, routes::detach_group_policy,
        routes::attach_service_policy, routes::detach_service_policy,
        routes::device_effective_policy, routes::service_effective_policy, routes::test_policy,
        routes::list_services, routes::create_service, routes::delete_service,
        routes::service_certificate,
        routes::list_manufacturer_cas, routes::create_manufacturer_ca,
        routes::get_manufacturer_ca, routes::delete_manufacturer_ca,
        routes::list_mqtt_sessions, routes::disconnect_mqtt_session, routes::metrics,
        routes::upload_artifact, routes::prepare_release, routes::create_release,
        routes::list_releases, routes::get_release, routes::tuf_file,
        routes::get_root, routes::prepare_root, routes::publish_root,
        routes::create_rollout, routes::list_rollouts, routes::get_rollout,
        routes::rollout_devices, routes::control_rollout, routes::device_report,
        routes::list_alerts, routes::get_alert, routes::alert_bundle, routes::acknowledge_alert,
        routes::resolve_alert, routes::escalate_alert, routes::alert_action,
    ),
    components(schemas(bulwark_api_types::Problem)),
    modifiers(&Bearer),
)]
struct Doc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as JSON text, built once.
pub fn openapi_json() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| Doc::openapi().to_json().unwrap_or_else(|_| "{}".into()))
        .clone()
}
