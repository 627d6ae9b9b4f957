//! Document validation: what is refused, and that every refusal names where
//! (statement and resource index) and why. Also JSON/TOML round trips.

use bulwark_policy::{default_device_policy, limits, PolicyDocument, PolicyError};

/// `Ok(())` expects a valid document; `Err(text)` expects a refusal whose
/// message is exactly `text`.
fn check(json: &str, expect: Result<(), &str>) {
    let got = PolicyDocument::from_json(json);
    match (&got, expect) {
        (Ok(doc), Ok(())) => {
            let back = PolicyDocument::from_json(&doc.to_json()).unwrap();
            assert_eq!(&back, doc, "round trip of {json}");
        }
        (Err(e), Err(msg)) => assert_eq!(e.to_string(), msg, "{json}"),
        _ => panic!("{json}: got {got:?}, expected {expect:?}"),
    }
}

fn doc(statements: &str) -> String {
    format!(r#"{{"version":1,"name":"p","statements":[{statements}]}}"#)
}

fn stmt(effect: &str, actions: &str, resources: &str) -> String {
    format!(r#"{{"effect":"{effect}","actions":[{actions}],"resources":[{resources}]}}"#)
}

#[test]
fn documents() {
    let ok = stmt("allow", r#""publish""#, r#""a/b""#);
    check(&doc(&ok), Ok(()));
    check(
        &doc(&stmt(
            "deny",
            r#""connect","publish","subscribe","receive","publish""#,
            r#""devices/${device.id}/#","x/+/${device.attr.z}-y""#,
        )),
        Ok(()),
    );
    check(
        &format!(r#"{{"version":2,"name":"p","statements":[{ok}]}}"#),
        Err("unsupported policy version 2 (expected 1)"),
    );
    check(
        &format!(r#"{{"version":1,"name":"","statements":[{ok}]}}"#),
        Err("policy name must not be empty"),
    );
    check(
        &format!(r#"{{"version":1,"name":"a\nb","statements":[{ok}]}}"#),
        Err("policy name must not contain control characters"),
    );
    check(&doc(""), Err("a policy needs at least one statement"));
    check(
        &doc(&format!(
            "{ok},{}",
            stmt("permit", r#""publish""#, r#""a""#)
        )),
        Err(r#"statement 1: unknown effect "permit" (expected "allow" or "deny")"#),
    );
    check(
        &doc(&format!(
            "{ok},{ok},{}",
            stmt("allow", r#""publish","write""#, r#""a""#)
        )),
        Err(
            r#"statement 2: unknown action "write" (expected connect, publish, subscribe or receive)"#,
        ),
    );
    check(
        &doc(&stmt("allow", r#""Publish""#, r#""a""#)),
        Err(
            r#"statement 0: unknown action "Publish" (expected connect, publish, subscribe or receive)"#,
        ),
    );
    check(
        &doc(&stmt("allow", "", r#""a""#)),
        Err("statement 0: no actions"),
    );
    check(
        &doc(&stmt("allow", r#""publish""#, "")),
        Err("statement 0: no resources"),
    );
    check(
        &doc(&format!(
            "{ok},{}",
            stmt("allow", r#""publish""#, r#""a","b/#/c""#)
        )),
        Err("statement 1, resource 1: '#' must be the last topic level"),
    );
    check(
        &doc(&stmt("allow", r#""publish""#, r#""a/b+""#)),
        Err("statement 0, resource 0: '+' and '#' must each occupy a whole topic level"),
    );
    check(
        &doc(&stmt("allow", r#""publish""#, r#""a/${device.name}""#)),
        Err("statement 0, resource 0: unknown variable \"${device.name}\" (expected device.id, device.group or device.attr.NAME with NAME of letters, digits, '_' or '-')"),
    );
    check(
        &doc(&stmt("allow", r#""publish""#, r#""a/${device.id""#)),
        Err("statement 0, resource 0: unterminated \"${\" variable"),
    );
    check(
        &doc(&stmt("allow", r#""publish""#, r#""""#)),
        Err("statement 0, resource 0: empty topic filter"),
    );
    check(
        &doc(&stmt("allow", r#""publish""#, r#""a\u0000""#)),
        Err("statement 0, resource 0: topic filter contains NUL"),
    );
    check(
        &doc(&stmt("allow", r#""subscribe""#, r#""$share/g/a""#)),
        Err("statement 0, resource 0: '$share/' filters are not resources; name the topic filter itself"),
    );
}

#[test]
fn unknown_fields_and_types_are_refused() {
    for json in [
        r#"{"version":1,"name":"p","statements":[],"extra":1}"#,
        r#"{"version":1,"name":"p","statements":[{"effect":"allow","actions":["publish"],"resources":["a"],"condition":{}}]}"#,
        r#"{"version":1,"name":"p"}"#,
        r#"{"version":"1","name":"p","statements":[]}"#,
        r#"{"version":1,"name":"p","statements":[{"effect":"allow","actions":"publish","resources":["a"]}]}"#,
        r#"[]"#,
        "",
        "{",
    ] {
        let err = PolicyDocument::from_json(json).unwrap_err();
        assert!(matches!(err, PolicyError::Malformed(_)), "{json}: {err}");
        assert!(std::error::Error::source(&err).is_some());
    }
}

#[test]
fn limits_are_enforced() {
    let ok = stmt("allow", r#""publish""#, r#""a""#);
    let many = vec![ok.as_str(); limits::MAX_STATEMENTS + 1].join(",");
    check(&doc(&many), Err("too many statements (at most 256)"));
    let many = vec![ok.as_str(); limits::MAX_STATEMENTS].join(",");
    check(&doc(&many), Ok(()));

    let resources = vec![r#""a""#; limits::MAX_RESOURCES + 1].join(",");
    check(
        &doc(&stmt("allow", r#""publish""#, &resources)),
        Err("statement 0: too many resources (at most 64)"),
    );
    let actions = vec![r#""publish""#; limits::MAX_ACTIONS + 1].join(",");
    check(
        &doc(&stmt("allow", &actions, r#""a""#)),
        Err("statement 0: too many actions (at most 16)"),
    );
    let long = format!(r#""{}""#, "a".repeat(limits::MAX_RESOURCE_LEN + 1));
    check(
        &doc(&stmt("allow", r#""publish""#, &long)),
        Err("statement 0, resource 0: topic filter longer than 1024 bytes"),
    );
    let deep = format!(r#""{}""#, vec!["a"; limits::MAX_LEVELS + 1].join("/"));
    check(
        &doc(&stmt("allow", r#""publish""#, &deep)),
        Err("statement 0, resource 0: topic filter deeper than 32 levels"),
    );
    let name = "n".repeat(limits::MAX_NAME_LEN + 1);
    check(
        &format!(r#"{{"version":1,"name":"{name}","statements":[{ok}]}}"#),
        Err("policy name is longer than 128 bytes"),
    );
}

#[test]
fn error_excerpts_are_bounded() {
    let action = format!(r#""{}""#, "w".repeat(10_000));
    let err = PolicyDocument::from_json(&doc(&stmt("allow", &action, r#""a""#))).unwrap_err();
    assert!(err.to_string().len() < 200, "{err}");
}

#[test]
fn toml_shaped_documents() {
    let text = r#"
        version = 1
        name = "telemetry"

        [[statements]]
        effect = "allow"
        actions = ["publish"]
        resources = ["devices/${device.id}/#"]

        [[statements]]
        effect = "deny"
        actions = ["publish"]
        resources = ["devices/${device.id}/admin"]
    "#;
    let doc: PolicyDocument = toml::from_str(text).unwrap();
    assert_eq!(doc.name(), "telemetry");
    assert_eq!(doc.statements().len(), 2);

    let bad = text.replace(
        "\"publish\"]\n        resources = [\"devices/${device.id}/admin\"]",
        "\"write\"]\n        resources = [\"x\"]",
    );
    let err = toml::from_str::<PolicyDocument>(&bad).unwrap_err();
    assert!(
        err.to_string()
            .contains("statement 1: unknown action \"write\""),
        "{err}"
    );

    let extra = format!("{text}\n        owner = \"me\"\n");
    assert!(toml::from_str::<PolicyDocument>(&extra).is_err());
}

#[test]
fn serde_goes_through_validation() {
    let json = doc(&stmt("allow", r#""publish""#, r#""a/#/b""#));
    assert!(serde_json::from_str::<PolicyDocument>(&json).is_err());
    let builtin = default_device_policy();
    let value = serde_json::to_value(&builtin).unwrap();
    assert_eq!(value["version"], 1);
    assert_eq!(
        value["statements"][1]["resources"][0],
        "devices/${device.id}/#"
    );
    assert_eq!(
        serde_json::from_value::<PolicyDocument>(value).unwrap(),
        builtin
    );
}
