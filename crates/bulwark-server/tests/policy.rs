//! Stored MQTT policies and service principals over real HTTPS and the real
//! CLI: role refusals that change nothing (first), invalid documents
//! refused naming the statement, versions, attachments reaching the
//! gateway's decision (through `/v1/policies/test` and the effective
//! policy), delete refused while attached, services with a password and
//! with a certificate from an `openssl req` CSR, and CLI round trips.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use common::{csr, leaf_pem, raw, rt, run, write, Server};
use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde_json::{json, Value};

const NO_LIMITS: &str = "[limits]\nper_ip_per_sec = 100000\nper_ip_burst = 100000\n\
                         per_token_per_sec = 100000\nper_token_burst = 100000\n";

/// What the server answered.
struct Answer {
    status: u16,
    content_type: String,
    json: Value,
    body: String,
    /// The request line and the answer, for failure messages.
    text: String,
}

impl Answer {
    fn detail(&self) -> &str {
        self.json["detail"].as_str().unwrap_or_default()
    }

    /// Asserts an RFC 9457 problem with `status` and exactly `detail`.
    fn problem(&self, status: u16, detail: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.content_type, "application/problem+json",
            "{}",
            self.text
        );
        assert_eq!(self.json["status"], status, "{}", self.text);
        assert_eq!(self.detail(), detail, "{}", self.text);
    }
}

/// A raw HTTPS client with operator tokens by role.
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

    async fn add_role(&mut self, role: &'static str) {
        let created = self
            .admin(
                Method::POST,
                "/v1/tokens",
                Some(json!({"name": role, "role": role})),
            )
            .await;
        self.tokens
            .insert(role, created["token"].as_str().unwrap().to_owned());
    }

    /// `body` is JSON, or (as a string) a raw body sent with its own type.
    async fn call(&self, role: &str, method: Method, path: &str, body: Option<Value>) -> Answer {
        let what = format!("{role} {method} {path}");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.server.addr))
            .bearer_auth(&self.tokens[role]);
        req = match body {
            None => req,
            Some(Value::String(raw)) => {
                req.header(CONTENT_TYPE, "application/x-pem-file").body(raw)
            }
            Some(v) => req.json(&v),
        };
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = resp.text().await.expect("body");
        Answer {
            status,
            content_type,
            json: serde_json::from_str(&body).unwrap_or(Value::Null),
            text: format!("{what} -> {status} {body}"),
            body,
        }
    }

    /// A policy document sent with an explicit content type.
    async fn post_document(&self, body: &str, content_type: &str) -> Answer {
        let resp = self
            .http
            .post(format!("{}/v1/policies", self.server.addr))
            .bearer_auth(&self.tokens["admin"])
            .header(CONTENT_TYPE, content_type)
            .body(body.to_owned())
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let answer = resp.text().await.expect("body");
        Answer {
            status,
            content_type,
            json: serde_json::from_str(&answer).unwrap_or(Value::Null),
            text: format!("POST /v1/policies {body} -> {status} {answer}"),
            body: answer,
        }
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let a = self.call("admin", method, path, body).await;
        assert!((200..300).contains(&a.status), "{}", a.text);
        a.json
    }

    /// Everything a policy or service call could change, as an admin sees it.
    async fn snapshot(&self) -> Value {
        let policies = self.admin(Method::GET, "/v1/policies", None).await;
        let mut details = Vec::new();
        for p in policies.as_array().unwrap() {
            let path = format!("/v1/policies/{}", p["name"].as_str().unwrap());
            details.push(self.admin(Method::GET, &path, None).await);
        }
        let services = self.admin(Method::GET, "/v1/services", None).await;
        let mut effective = Vec::new();
        for s in services.as_array().unwrap() {
            let path = format!(
                "/v1/services/{}/effective-policy",
                s["name"].as_str().unwrap()
            );
            effective.push(self.admin(Method::GET, &path, None).await);
        }
        json!({
            "policies": details,
            "services": services,
            "effective": effective,
            "d1": self.admin(Method::GET, "/v1/devices/d1/effective-policy", None).await,
            "certificates": self.admin(Method::GET, "/v1/devices/d1", None).await,
        })
    }

    /// The test decision for `subject` (`{"device": …}` or `{"service": …}`).
    async fn decide(&self, subject: Value, action: &str, topic: &str) -> Value {
        let mut body = subject;
        body["action"] = json!(action);
        body["topic"] = json!(topic);
        self.admin(Method::POST, "/v1/policies/test", Some(body))
            .await
    }
}

fn document(name: &str, statements: Value) -> Value {
    json!({"version": 1, "name": name, "statements": statements})
}

fn allow(actions: &[&str], resources: &[&str]) -> Value {
    json!({"effect": "allow", "actions": actions, "resources": resources})
}

fn deny(actions: &[&str], resources: &[&str]) -> Value {
    json!({"effect": "deny", "actions": actions, "resources": resources})
}

/// A PEM CSR made with the rcgen test helper.
fn csr_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
}

/// Enrolls device `id` into `group` over EST with a fresh token.
async fn enroll(server: &Server, group: &str, id: &str) {
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
    let (_, der) = csr(id);
    let p7 = server
        .client_with(None)
        .est_simpleenroll_bearer(&t, &der)
        .await
        .unwrap();
    leaf_pem(&p7);
}

/// A group `g`, an enrolled device `d1` in it, a service `s` and a policy `p`.
async fn fleet(server: &Server, api: &Api<'_>) {
    api.admin(Method::POST, "/v1/groups", Some(json!({"name": "g"})))
        .await;
    enroll(server, "g", "d1").await;
    api.admin(Method::POST, "/v1/services", Some(json!({"name": "s"})))
        .await;
    let p = document("p", json!([allow(&["publish"], &["lab/${device.id}/#"])]));
    api.admin(Method::POST, "/v1/policies", Some(p)).await;
}

/// A mutating call: method, path, body, the action refused, the roles
/// (besides admin) allowed it and the status they get.
type Row = (
    Method,
    &'static str,
    Option<Value>,
    &'static str,
    &'static [&'static str],
    u16,
);

#[test]
fn wrong_roles_are_refused_and_change_nothing() {
    let server = Server::start(NO_LIMITS);
    rt().block_on(async {
        let mut api = Api::new(&server);
        fleet(&server, &api).await;
        for role in ["auditor", "enroller", "operator"] {
            api.add_role(role).await;
        }
        let manage = "manage policies";
        let services = "manage service principals";
        let op: &[&str] = &["operator"];
        let p2 = document("p2", json!([allow(&["publish"], &["x/#"])]));
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            (Method::POST, "/v1/policies", Some(p2), manage, op, 201),
            (Method::PUT, "/v1/groups/g/policies/p2", None, manage, op, 200),
            (Method::DELETE, "/v1/groups/g/policies/p2", None, manage, op, 200),
            (Method::PUT, "/v1/services/s/policies/p2", None, manage, op, 200),
            (Method::DELETE, "/v1/services/s/policies/p2", None, manage, op, 200),
            (Method::DELETE, "/v1/policies/p2", None, manage, op, 204),
            (Method::POST, "/v1/services", Some(json!({"name": "s2", "password": true})),
                services, &[], 201),
            (Method::POST, "/v1/services/s2/certificate", Some(Value::String(csr_pem())),
                services, &[], 200),
            (Method::DELETE, "/v1/services/s2", None, services, &[], 200),
        ];
        for (method, path, body, action, allowed, ok) in &rows {
            for role in ["auditor", "enroller", "operator"] {
                let before = api.snapshot().await;
                let a = api.call(role, method.clone(), path, body.clone()).await;
                if allowed.contains(&role) {
                    assert_eq!(a.status, *ok, "{}", a.text);
                } else {
                    a.problem(403, &format!("role {role} may not {action}"));
                    assert_eq!(api.snapshot().await, before, "{role} {method} {path}");
                }
            }
        }
        // The admin-only rows work for an admin, in order.
        for (method, path, body, _, allowed, ok) in &rows {
            if allowed.is_empty() {
                let a = api.call("admin", method.clone(), path, body.clone()).await;
                assert_eq!(a.status, *ok, "{}", a.text);
            }
        }
        // Reads: an auditor may read policies and decisions, an enroller not.
        let test = json!({"device": "d1", "action": "publish", "topic": "lab/d1/x"});
        let reads: Vec<(Method, &str, Option<Value>, &str)> = vec![
            (Method::GET, "/v1/policies", None, "read policies"),
            (Method::GET, "/v1/policies/p", None, "read policies"),
            (
                Method::GET,
                "/v1/devices/d1/effective-policy",
                None,
                "read policies",
            ),
            (
                Method::GET,
                "/v1/services/s/effective-policy",
                None,
                "read policies",
            ),
            (
                Method::POST,
                "/v1/policies/test",
                Some(test),
                "read policies",
            ),
            (Method::GET, "/v1/services", None, "read the inventory"),
        ];
        for (method, path, body, action) in reads {
            for role in ["auditor", "operator"] {
                let a = api.call(role, method.clone(), path, body.clone()).await;
                assert_eq!(a.status, 200, "{}", a.text);
            }
            let a = api.call("enroller", method, path, body).await;
            a.problem(403, &format!("role enroller may not {action}"));
        }
        // Every refusal was audited.
        let log = api.admin(Method::GET, "/v1/audit?limit=10000", None).await;
        let denied = log
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"]["type"] == "authorization_denied")
            .count();
        assert_eq!(denied, 6 * 2 + 3 * 3 + 6);
    });
}

#[test]
fn invalid_documents_are_refused_naming_the_statement() {
    let server = Server::start(NO_LIMITS);
    rt().block_on(async {
        let api = Api::new(&server);
        fleet(&server, &api).await;
        let ok = allow(&["publish"], &["a/#"]);
        let cases: Vec<(Value, u16, &str)> = vec![
            (
                document("bad", json!([ok, allow(&["publish"], &["a/#/b"])])),
                400,
                "policy refused: statement 1, resource 0: '#' must be the last topic level",
            ),
            (
                document("bad", json!([allow(&["publish", "fly"], &["a"])])),
                400,
                "policy refused: statement 0: unknown action \"fly\" (expected connect, publish, subscribe or receive)",
            ),
            (
                document("bad", json!([ok, ok, allow(&["publish"], &["a", "b/${device.serial}"])])),
                400,
                "policy refused: statement 2, resource 1: unknown variable \"${device.serial}\" (expected device.id, device.group or device.attr.NAME with NAME of letters, digits, '_' or '-')",
            ),
            (
                document("bad", json!([{"effect": "maybe", "actions": ["publish"], "resources": ["a"]}])),
                400,
                "policy refused: statement 0: unknown effect \"maybe\" (expected \"allow\" or \"deny\")",
            ),
            (
                document("bad", json!([{"effect": "allow", "actions": [], "resources": ["a"]}])),
                400,
                "policy refused: statement 0: no actions",
            ),
            (
                document("bad", json!([])),
                400,
                "policy refused: a policy needs at least one statement",
            ),
            (
                json!({"version": 2, "name": "bad", "statements": [ok]}),
                400,
                "policy refused: unsupported policy version 2 (expected 1)",
            ),
            (
                document("a/b", json!([ok])),
                400,
                "policy refused: policy name may contain only letters, digits, '.', '_' and '-', and must start with a letter or digit",
            ),
            (
                document("quarantine", json!([ok])),
                409,
                "policy quarantine is built in and cannot be replaced",
            ),
            (
                document("test", json!([ok])),
                409,
                "policy name test is reserved",
            ),
        ];
        for (body, status, detail) in cases {
            let before = api.snapshot().await;
            let a = api.call("admin", Method::POST, "/v1/policies", Some(body)).await;
            a.problem(status, detail);
            assert_eq!(api.snapshot().await, before, "{detail}");
        }
        // Malformed JSON: serde's words, with line and column.
        let a = api
            .post_document("{\"version\": 1, \"name\": \"x\",\n \"statement\": []}", "application/json")
            .await;
        assert_eq!(a.status, 400, "{}", a.text);
        assert!(
            a.detail().starts_with("policy refused: malformed policy document: unknown field `statement`"),
            "{}",
            a.text
        );
        assert!(a.detail().contains("line 2"), "{}", a.text);
        // Not JSON at all.
        let a = api.post_document("version = 1", "text/plain").await;
        a.problem(
            415,
            "expected a policy document with Content-Type: application/json",
        );
        // Built-in policies cannot be deleted or attached either.
        let a = api
            .call("admin", Method::DELETE, "/v1/policies/default-device", None)
            .await;
        a.problem(409, "policy default-device is built in and cannot be deleted");
        let a = api
            .call("admin", Method::PUT, "/v1/groups/g/policies/dev-permissive", None)
            .await;
        a.problem(409, "policy dev-permissive is built in and cannot be attached");
        let a = api
            .call("admin", Method::PUT, "/v1/groups/nope/policies/p", None)
            .await;
        a.problem(422, "group nope does not exist");
        let a = api
            .call("admin", Method::PUT, "/v1/services/nope/policies/p", None)
            .await;
        a.problem(404, "service not found");
        let a = api
            .call("admin", Method::PUT, "/v1/groups/g/policies/nope", None)
            .await;
        a.problem(404, "policy not found");
    });
}

#[test]
fn versions_are_kept_and_the_newest_applies() {
    let server = Server::start(NO_LIMITS);
    rt().block_on(async {
        let api = Api::new(&server);
        fleet(&server, &api).await;
        let v1 = document("lab", json!([allow(&["publish"], &["lab/${device.id}/#"])]));
        let v2 = document(
            "lab",
            json!([allow(&["publish"], &["plant/${device.id}/#"])]),
        );
        let a = api
            .call("admin", Method::POST, "/v1/policies", Some(v1.clone()))
            .await;
        assert_eq!(a.status, 201, "{}", a.text);
        assert_eq!(a.json["created"], true);
        assert_eq!(a.json["version"], 1);
        assert_eq!(a.json["document_version"], 1);
        assert_eq!(a.json["document"], v1);
        // The same document again stores nothing.
        let a = api
            .call("admin", Method::POST, "/v1/policies", Some(v1.clone()))
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(
            (a.json["created"].clone(), a.json["version"].clone()),
            (json!(false), json!(1))
        );
        let a = api
            .call("admin", Method::POST, "/v1/policies", Some(v2.clone()))
            .await;
        assert_eq!(a.status, 201, "{}", a.text);
        assert_eq!(a.json["version"], 2);

        let current = api.admin(Method::GET, "/v1/policies/lab", None).await;
        assert_eq!(current["document"], v2);
        assert_eq!(current["builtin"], false);
        let versions: Vec<u64> = current["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_u64().unwrap())
            .collect();
        assert_eq!(versions, [1, 2]);
        assert!(current["versions"][0]["created_by"]
            .as_str()
            .unwrap()
            .starts_with("operator:"));
        let old = api
            .admin(Method::GET, "/v1/policies/lab?version=1", None)
            .await;
        assert_eq!(
            (
                old["document"].clone(),
                old["document_version"].clone(),
                old["version"].clone()
            ),
            (v1.clone(), json!(1), json!(2))
        );
        let a = api
            .call("admin", Method::GET, "/v1/policies/lab?version=3", None)
            .await;
        a.problem(404, "policy version not found");
        let a = api
            .call("admin", Method::GET, "/v1/policies/nope", None)
            .await;
        a.problem(404, "policy not found");

        // The list: built-in policies flagged, then the stored ones.
        let list = api.admin(Method::GET, "/v1/policies", None).await;
        let rows: Vec<(String, Value, Value)> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["builtin"].clone(),
                    p["version"].clone(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("default-device".into(), json!(true), Value::Null),
                ("quarantine".into(), json!(true), Value::Null),
                ("dev-permissive".into(), json!(true), Value::Null),
                ("lab".into(), json!(false), json!(2)),
                ("p".into(), json!(false), json!(1)),
            ]
        );
        let builtin = api
            .admin(Method::GET, "/v1/policies/quarantine", None)
            .await;
        assert_eq!(builtin["builtin"], true);
        assert_eq!(builtin["document"]["name"], "quarantine");
        assert_eq!(builtin["versions"], json!([]));

        // Attached, the newest version is what the gateway compiles.
        api.admin(Method::PUT, "/v1/groups/g/policies/lab", None)
            .await;
        let d1 = json!({"device": "d1"});
        let r = api.decide(d1.clone(), "publish", "plant/d1/x").await;
        assert_eq!(r["decision"], "allow", "{r}");
        assert_eq!(r["statement"]["version"], 2, "{r}");
        let r = api.decide(d1.clone(), "publish", "lab/d1/x").await;
        assert_eq!(r["decision"], "deny", "{r}");
        api.admin(Method::POST, "/v1/policies", Some(v1)).await;
        let r = api.decide(d1, "publish", "lab/d1/x").await;
        assert_eq!(r["decision"], "allow", "{r}");
        assert_eq!(r["statement"]["version"], 3, "{r}");
    });
}

#[test]
fn attachments_change_what_the_gateway_decides() {
    let server = Server::start(NO_LIMITS);
    rt().block_on(async {
        let api = Api::new(&server);
        fleet(&server, &api).await;
        api.admin(
            Method::POST,
            "/v1/devices",
            Some(json!({"id": "d2", "group": "g"})),
        )
        .await;
        let lab = document(
            "lab",
            json!([
                allow(&["publish"], &["lab/${device.id}/#"]),
                deny(&["publish"], &["lab/${device.id}/secret"]),
                allow(&["subscribe", "receive"], &["rooms/${device.attr.room}/#"]),
            ]),
        );
        api.admin(Method::POST, "/v1/policies", Some(lab)).await;
        let d1 = json!({"device": "d1"});

        // Before: default-device only.
        let r = api.decide(d1.clone(), "publish", "lab/d1/x").await;
        assert_eq!(
            r,
            json!({
                "decision": "deny",
                "reason": "denied by default: no allow statement grants publish on \"lab/d1/x\"",
                "policies": [{"name": "default-device", "version": null, "builtin": true}],
            })
        );
        let r = api
            .decide(d1.clone(), "publish", "devices/d1/telemetry")
            .await;
        assert_eq!(r["decision"], "allow");
        assert_eq!(
            r["reason"],
            "allowed by statement 1 of policy default-device (built in)"
        );

        // Attached to the group: allowed by its statement 0, denied by 1.
        let summary = api
            .admin(Method::PUT, "/v1/groups/g/policies/lab", None)
            .await;
        assert_eq!(summary["attachments"], json!([{"group": "g"}]));
        let r = api.decide(d1.clone(), "publish", "lab/d1/x").await;
        assert_eq!(
            r,
            json!({
                "decision": "allow",
                "reason": "allowed by statement 0 of policy lab (version 1)",
                "statement": {"name": "lab", "version": 1, "builtin": false, "index": 0,
                              "effect": "allow", "actions": ["publish"],
                              "resources": ["lab/${device.id}/#"]},
                "policies": [{"name": "default-device", "version": null, "builtin": true},
                             {"name": "lab", "version": 1, "builtin": false}],
            })
        );
        let r = api.decide(d1.clone(), "publish", "lab/d1/secret").await;
        assert_eq!(r["decision"], "deny");
        assert_eq!(
            r["reason"],
            "denied by statement 1 of policy lab (version 1)"
        );
        assert_eq!(r["statement"]["effect"], "deny");
        let r = api.decide(d1.clone(), "publish", "lab/d2/x").await;
        assert_eq!(r["decision"], "deny", "another device's space");
        let r = api.decide(d1.clone(), "publish", "lab/+").await;
        assert_eq!(r["reason"], "\"lab/+\" is not a valid topic name");

        // The effective policy names both documents and the dropped allow.
        let e = api
            .admin(Method::GET, "/v1/devices/d1/effective-policy", None)
            .await;
        assert_eq!(e["subject"], json!({"device": "d1"}));
        assert_eq!(
            (
                e["state"].clone(),
                e["group"].clone(),
                e["may_connect"].clone()
            ),
            (json!("active"), json!("g"), json!(true))
        );
        let names: Vec<&str> = e["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["default-device", "lab"]);
        assert_eq!(
            e["documents"][1]["document"]["statements"][1]["effect"],
            "deny"
        );
        assert_eq!(
            e["notes"],
            json!([{"name": "lab", "version": 1, "builtin": false, "statement": 2,
                    "resource": 0, "template": "rooms/${device.attr.room}/#",
                    "kind": "allow_dropped"}])
        );
        // With the label set, the note goes and the subscription is granted.
        api.admin(
            Method::PATCH,
            "/v1/devices/d1",
            Some(json!({"labels": {"room": "r7"}})),
        )
        .await;
        let e = api
            .admin(Method::GET, "/v1/devices/d1/effective-policy", None)
            .await;
        assert_eq!(e["notes"], json!([]));
        let r = api.decide(d1.clone(), "subscribe", "rooms/r7/#").await;
        assert_eq!(r["decision"], "allow", "{r}");

        // Delete is refused while attached, and nothing changes.
        let before = api.snapshot().await;
        let a = api
            .call("admin", Method::DELETE, "/v1/policies/lab", None)
            .await;
        a.problem(409, "policy lab is attached to group g; detach it first");
        assert_eq!(api.snapshot().await, before);

        // Quarantined: the quarantine policy alone.
        api.admin(Method::POST, "/v1/devices/d1/quarantine", None)
            .await;
        let r = api.decide(d1.clone(), "publish", "lab/d1/x").await;
        assert_eq!(r["decision"], "deny");
        assert_eq!(
            r["policies"],
            json!([{"name": "quarantine", "version": null, "builtin": true}])
        );
        let r = api
            .decide(d1.clone(), "publish", "remediation/d1/report")
            .await;
        assert_eq!(r["decision"], "allow");
        api.admin(Method::POST, "/v1/devices/d1/release", None)
            .await;

        // A pending device may not connect at all.
        let r = api
            .decide(json!({"device": "d2"}), "publish", "devices/d2/x")
            .await;
        assert_eq!(r["decision"], "deny");
        assert_eq!(
            r["reason"],
            "device d2 is pending: it may not hold an MQTT session"
        );

        // Detached: back to the default; now it can be deleted.
        let summary = api
            .admin(Method::DELETE, "/v1/groups/g/policies/lab", None)
            .await;
        assert_eq!(summary["attachments"], json!([]));
        let r = api.decide(d1.clone(), "publish", "lab/d1/x").await;
        assert_eq!(r["decision"], "deny");
        let a = api
            .call("admin", Method::DELETE, "/v1/groups/g/policies/lab", None)
            .await;
        a.problem(404, "policy attachment not found");
        let a = api
            .call("admin", Method::DELETE, "/v1/policies/lab", None)
            .await;
        assert_eq!(a.status, 204, "{}", a.text);

        // Requests that name no one, or two, or nobody real.
        for (body, status, detail) in [
            (
                json!({"action": "publish", "topic": "a"}),
                400,
                "give exactly one of \"device\" and \"service\"",
            ),
            (
                json!({"device": "d1", "service": "s", "action": "publish", "topic": "a"}),
                400,
                "give exactly one of \"device\" and \"service\"",
            ),
            (
                json!({"device": "ghost", "action": "publish", "topic": "a"}),
                404,
                "device not found",
            ),
        ] {
            let a = api
                .call("admin", Method::POST, "/v1/policies/test", Some(body))
                .await;
            a.problem(status, detail);
        }
        let a = api
            .call(
                "admin",
                Method::POST,
                "/v1/policies/test",
                Some(json!({"device": "d1", "action": "fly", "topic": "a"})),
            )
            .await;
        assert_eq!(a.status, 422, "{}", a.text);

        // Every change is in the audit log.
        let log = api.admin(Method::GET, "/v1/audit?limit=10000", None).await;
        let kinds: Vec<&str> = log
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"]["type"].as_str().unwrap())
            .filter(|t| t.starts_with("policy_"))
            .collect();
        assert_eq!(
            kinds,
            [
                "policy_version_created",
                "policy_version_created",
                "policy_attached",
                "policy_detached",
                "policy_deleted"
            ]
        );
    });
}

/// `openssl req`: a P-256 key and a PEM CSR in `dir`.
fn openssl_csr(dir: &Path, name: &str) {
    run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-subj", "/CN=something-else", "-keyout"])
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(dir.join(format!("{name}.csr"))));
}

#[test]
fn services_with_a_password_and_with_a_certificate() {
    let server = Server::start(NO_LIMITS);
    rt().block_on(async {
        let api = Api::new(&server);
        fleet(&server, &api).await;

        // A password: shown once, stored only as an Argon2id hash.
        let created = api
            .admin(Method::POST, "/v1/services", Some(json!({"name": "billing", "password": true})))
            .await;
        let password = created["generated_password"].as_str().unwrap().to_owned();
        assert!(password.starts_with("bws_") && password.len() >= 47, "{password}");
        assert_eq!((created["name"].clone(), created["password"].clone(), created["policies"].clone()), (json!("billing"), json!(true), json!([])));
        let listed = api.call("admin", Method::GET, "/v1/services", None).await;
        assert!(!listed.text.contains(&password), "the password is shown only once");
        assert!(listed.json.as_array().unwrap().iter().all(|s| s.get("generated_password").is_none()));
        let a = api
            .call("admin", Method::POST, "/v1/services", Some(json!({"name": "billing"})))
            .await;
        a.problem(409, "service already exists");
        let db = rusqlite::Connection::open_with_flags(
            server.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let hash: String = db
            .query_row("SELECT password_hash FROM services WHERE name = 'billing'", [], |r| r.get(0))
            .unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(!hash.contains(&password));
        let parsed = PasswordHash::new(&hash).unwrap();
        let argon = argon2::Argon2::default();
        assert!(argon.verify_password(password.as_bytes(), &parsed).is_ok());
        assert!(argon.verify_password(b"bws_wrong", &parsed).is_err());
        let audited = api.admin(Method::GET, "/v1/audit?limit=10000", None).await;
        assert!(!audited.to_string().contains(&password));

        // No policy: a service may do nothing; attached policies apply alone.
        let svc = json!({"service": "billing"});
        let r = api.decide(svc.clone(), "subscribe", "devices/+/telemetry").await;
        assert_eq!(r["decision"], "deny");
        assert_eq!(
            r["reason"],
            "denied by default: not every topic \"devices/+/telemetry\" can match is granted for subscribe (no policy is attached to this service)"
        );
        let backend = document(
            "backend",
            json!([
                allow(&["connect"], &["billing"]),
                allow(&["subscribe", "receive"], &["devices/+/telemetry"]),
                allow(&["publish"], &["devices/${device.id}/commands/#"]),
            ]),
        );
        api.admin(Method::POST, "/v1/policies", Some(backend)).await;
        api.admin(Method::PUT, "/v1/services/billing/policies/backend", None)
            .await;
        let r = api.decide(svc.clone(), "subscribe", "devices/+/telemetry").await;
        assert_eq!(r["decision"], "allow", "{r}");
        assert_eq!(r["statement"]["index"], 1);
        let r = api.decide(svc.clone(), "connect", "billing").await;
        assert_eq!(r["decision"], "allow", "{r}");
        // `${device.id}` means nothing for a service: that allow grants nothing.
        let r = api.decide(svc.clone(), "publish", "devices/billing/commands/x").await;
        assert_eq!(r["decision"], "deny", "{r}");
        let e = api.admin(Method::GET, "/v1/services/billing/effective-policy", None).await;
        assert_eq!(e["subject"], json!({"service": "billing"}));
        assert!(e.get("state").is_none());
        assert_eq!(e["notes"][0]["kind"], "allow_dropped");
        let services = api.admin(Method::GET, "/v1/services", None).await;
        assert_eq!(services[0]["policies"], json!(["backend"]));

        // A certificate from an `openssl req` CSR: only its key is used.
        let dir = server.dir.path();
        openssl_csr(dir, "billing");
        let csr_text = std::fs::read_to_string(dir.join("billing.csr")).unwrap();
        let a = api
            .call("admin", Method::POST, "/v1/services/billing/certificate", Some(Value::String(csr_text.clone())))
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.content_type, "application/x-pem-file");
        let pem = a.body.clone();
        let cert_path = write(dir, "billing.pem", &pem);
        let text = run(Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-ext", "subjectAltName,extendedKeyUsage", "-in"])
            .arg(&cert_path));
        assert!(text.contains("CN=billing") || text.contains("CN = billing"), "{text}");
        assert!(text.contains("URI:urn:bulwark:service:billing"), "{text}");
        assert!(text.contains("TLS Web Client Authentication"), "{text}");
        assert!(!text.contains("something-else"), "{text}");
        let chain = server.client().ca_chain_pem().await.unwrap();
        let chain_path = write(dir, "chain.pem", chain);
        let verified = run(Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&chain_path)
            .arg(&cert_path));
        assert!(verified.contains(": OK"), "{verified}");
        let a = api
            .call("admin", Method::POST, "/v1/services/ghost/certificate", Some(Value::String(csr_text)))
            .await;
        a.problem(404, "service not found");
        let a = api
            .call("admin", Method::POST, "/v1/services/billing/certificate", Some(Value::String("junk".into())))
            .await;
        assert_eq!(a.status, 400, "{}", a.text);

        // Presented over TLS, the certificate identifies the service: EST
        // refuses it as a service, not as an unknown certificate.
        let key = std::fs::read_to_string(dir.join("billing.key")).unwrap();
        let mtls = server.client_with_identity(&pem, &key);
        let (_, der) = csr("x");
        let e = mtls.est_simplereenroll(&der).await.unwrap_err();
        let (status, detail) = common::problem(e);
        assert_eq!(status, 403);
        assert!(detail.starts_with("service billing may not enroll or renew over EST"), "{detail}");

        // Deleting the service revokes its certificate and detaches its policy.
        let deleted = api.admin(Method::DELETE, "/v1/services/billing", None).await;
        let revoked = deleted["revoked_certificates"].as_array().unwrap();
        assert_eq!(revoked.len(), 1);
        let cert = api
            .admin(Method::GET, &format!("/v1/certificates/{}", revoked[0].as_str().unwrap()), None)
            .await;
        assert_eq!((cert["kind"].clone(), cert["subject"].clone(), cert["revocation_reason"].clone()), (json!("service"), json!("billing"), json!("cessation_of_operation")));
        let policy = api.admin(Method::GET, "/v1/policies/backend", None).await;
        assert_eq!(policy["attachments"], json!([]));
        let (_, der) = csr("x");
        let e = server
            .client_with_identity(&pem, &key)
            .est_simplereenroll(&der)
            .await
            .unwrap_err();
        let (status, detail) = common::problem(e);
        assert_eq!(status, 401);
        assert!(detail.contains("revoked"), "{detail}");
        let a = api.call("admin", Method::DELETE, "/v1/services/billing", None).await;
        a.problem(404, "service not found");
    });
}

fn cli(out: std::process::Output) -> (Option<i32>, String, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_round_trips() {
    let server = Server::start(NO_LIMITS);
    let dir = server.dir.path().to_path_buf();
    rt().block_on(async {
        let api = Api::new(&server);
        fleet(&server, &api).await;
    });
    let s = |args: &[&str]| cli(server.cli(args));

    // JSON and TOML files.
    let json_file = write(
        &dir,
        "cli-p.json",
        document(
            "cli-p",
            json!([allow(&["publish"], &["cli/${device.id}/#"])]),
        )
        .to_string(),
    );
    let toml_file = write(
        &dir,
        "cli-t.toml",
        "version = 1\nname = \"cli-t\"\n\n[[statements]]\neffect = \"allow\"\n\
         actions = [\"subscribe\", \"receive\"]\nresources = [\"cli/${device.id}/in/#\"]\n",
    );
    let (code, out, err) = s(&["policy", "create", "--file", json_file.to_str().unwrap()]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (Some(0), "stored policy cli-p version 1\n", "")
    );
    let (code, out, _) = s(&["policy", "create", "--file", json_file.to_str().unwrap()]);
    assert_eq!(
        (code, out.as_str()),
        (
            Some(0),
            "policy cli-p unchanged: the document equals version 1\n"
        )
    );
    let (code, out, err) = s(&["policy", "create", "--file", toml_file.to_str().unwrap()]);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "stored policy cli-t version 1\n"),
        "{err}"
    );
    let bad = write(
        &dir,
        "bad.json",
        document(
            "bad",
            json!([allow(&["publish"], &["a"]), allow(&["jump"], &["a"])]),
        )
        .to_string(),
    );
    let (code, out, err) = s(&["policy", "create", "--file", bad.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(
        err.starts_with("error: Bad Request: policy refused: statement 1: unknown action \"jump\""),
        "{err}"
    );

    let (code, out, _) = s(&["policy", "list"]);
    assert_eq!(code, Some(0));
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "VERSION", "UPDATED", "ATTACHED", "TO"]);
    assert_eq!(
        lines[1],
        [
            "default-device",
            "built",
            "in",
            "-",
            "(built",
            "in,",
            "read-only)"
        ]
    );
    assert!(
        lines
            .iter()
            .any(|l| l[0] == "cli-p" && l[1] == "v1" && l[3] == "-"),
        "{out}"
    );
    let (code, out, _) = s(&["policy", "show", "cli-p"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("current:      v1\n"), "{out}");
    assert!(out.contains("\"cli/${device.id}/#\""), "{out}");
    let (code, out, _) = s(&[
        "policy",
        "show",
        "cli-p",
        "--version",
        "1",
        "--output",
        "json",
    ]);
    assert_eq!(code, Some(0));
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["document_version"], 1);

    // Attach, then `policy test`: exit 0 allowed, 2 denied.
    let (code, out, err) = s(&["policy", "attach", "cli-p", "--group", "g"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            Some(0),
            "attached policy cli-p to group g\npolicy cli-p is attached to: group g\n",
            ""
        )
    );
    let test = |topic: &str| {
        s(&[
            "policy", "test", "--device", "d1", "--action", "publish", "--topic", topic,
        ])
    };
    let (code, out, err) = test("cli/d1/x");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "allow: allowed by statement 0 of policy cli-p (version 1)\n\
         statement: cli-p (v1) #0: allow publish on cli/${device.id}/#\n\
         policies: default-device (built in), cli-p (v1)\n"
    );
    let (code, out, _) = test("cli/d2/x");
    assert_eq!(code, Some(2));
    assert!(
        out.starts_with(
            "deny: denied by default: no allow statement grants publish on \"cli/d2/x\"\n"
        ),
        "{out}"
    );
    let (code, out, _) = s(&[
        "policy", "test", "--device", "d1", "--action", "publish", "--topic", "cli/d2/x",
        "--output", "json",
    ]);
    assert_eq!(code, Some(2));
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["decision"],
        "deny"
    );
    let (code, _, err) = s(&[
        "policy", "test", "--device", "d1", "--action", "fly", "--topic", "a",
    ]);
    assert_eq!(code, Some(2), "a usage error is also 2, from clap");
    assert!(
        err.contains("one of connect, publish, subscribe, receive"),
        "{err}"
    );
    let (code, _, err) = s(&[
        "policy", "test", "--device", "ghost", "--action", "publish", "--topic", "a",
    ]);
    assert_eq!(code, Some(1), "an error is 1");
    assert!(err.contains("device not found"), "{err}");
    let (code, _, err) = s(&["policy", "attach", "cli-p"]);
    assert_eq!(code, Some(2), "a target is required: {err}");
    let (code, out, _) = s(&["policy", "effective", "--device", "d1"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("# cli-p (v1)\n"), "{out}");

    // Delete refused while attached; detach, then delete.
    let (code, _, err) = s(&["policy", "delete", "cli-p"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        "error: Conflict: policy cli-p is attached to group g; detach it first (HTTP 409)\n"
    );
    let (code, out, _) = s(&["policy", "detach", "cli-p", "--group", "g"]);
    assert_eq!(
        (code, out.as_str()),
        (
            Some(0),
            "detached policy cli-p from group g\npolicy cli-p is attached to: -\n"
        )
    );
    let (code, out, _) = s(&["policy", "delete", "cli-p"]);
    assert_eq!((code, out.as_str()), (Some(0), "deleted policy cli-p\n"));

    // Services: the password alone on stdout; a certificate to a file.
    let (code, pw, err) = s(&["service", "create", "backend", "--password"]);
    assert_eq!((code, err.as_str()), (Some(0), ""));
    assert_eq!(pw.lines().count(), 1);
    assert!(pw.starts_with("bws_"), "{pw}");
    let (code, out, _) = s(&["policy", "attach", "cli-t", "--service", "backend"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out, _) = s(&["service", "list"]);
    assert_eq!(code, Some(0));
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("backend"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!((row[1], row[3]), ("yes", "cli-t"), "{out}");
    let (code, out, _) = s(&[
        "policy",
        "test",
        "--service",
        "backend",
        "--action",
        "subscribe",
        "--topic",
        "cli/x/in/#",
    ]);
    assert_eq!(
        code,
        Some(2),
        "${{device.id}} means nothing for a service: {out}"
    );
    openssl_csr(&dir, "backend");
    let pem_out = dir.join("backend.pem");
    let (code, out, err) = s(&[
        "service",
        "cert",
        "backend",
        "--csr",
        dir.join("backend.csr").to_str().unwrap(),
        "--out",
        pem_out.to_str().unwrap(),
        "--ttl",
        "7d",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        format!(
            "certificate for service backend written to {}\n",
            pem_out.display()
        )
    );
    let enddate = run(Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-in"])
        .arg(&pem_out));
    assert!(enddate.starts_with("notAfter="), "{enddate}");
    let (code, out, _) = s(&["service", "delete", "backend"]);
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with("deleted service backend (certificates revoked: "),
        "{out}"
    );
    let (code, _, err) = s(&["service", "create", "x", "--password"]);
    assert_eq!(code, Some(0), "{err}");
    let operator = rt().block_on(async {
        let mut api = Api::new(&server);
        api.add_role("operator").await;
        api.tokens["operator"].clone()
    });
    let (code, out, err) = cli(server.cli_with_token(&operator, &["service", "delete", "x"]));
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert_eq!(
        err,
        "error: Forbidden: role operator may not manage service principals (HTTP 403)\n"
    );
}

#[test]
fn help_explains_the_commands() {
    for (args, mentions) in [
        (&["policy", "--help"][..], "attach"),
        (&["policy", "create", "--help"][..], ".toml"),
        (
            &["policy", "test", "--help"][..],
            "Exits 0 when allowed, 2 when denied",
        ),
        (&["service", "create", "--help"][..], "shown this once"),
        (&["service", "cert", "--help"][..], "urn:bulwark:service"),
    ] {
        let out = Command::new(common::bin()).args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(stdout.contains(mentions), "{args:?}: {stdout}");
    }
}
