//! Configuration: defaults, TOML, validation.

use crate::{ConfigError, DetectConfig, Engine, Metric, Op, Scope, Severity};

#[derive(serde::Deserialize)]
struct ServerConfig {
    detect: DetectConfig,
}

#[test]
fn default_config_is_valid_and_has_the_builtin_rules() {
    let cfg = DetectConfig::default();
    let names: Vec<&str> = cfg.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "flood",
            "credential-stuffing",
            "topic-scan",
            "exfiltration",
            "connect-churn"
        ]
    );
    assert!(Engine::new(cfg).is_ok());
}

#[test]
fn toml_overrides_keep_the_other_defaults() {
    let text = r#"
        [detect]
        window_ms = 2000
        max_entities = 1000
        [detect.forest]
        trees = 100
        [[detect.rules]]
        name = "chatty"
        metric = "msgs_out"
        op = ">="
        threshold = 50
        over_ms = 4000
        scope = "group"
        severity = "low"
    "#;
    let parsed: ServerConfig = match toml::from_str(text) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let cfg = parsed.detect;
    assert_eq!(cfg.window_ms, 2000);
    assert_eq!(cfg.forest.trees, 100);
    assert_eq!(cfg.forest.sample_size, 256);
    assert_eq!(cfg.baseline.threshold, 6.0);
    assert_eq!(cfg.rules.len(), 1);
    let r = &cfg.rules[0];
    assert_eq!(
        (r.metric, r.op, r.scope),
        (Metric::MsgsOut, Op::Ge, Scope::Group)
    );
    assert_eq!(r.severity, Severity::Low);
    assert_eq!(r.consecutive, 1);
    assert!(r.enabled);
    assert!(Engine::new(cfg).is_ok());
}

#[test]
fn unknown_keys_and_metrics_are_refused() {
    assert!(toml::from_str::<ServerConfig>("[detect]\nwindow = 5").is_err());
    let bad_metric = "[[detect.rules]]\nname='x'\nmetric='cpu'\nop='>'\nthreshold=1";
    assert!(toml::from_str::<ServerConfig>(bad_metric).is_err());
}

#[test]
fn invalid_values_are_refused() {
    let check = |edit: &dyn Fn(&mut DetectConfig), want: &str| {
        let mut cfg = DetectConfig::default();
        edit(&mut cfg);
        match Engine::new(cfg) {
            Ok(_) => panic!("accepted, wanted {want}"),
            Err(e) => assert!(e.to_string().contains(want), "{e} does not name {want}"),
        }
    };
    check(&|c| c.window_ms = 0, "window_ms");
    check(&|c| c.max_entities = 0, "max_entities");
    check(&|c| c.forest.threshold = 1.5, "forest.threshold");
    check(&|c| c.forest.reservoir = 10, "forest.reservoir");
    check(&|c| c.baseline.rate = 0.0, "baseline.rate");
    check(&|c| c.novelty.cap = 0, "novelty.cap");
    check(&|c| c.rules[0].threshold = f64::NAN, "finite");
    check(&|c| c.rules[1].name = "flood".into(), "duplicate");
    check(&|c| c.rules[0].name = "has space".into(), "name");
    check(&|c| c.rules[0].consecutive = 0, "consecutive");
    check(&|c| c.rules[0].over_ms = Some(10_000_000), "1024 windows");
    let e = ConfigError::Rule {
        name: "x".into(),
        reason: "bad".into(),
    };
    assert_eq!(e.to_string(), "detect.rules: rule \"x\": bad");
}
