//! The operator API over real HTTPS: the role matrix, authentication,
//! malformed and oversized requests, rate limits, the device lifecycle, the
//! OpenAPI document and the audit trail of operator actions.
//!
//! Every refusal asserts the exact problem document (status, media type,
//! `type`/`title`/`status`/`detail`) and that the refused call changed
//! nothing, by comparing what an admin sees before and after.

mod common;

use std::collections::BTreeMap;

use bulwark_types::CertSerial;
use common::{csr, leaf_pem, raw, rt, Server};
use reqwest::header::{HeaderMap, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

/// Generous limits, for tests that make many requests quickly.
const NO_LIMITS: &str = "[limits]\nper_ip_per_sec = 100000\nper_ip_burst = 100000\n\
                         per_token_per_sec = 100000\nper_token_burst = 100000\n";

/// A request body.
enum Body {
    None,
    Json(Value),
    /// Content type (if any) and bytes, sent as they are.
    Raw(Option<&'static str>, Vec<u8>),
}

/// What the server answered.
struct Answer {
    status: u16,
    headers: HeaderMap,
    json: Value,
    /// The request line and the answer's body, for failure messages.
    text: String,
}

impl Answer {
    fn header(&self, name: reqwest::header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// What a problem document's `detail` must be.
#[derive(Clone, Copy)]
enum Detail<'a> {
    Is(&'a str),
    /// For details that quote serde's wording.
    Has(&'a str),
}

/// Asserts an RFC 9457 problem answer with `status` and `detail`.
fn assert_problem(a: &Answer, status: u16, detail: Detail<'_>) {
    assert_eq!(a.status, status, "{}", a.text);
    assert_eq!(
        a.header(CONTENT_TYPE),
        "application/problem+json",
        "{}",
        a.text
    );
    let title = StatusCode::from_u16(status).unwrap().canonical_reason();
    assert_eq!(a.json["title"].as_str(), title, "{}", a.text);
    assert_eq!(a.json["status"], status, "{}", a.text);
    let kind = a.json["type"].as_str().unwrap_or_default();
    assert!(kind.starts_with("urn:bulwark:problem:"), "{}", a.text);
    let got = a.json["detail"].as_str().unwrap_or_default();
    match detail {
        Detail::Is(want) => assert_eq!(got, want),
        Detail::Has(want) => assert!(got.contains(want), "{got:?} lacks {want:?}"),
    }
}

/// A mutating endpoint: method, path, body, the action it needs, the roles
/// (besides admin) allowed it and the status they get.
type Row = (
    Method,
    String,
    Option<Value>,
    &'static str,
    &'static [&'static str],
    u16,
);

/// What a call made as some role must answer.
enum Expect {
    /// 403 "role R may not ACTION", and nothing changed.
    Forbidden(&'static str),
    /// This success status.
    Ok(u16),
}

/// A raw HTTPS client with named operator tokens.
struct Api<'a> {
    server: &'a Server,
    http: reqwest::Client,
    tokens: BTreeMap<&'static str, String>,
}

impl<'a> Api<'a> {
    fn new(server: &'a Server) -> Self {
        Api {
            server,
            http: raw(server),
            tokens: BTreeMap::from([("admin", server.token.clone())]),
        }
    }

    async fn send(&self, token: Option<&str>, method: Method, path: &str, body: Body) -> Answer {
        let what = format!("{method} {path}");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.server.addr));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(ct, bytes) => {
                let req = match ct {
                    Some(ct) => req.header(CONTENT_TYPE, ct),
                    None => req,
                };
                req.body(bytes)
            }
        };
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.expect("body");
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            json,
            text: format!("{what} -> {status} {body}"),
        }
    }

    async fn as_role(&self, role: &str, method: Method, path: &str, body: Body) -> Answer {
        let token = self.tokens.get(role).expect("token for role");
        self.send(Some(token), method, path, body).await
    }

    /// A successful admin call's JSON.
    async fn admin(&self, method: Method, path: &str, body: Body) -> Value {
        let a = self.as_role("admin", method, path, body).await;
        assert!((200..300).contains(&a.status), "{path}: {}", a.text);
        a.json
    }

    /// Creates an operator token for `role` under the name `role`; returns its id.
    async fn add_role(&mut self, role: &'static str) -> String {
        let body = Body::Json(json!({"name": role, "role": role}));
        let created = self.admin(Method::POST, "/v1/tokens", body).await;
        let token = created["token"].as_str().unwrap().to_string();
        assert!(token.starts_with("bwk_"), "{token}");
        self.tokens.insert(role, token);
        created["id"].as_str().unwrap().to_string()
    }

    /// Everything an admin can read that a mutating call could change.
    async fn snapshot(&self) -> Value {
        let devices = self.admin(Method::GET, "/v1/devices", Body::None).await;
        let mut details = Vec::new();
        for d in devices.as_array().unwrap() {
            let path = format!("/v1/devices/{}", d["id"].as_str().unwrap());
            details.push(self.admin(Method::GET, &path, Body::None).await);
        }
        json!({
            "devices": details,
            "groups": self.admin(Method::GET, "/v1/groups", Body::None).await,
            "enroll_tokens": self.admin(Method::GET, "/v1/enroll-tokens", Body::None).await,
            "claims": self.admin(Method::GET, "/v1/claims", Body::None).await,
            "tokens": self.admin(Method::GET, "/v1/tokens", Body::None).await,
        })
    }

    /// One call as `role`, answered as `expect`.
    async fn check(
        &self,
        role: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        expect: Expect,
    ) {
        let before = self.snapshot().await;
        let body = body.map_or(Body::None, Body::Json);
        let a = self.as_role(role, method.clone(), path, body).await;
        match expect {
            Expect::Forbidden(action) => {
                let detail = format!("role {role} may not {action}");
                assert_problem(&a, 403, Detail::Is(&detail));
                assert_eq!(
                    self.snapshot().await,
                    before,
                    "{role} {method} {path} changed something"
                );
            }
            Expect::Ok(status) => {
                assert_eq!(a.status, status, "{role} {method} {path}: {}", a.text)
            }
        }
    }

    /// One malformed request as admin, refused with `status` and `detail`; nothing changed.
    async fn refuse(
        &self,
        method: Method,
        path: &str,
        body: Body,
        status: u16,
        detail: Detail<'_>,
    ) {
        let before = self.snapshot().await;
        let a = self.as_role("admin", method.clone(), path, body).await;
        assert_problem(&a, status, detail);
        assert_eq!(
            self.snapshot().await,
            before,
            "{method} {path} changed something"
        );
    }
}

/// Enrolls `id` into `group` with a fresh token; its key and certificate.
async fn enroll(server: &Server, group: &str, id: &str) -> (rcgen::KeyPair, String, CertSerial) {
    let t = server
        .client()
        .create_enroll_token(&bulwark_api_types::CreateEnrollToken {
            group: group.parse().unwrap(),
            device_id: Some(id.parse().unwrap()),
            ttl_seconds: None,
        })
        .await
        .unwrap()
        .token;
    let (key, der) = csr(id);
    let p7 = server
        .client_with(None)
        .est_simpleenroll_bearer(&t, &der)
        .await
        .unwrap();
    let (leaf, pem) = leaf_pem(&p7);
    let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
    (key, pem, CertSerial::from_bytes(cert.raw_serial()).unwrap())
}

fn claim_csr_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
}

/// A self-signed CA certificate, PEM, as a manufacturer would register it.
fn manufacturer_ca_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Acme Devices CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

#[test]
fn every_mutating_endpoint_refuses_the_roles_the_matrix_forbids() {
    let server = Server::start(NO_LIMITS);
    rt().block_on(async {
        let mut api = Api::new(&server);
        api.admin(Method::POST, "/v1/groups", Body::Json(json!({"name": "g"})))
            .await;
        let d1 = json!({"id": "d1", "group": "g"});
        api.admin(Method::POST, "/v1/devices", Body::Json(d1)).await;
        let (_, _, serial) = enroll(&server, "g", "e1").await;
        enroll(&server, "g", "e2").await;
        let victim = api
            .admin(
                Method::POST,
                "/v1/tokens",
                Body::Json(json!({"name": "victim", "role": "auditor"})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        api.add_role("auditor").await;
        api.add_role("enroller").await;
        api.add_role("operator").await;

        let op: &[&str] = &["operator"];
        let claim = json!({"group": "g", "csr_pem": claim_csr_pem()});
        let manufacturer = json!({"name": "acme", "certificate_pem": manufacturer_ca_pem()});
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            (Method::POST, "/v1/devices".into(), Some(json!({"id": "d2", "group": "g"})),
                "manage devices", op, 201),
            (Method::PATCH, "/v1/devices/d1".into(), Some(json!({"hardware_model": "m"})),
                "manage devices", op, 200),
            (Method::POST, "/v1/devices/e2/quarantine".into(), Some(json!({"reason": "r"})),
                "manage devices", op, 200),
            (Method::POST, "/v1/devices/e2/release".into(), None, "manage devices", op, 200),
            (Method::POST, "/v1/devices/e2/decommission".into(), None, "manage devices", op, 200),
            (Method::POST, "/v1/groups".into(), Some(json!({"name": "g2"})),
                "manage groups", op, 201),
            (Method::POST, "/v1/enroll-tokens".into(), Some(json!({"group": "g"})),
                "create enrollment tokens", &["enroller", "operator"], 201),
            (Method::POST, format!("/v1/certificates/{serial}/revoke"),
                Some(json!({"reason": "key_compromise"})), "revoke certificates", op, 200),
            (Method::POST, "/v1/claims".into(), Some(claim), "manage claim certificates", op, 201),
            (Method::POST, "/v1/manufacturer-cas".into(), Some(manufacturer),
                "manage manufacturer CAs", &[], 201),
            (Method::POST, "/v1/tokens".into(), Some(json!({"name": "n", "role": "admin"})),
                "manage operator tokens", &[], 201),
            (Method::POST, format!("/v1/tokens/{victim}/revoke"), None,
                "manage operator tokens", &[], 200),
        ];
        for (method, path, body, action, allowed, ok) in &rows {
            for role in ["auditor", "enroller", "operator"] {
                let expect = if allowed.contains(&role) {
                    Expect::Ok(*ok)
                } else {
                    Expect::Forbidden(action)
                };
                api.check(role, method.clone(), path, body.clone(), expect)
                    .await;
            }
        }
        // Token management is admin-only, and works for the admin.
        for (method, path, body, _, _, ok) in &rows[rows.len() - 2..] {
            api.check("admin", method.clone(), path, body.clone(), Expect::Ok(*ok))
                .await;
        }
    });
}

#[test]
fn refused_operator_actions_are_audited() {
    let server = Server::start("");
    rt().block_on(async {
        let mut api = Api::new(&server);
        let id = api.add_role("auditor").await;
        let body = Body::Json(json!({"name": "g"}));
        assert_eq!(
            api.as_role("auditor", Method::POST, "/v1/groups", body)
                .await
                .status,
            403
        );
        let log = api
            .admin(Method::GET, "/v1/audit?limit=10000", Body::None)
            .await;
        let denied: Vec<&Value> = log
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"]["type"] == "authorization_denied")
            .collect();
        assert_eq!(denied.len(), 1, "{log}");
        assert_eq!(denied[0]["actor"], format!("operator:{id}:auditor"));
        assert_eq!(denied[0]["event"]["action"], "manage groups");
    });
}

#[test]
fn missing_unknown_expired_and_revoked_tokens_are_401() {
    let server = Server::start("");
    rt().block_on(async {
        let mut api = Api::new(&server);
        let revoked_id = api.add_role("operator").await;
        let revoked = api.tokens["operator"].clone();
        let ok = api
            .send(Some(&revoked), Method::GET, "/v1/groups", Body::None)
            .await;
        assert_eq!(ok.status, 200, "the token works before it is revoked");
        let path = format!("/v1/tokens/{revoked_id}/revoke");
        api.admin(Method::POST, &path, Body::None).await;
        let expired = api
            .admin(
                Method::POST,
                "/v1/tokens",
                Body::Json(json!({"name": "short", "role": "admin", "ttl_seconds": 1})),
            )
            .await["token"]
            .as_str()
            .unwrap()
            .to_string();
        std::thread::sleep(std::time::Duration::from_millis(1100));

        let required = "an operator token is required (Authorization: Bearer …)";
        let cases: [(Option<&str>, Option<&str>, &str); 6] = [
            (None, None, required),
            (None, Some("Basic dXNlcjpwYXNz"), required),
            (None, Some("Bearer"), required),
            (Some("bwk_not-a-token"), None, "unknown operator token"),
            (Some(&revoked), None, "operator token revoked"),
            (Some(&expired), None, "operator token expired"),
        ];
        for (token, authorization, detail) in cases {
            let before = api.snapshot().await;
            let mut req = api
                .http
                .post(format!("{}/v1/groups", server.addr))
                .json(&json!({"name": "intruders"}));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(h) = authorization {
                req = req.header("authorization", h);
            }
            let resp = req.send().await.unwrap();
            let a = Answer {
                status: resp.status().as_u16(),
                headers: resp.headers().clone(),
                text: format!("POST /v1/groups with {token:?} / {authorization:?}"),
                json: resp.json().await.unwrap_or_default(),
            };
            assert_problem(&a, 401, Detail::Is(detail));
            assert_eq!(a.header(WWW_AUTHENTICATE), "Bearer realm=\"bulwark\"");
            assert_eq!(api.snapshot().await, before, "{detail}: changed something");
        }

        // Refused tokens are audited with the caller's address, never the secret.
        let log = api
            .admin(Method::GET, "/v1/audit?limit=10000", Body::None)
            .await;
        let failures: Vec<(&str, &str)> = log
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"]["type"] == "authentication_failed")
            .map(|e| {
                (
                    e["actor"].as_str().unwrap(),
                    e["event"]["reason"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            failures,
            [
                ("anonymous:127.0.0.1", "unknown operator token"),
                ("anonymous:127.0.0.1", "operator token revoked"),
                ("anonymous:127.0.0.1", "operator token expired"),
            ]
        );
        assert!(!log.to_string().contains(&revoked));
    });
}

#[test]
fn oversized_malformed_and_misaddressed_requests_are_4xx_problems() {
    let server = Server::start(&format!(
        "{NO_LIMITS}max_body_bytes = 2048\nmax_est_body_bytes = 1024\n"
    ));
    rt().block_on(async {
        let api = Api::new(&server);
        api.admin(Method::POST, "/v1/groups", Body::Json(json!({"name": "g"})))
            .await;
        api.admin(
            Method::POST,
            "/v1/devices",
            Body::Json(json!({"id": "d1", "group": "g"})),
        )
        .await;
        // Under the limit is fine: the limit is the configured one.
        let near = json!({"name": "near", "description": "x".repeat(1000)});
        assert_eq!(
            api.as_role("admin", Method::POST, "/v1/groups", Body::Json(near))
                .await
                .status,
            201
        );

        let json_ct = Some("application/json");
        let big_group = json!({"name": "big", "description": "x".repeat(3000)});
        let big = serde_json::to_vec(&big_group).unwrap();
        let too_large = "request body is too large";
        let long_serial = "11".repeat(21);
        let cases: Vec<(Method, String, Body, u16, Detail<'_>)> = vec![
            // Size limits: JSON, optional JSON, EST.
            (Method::POST, "/v1/groups".into(), Body::Raw(json_ct, big.clone()), 413,
                Detail::Is(too_large)),
            (Method::POST, "/v1/devices/d1/decommission".into(), Body::Raw(json_ct, big), 413,
                Detail::Is(too_large)),
            (Method::POST, "/.well-known/est/simpleenroll".into(),
                Body::Raw(Some("application/pkcs10"), vec![b'A'; 1500]), 413,
                Detail::Is("certificate request is larger than 1024 bytes")),
            // Bodies that are not JSON, not the right JSON, or not JSON at all.
            (Method::POST, "/v1/groups".into(), Body::Raw(json_ct, b"{\"name\":".to_vec()), 400,
                Detail::Has("Failed to parse the request body as JSON")),
            (Method::POST, "/v1/groups".into(), Body::Raw(json_ct, Vec::new()), 400,
                Detail::Has("Failed to parse the request body as JSON")),
            (Method::POST, "/v1/devices/d1/quarantine".into(),
                Body::Raw(json_ct, b"{\"reason\":".to_vec()), 400, Detail::Has("EOF")),
            (Method::POST, "/v1/groups".into(), Body::Json(json!({"name": 5})), 422,
                Detail::Has("invalid type: integer `5`, expected a string")),
            (Method::POST, "/v1/groups".into(), Body::Json(json!([])), 422,
                Detail::Has("expected struct CreateGroup")),
            (Method::POST, "/v1/groups".into(), Body::Json(json!({"name": "g3", "colour": "red"})),
                422, Detail::Has("unknown field `colour`")),
            (Method::PATCH, "/v1/devices/d1".into(), Body::Json(json!({"state": "active"})), 422,
                Detail::Has("unknown field `state`")),
            (Method::POST, "/v1/groups".into(), Body::Json(json!({"name": "../etc"})), 422,
                Detail::Has("group name may contain only")),
            (Method::POST, "/v1/groups".into(),
                Body::Raw(Some("text/plain"), b"{\"name\":\"g4\"}".to_vec()), 415,
                Detail::Is("expected a request body with Content-Type: application/json")),
            (Method::POST, "/v1/groups".into(), Body::Raw(None, b"{\"name\":\"g4\"}".to_vec()),
                415, Detail::Is("expected a request body with Content-Type: application/json")),
            (Method::POST, "/.well-known/est/simpleenroll".into(),
                Body::Raw(json_ct, b"{}".to_vec()), 415,
                Detail::Is("expected Content-Type: application/pkcs10 with a base64 DER certificate request")),
            (Method::GET, "/v1/devices?colour=red".into(), Body::None, 400,
                Detail::Has("unknown field `colour`")),
            // Identifiers in the path.
            (Method::GET, "/v1/devices/a%2Fb".into(), Body::None, 400,
                Detail::Has("invalid device id: ")),
            (Method::GET, "/v1/devices/x+y".into(), Body::None, 400,
                Detail::Has("invalid device id: ")),
            (Method::POST, "/v1/devices/a%20b/quarantine".into(), Body::None, 400,
                Detail::Has("invalid device id: ")),
            (Method::PATCH, "/v1/devices/a%00b".into(), Body::Json(json!({})), 400,
                Detail::Has("invalid device id: ")),
            (Method::GET, "/v1/certificates/xyz".into(), Body::None, 400,
                Detail::Is("invalid serial: serial must be hex digits (colons allowed)")),
            (Method::POST, "/v1/certificates/00/revoke".into(), Body::None, 400,
                Detail::Is("invalid serial: serial must not be empty or zero")),
            (Method::GET, format!("/v1/certificates/{long_serial}"), Body::None, 400,
                Detail::Is("invalid serial: serial is longer than 20 octets")),
            (Method::POST, "/v1/tokens/a-b/revoke".into(), Body::None, 400,
                Detail::Is("invalid token id")),
            // Nothing there.
            (Method::GET, "/v1/nope".into(), Body::None, 404, Detail::Is("no such endpoint")),
            (Method::GET, "/nope".into(), Body::None, 404, Detail::Is("no such endpoint")),
            (Method::POST, "/v1/devices/d1/explode".into(), Body::None, 404,
                Detail::Is("no such endpoint")),
        ];
        for (method, path, body, status, detail) in cases {
            api.refuse(method, &path, body, status, detail).await;
        }

        // A known path with a method it does not serve: 405, a problem, and `Allow`.
        for (method, path, allow) in [
            (Method::DELETE, "/v1/devices", "GET,HEAD,POST"),
            (Method::PUT, "/v1/groups", "GET,HEAD,POST"),
            (Method::GET, "/.well-known/est/simpleenroll", "POST"),
        ] {
            let a = api.as_role("admin", method, path, Body::None).await;
            assert_problem(&a, 405, Detail::Is("this endpoint does not allow that method"));
            assert_eq!(a.header(ALLOW), allow);
        }
    });
}

/// The `Retry-After` of a 429 problem, checked against its detail.
fn assert_rate_limited(a: &Answer) -> u64 {
    let secs: u64 = a.header(RETRY_AFTER).parse().expect("integer Retry-After");
    assert!(secs >= 1, "Retry-After {secs}");
    let detail = format!("too many requests; retry after {secs} s");
    assert_problem(a, 429, Detail::Is(&detail));
    secs
}

#[test]
fn per_address_limit_answers_429_with_retry_after_before_authentication() {
    let server = Server::start("[limits]\nper_ip_per_sec = 1\nper_ip_burst = 3\n");
    rt().block_on(async {
        let api = Api::new(&server);
        for _ in 0..3 {
            assert_eq!(
                api.send(None, Method::GET, "/v1/health", Body::None)
                    .await
                    .status,
                200
            );
        }
        let a = api.send(None, Method::GET, "/v1/health", Body::None).await;
        assert_rate_limited(&a);
        // The address is limited before any token is looked at.
        let a = api
            .send(
                Some("bwk_not-a-token"),
                Method::GET,
                "/v1/groups",
                Body::None,
            )
            .await;
        assert_rate_limited(&a);
    });
}

#[test]
fn per_token_limit_answers_429_and_spares_other_tokens() {
    let server = Server::start(
        "[limits]\nper_ip_per_sec = 1000\nper_ip_burst = 1000\n\
         per_token_per_sec = 1\nper_token_burst = 3\n",
    );
    rt().block_on(async {
        let mut api = Api::new(&server);
        api.add_role("auditor").await;
        for _ in 0..2 {
            let a = api
                .as_role("admin", Method::GET, "/v1/groups", Body::None)
                .await;
            assert_eq!(a.status, 200, "{}", a.text);
        }
        let a = api
            .as_role("admin", Method::GET, "/v1/groups", Body::None)
            .await;
        assert_rate_limited(&a);
        let a = api
            .as_role("auditor", Method::GET, "/v1/groups", Body::None)
            .await;
        assert_eq!(a.status, 200, "another token has its own budget");
        let a = api.send(None, Method::GET, "/v1/health", Body::None).await;
        assert_eq!(
            a.status, 200,
            "unauthenticated calls are not charged to a token"
        );
    });
}

#[test]
fn lifecycle_moves_and_decommission_revokes_certificates() {
    let server = Server::start(NO_LIMITS);
    rt().block_on(async {
        let api = Api::new(&server);
        api.admin(Method::POST, "/v1/groups", Body::Json(json!({"name": "g"})))
            .await;
        api.admin(
            Method::POST,
            "/v1/devices",
            Body::Json(json!({"id": "p1", "group": "g"})),
        )
        .await;
        let (key, pem, serial) = enroll(&server, "g", "cam-1").await;

        let mv = |id: &'static str, verb: &'static str| {
            let path = format!("/v1/devices/{id}/{verb}");
            let api = &api;
            async move { api.as_role("admin", Method::POST, &path, Body::None).await }
        };
        let state = |id: &'static str| {
            let api = &api;
            async move {
                let d = api
                    .admin(Method::GET, &format!("/v1/devices/{id}"), Body::None)
                    .await;
                d["state"].as_str().unwrap().to_string()
            }
        };

        // A pending device cannot be quarantined.
        let a = mv("p1", "quarantine").await;
        assert_problem(
            &a,
            409,
            Detail::Is("cannot move a device from pending to quarantined"),
        );
        assert_eq!(state("p1").await, "pending");

        // active -> quarantined -> active -> decommissioned.
        for (verb, to) in [
            ("quarantine", "quarantined"),
            ("release", "active"),
            ("decommission", "decommissioned"),
        ] {
            let a = mv("cam-1", verb).await;
            assert_eq!(a.status, 200, "{verb}: {}", a.text);
            assert_eq!(a.json["state"], to);
            assert_eq!(state("cam-1").await, to);
        }

        // Decommissioning revoked the certificate: in the record and in the CRL.
        let d = api
            .admin(Method::GET, "/v1/devices/cam-1", Body::None)
            .await;
        let certs = d["certificates"].as_array().unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0]["serial"], serial.to_hex());
        assert!(certs[0]["revoked_at"].is_string(), "{d}");
        assert_eq!(certs[0]["revocation_reason"], "cessation_of_operation");
        let crl = server.client_with(None).crl_der().await.unwrap();
        let (_, crl) = CertificateRevocationList::from_der(&crl).unwrap();
        let listed: Vec<(CertSerial, Option<u8>)> = crl
            .iter_revoked_certificates()
            .map(|r| {
                let s = CertSerial::from_bytes(r.raw_serial()).unwrap();
                (s, r.reason_code().map(|(_, c)| c.0))
            })
            .collect();
        assert_eq!(
            listed,
            [(serial.clone(), Some(5))],
            "cessationOfOperation (5)"
        );
        // And the device can no longer renew with it.
        let device = server.client_with_identity(&pem, &key.serialize_pem());
        let (_, der) = csr("cam-1");
        let e = device.est_simplereenroll(&der).await.unwrap_err();
        assert_eq!(
            common::problem(e),
            (401, format!("client certificate {serial} is revoked"))
        );

        // Decommissioned is terminal.
        for (verb, to) in [
            ("release", "active"),
            ("quarantine", "quarantined"),
            ("decommission", "decommissioned"),
        ] {
            let before = api.snapshot().await;
            let a = mv("cam-1", verb).await;
            let detail = format!("cannot move a device from decommissioned to {to}");
            assert_problem(&a, 409, Detail::Is(&detail));
            assert_eq!(api.snapshot().await, before);
        }

        // Unknown devices.
        for (method, path) in [
            (Method::GET, "/v1/devices/ghost"),
            (Method::POST, "/v1/devices/ghost/quarantine"),
            (Method::POST, "/v1/devices/ghost/decommission"),
        ] {
            api.refuse(
                method,
                path,
                Body::None,
                404,
                Detail::Is("device not found"),
            )
            .await;
        }
        api.refuse(
            Method::PATCH,
            "/v1/devices/ghost",
            Body::Json(json!({"hardware_model": "m"})),
            404,
            Detail::Is("device not found"),
        )
        .await;
    });
}

#[test]
fn release_only_moves_quarantined_devices() {
    let server = Server::start("");
    rt().block_on(async {
        let api = Api::new(&server);
        api.admin(Method::POST, "/v1/groups", Body::Json(json!({"name": "g"})))
            .await;
        api.admin(
            Method::POST,
            "/v1/devices",
            Body::Json(json!({"id": "p1", "group": "g"})),
        )
        .await;
        api.refuse(
            Method::POST,
            "/v1/devices/p1/release",
            Body::None,
            409,
            Detail::Is("cannot move a device from pending to active"),
        )
        .await;
    });
}

#[test]
fn openapi_document_describes_every_route() {
    let server = Server::start("");
    rt().block_on(async {
        let api = Api::new(&server);
        let a = api
            .send(None, Method::GET, "/v1/openapi.json", Body::None)
            .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header(CONTENT_TYPE), "application/json");
        let doc = &a.json;
        assert!(doc.is_object(), "not a JSON object: {}", a.text);
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3."),
            "{}",
            doc["openapi"]
        );
        let served = [
            ("/v1/health", "get"),
            ("/v1/openapi.json", "get"),
            ("/v1/ca/chain.pem", "get"),
            ("/v1/ca/crl", "get"),
            ("/v1/ca/crl.pem", "get"),
            ("/v1/devices", "get"),
            ("/v1/devices", "post"),
            ("/v1/devices/{id}", "get"),
            ("/v1/devices/{id}", "patch"),
            ("/v1/devices/{id}/activate", "post"),
            ("/v1/devices/{id}/quarantine", "post"),
            ("/v1/devices/{id}/release", "post"),
            ("/v1/devices/{id}/decommission", "post"),
            ("/v1/devices/{id}/metrics", "get"),
            ("/v1/groups", "get"),
            ("/v1/groups", "post"),
            ("/v1/enroll-tokens", "get"),
            ("/v1/enroll-tokens", "post"),
            ("/v1/certificates/{serial}", "get"),
            ("/v1/certificates/{serial}/revoke", "post"),
            ("/v1/claims", "get"),
            ("/v1/claims", "post"),
            ("/v1/tokens", "get"),
            ("/v1/tokens", "post"),
            ("/v1/tokens/{id}/revoke", "post"),
            ("/v1/audit", "get"),
            ("/v1/audit/export", "get"),
            ("/v1/audit/verify", "get"),
            ("/.well-known/est/cacerts", "get"),
            ("/.well-known/est/simpleenroll", "post"),
            ("/.well-known/est/simplereenroll", "post"),
            ("/v1/devices/{id}/effective-policy", "get"),
            ("/v1/groups/{group}/policies/{name}", "put"),
            ("/v1/groups/{group}/policies/{name}", "delete"),
            ("/v1/policies", "get"),
            ("/v1/policies", "post"),
            ("/v1/policies/test", "post"),
            ("/v1/policies/{name}", "get"),
            ("/v1/policies/{name}", "delete"),
            ("/v1/services", "get"),
            ("/v1/services", "post"),
            ("/v1/services/{service}", "delete"),
            ("/v1/services/{service}/certificate", "post"),
            ("/v1/services/{service}/effective-policy", "get"),
            ("/v1/services/{service}/policies/{name}", "put"),
            ("/v1/services/{service}/policies/{name}", "delete"),
            ("/v1/manufacturer-cas", "get"),
            ("/v1/manufacturer-cas", "post"),
            ("/v1/manufacturer-cas/{name}", "get"),
            ("/v1/manufacturer-cas/{name}", "delete"),
            ("/v1/mqtt/sessions", "get"),
            ("/v1/mqtt/sessions/{client_id}", "delete"),
            ("/v1/ota/artifacts", "post"),
            ("/v1/ota/releases", "get"),
            ("/v1/ota/releases", "post"),
            ("/v1/ota/releases/prepare", "post"),
            ("/v1/ota/releases/{name}", "get"),
            ("/v1/ota/reports", "post"),
            ("/v1/ota/rollouts", "get"),
            ("/v1/ota/rollouts", "post"),
            ("/v1/ota/rollouts/{id}", "get"),
            ("/v1/ota/rollouts/{id}/devices", "get"),
            ("/v1/ota/rollouts/{id}/{command}", "post"),
            ("/v1/ota/tuf/{path}", "get"),
            ("/v1/ota/root", "get"),
            ("/v1/ota/root", "post"),
            ("/v1/ota/root/prepare", "post"),
            ("/v1/alerts", "get"),
            ("/v1/alerts/{id}", "get"),
            ("/v1/alerts/{id}/bundle", "get"),
            ("/v1/alerts/{id}/acknowledge", "post"),
            ("/v1/alerts/{id}/resolve", "post"),
            ("/v1/alerts/{id}/escalate", "post"),
            ("/v1/alerts/{id}/actions/{action}/{command}", "post"),
            ("/metrics", "get"),
        ];
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.push((path.clone(), method.clone()));
            }
        }
        documented.sort();
        let mut want: Vec<(String, String)> = served
            .iter()
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .collect();
        want.sort();
        assert_eq!(documented, want);
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    });
}

#[test]
fn audit_log_names_the_operator_token_that_acted() {
    let server = Server::start("");
    rt().block_on(async {
        let mut api = Api::new(&server);
        let id = api.add_role("operator").await;
        let secret = api.tokens["operator"].clone();
        let a = api
            .as_role(
                "operator",
                Method::POST,
                "/v1/groups",
                Body::Json(json!({"name": "floor-3"})),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.text);

        let log = api
            .admin(Method::GET, "/v1/audit?limit=10000", Body::None)
            .await;
        let tokens = api.admin(Method::GET, "/v1/tokens", Body::None).await;
        let admin_id = tokens
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "dev-admin")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let by_type = |t: &str| -> Vec<Value> {
            log.as_array()
                .unwrap()
                .iter()
                .filter(|e| e["event"]["type"] == t)
                .cloned()
                .collect()
        };
        let created = by_type("group_created");
        assert_eq!(created.len(), 1, "{log}");
        assert_eq!(created[0]["actor"], format!("operator:{id}:operator"));
        assert_eq!(created[0]["event"]["group"], "floor-3");
        let issued: Vec<Value> = by_type("operator_token_created")
            .into_iter()
            .filter(|e| e["event"]["token_id"] == id.as_str())
            .collect();
        assert_eq!(issued.len(), 1, "{log}");
        assert_eq!(issued[0]["actor"], format!("operator:{admin_id}:admin"));
        assert_eq!(issued[0]["event"]["role"], "operator");
        assert!(
            !log.to_string().contains(&secret),
            "the secret is never logged"
        );
    });
}
