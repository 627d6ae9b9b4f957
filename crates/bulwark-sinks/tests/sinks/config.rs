//! Configuration: the documented examples parse; mistakes are refused
//! before anything starts; secrets never show.

use bulwark_sinks::{Dispatcher, SinkConfig, SinkError};

use crate::common::sinks;

const EXAMPLES: &str = r#"
[[sinks]]
type = "webhook"
name = "soc"
url = "https://soc.example/hooks/bulwark"
secret = "change-me-to-32-random-bytes-hex"
min_severity = "medium"
ca_file = "/etc/bulwark/soc-ca.pem"
timeout_secs = 10
[sinks.retry]
max_attempts = 5
initial_backoff_ms = 500
max_backoff_ms = 30000

[[sinks]]
type = "syslog"
name = "siem"
address = "logs.example:6514"
transport = "tls"
ca_file = "/etc/bulwark/siem-ca.pem"
server_name = "logs.example"
format = "rfc5424"
facility = "auth"
app_name = "bulwark"
sd_id = "bulwark@32473"

[[sinks]]
type = "syslog"
name = "arcsight"
address = "127.0.0.1:514"
transport = "tcp"
format = "cef"
facility = "local4"

[[sinks]]
type = "jsonl"
path = "/var/log/bulwark/alerts.jsonl"
fsync = "always"

[[sinks]]
type = "jsonl"
name = "stdout"
path = "-"

[[sinks]]
type = "nats"
url = "nats://127.0.0.1:4222"
subject = "bulwark.alerts"
"#;

#[test]
fn documented_examples_parse() {
    let all = sinks(EXAMPLES);
    let kinds: Vec<&str> = all.iter().map(SinkConfig::kind).collect();
    assert_eq!(
        kinds,
        ["webhook", "syslog", "syslog", "jsonl", "jsonl", "nats"]
    );
}

#[test]
fn debug_never_shows_the_secret() {
    let all = sinks(EXAMPLES);
    let debug = format!("{:?}", all[0]);
    assert!(!debug.contains("change-me"), "{debug}");
    assert!(debug.contains("<redacted>"));
}

fn parse_err(toml_text: &str) -> String {
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct File {
        sinks: Vec<SinkConfig>,
    }
    toml::from_str::<File>(toml_text).unwrap_err().to_string()
}

#[test]
fn unknown_fields_and_types_are_refused() {
    let e = parse_err("[[sinks]]\ntype = \"jsonl\"\npath = \"x\"\nfsynk = \"always\"\n");
    assert!(e.contains("unknown field `fsynk`"), "{e}");
    let e = parse_err("[[sinks]]\ntype = \"kafka\"\n");
    assert!(e.contains("unknown variant `kafka`"), "{e}");
    let e = parse_err("[[sinks]]\ntype = \"nats\"\n[sinks.retry]\nattempts = 3\n");
    assert!(e.contains("unknown field `attempts`"), "{e}");
    let e = parse_err("[[sinks]]\ntype = \"jsonl\"\npath = \"x\"\nmin_severity = \"severe\"\n");
    assert!(e.contains("severe"), "{e}");
}

fn check_err(toml_text: &str) -> String {
    match SinkConfig::check(&sinks(toml_text)) {
        Err(e) => e.to_string(),
        Ok(()) => panic!("accepted: {toml_text}"),
    }
}

#[test]
fn mistakes_are_refused_before_start() {
    let hook = |url: &str, secret: &str| {
        format!("[[sinks]]\ntype = \"webhook\"\nurl = \"{url}\"\nsecret = \"{secret}\"\n")
    };
    let good = "0123456789abcdef";
    assert!(SinkConfig::check(&sinks(&hook("https://x.example/h", good))).is_ok());
    assert!(SinkConfig::check(&sinks(&hook("http://127.0.0.1:9/h", good))).is_ok());
    assert!(check_err(&hook("http://x.example/h", good)).contains("https://"));
    assert!(check_err(&hook("https://x.example/h", "short")).contains("at least 16 bytes"));
    assert!(check_err(&hook("https://u:p@x.example/h", good)).contains("credentials"));
    assert!(check_err(&hook("ftp://x.example/h", good)).contains("https://"));
    // A secret never appears in an error either.
    assert!(!check_err(&hook("https://x.example/h", "short")).contains("short"));

    let e = check_err("[[sinks]]\ntype = \"syslog\"\naddress = \"logs.example:6514\"\n");
    assert!(e.contains("needs ca_file"), "{e}");
    let e = check_err(
        "[[sinks]]\ntype = \"syslog\"\ntransport = \"tcp\"\naddress = \"logs.example\"\n",
    );
    assert!(e.contains("host:port"), "{e}");
    let e = check_err(
        "[[sinks]]\ntype = \"syslog\"\ntransport = \"tcp\"\naddress = \"l:514\"\nhostname = \"a b\"\n",
    );
    assert!(e.contains("hostname"), "{e}");
    let e = check_err(
        "[[sinks]]\ntype = \"syslog\"\ntransport = \"tcp\"\naddress = \"l:514\"\nsd_id = \"bulwark\"\n",
    );
    assert!(e.contains("sd_id"), "{e}");
    let e = check_err(
        "[[sinks]]\ntype = \"syslog\"\naddress = \"l:6514\"\nca_file = \"/nonexistent/ca.pem\"\n",
    );
    assert!(e.contains("cannot read /nonexistent/ca.pem"), "{e}");

    let e = check_err("[[sinks]]\ntype = \"nats\"\nsubject = \"bulwark.>\"\n");
    assert!(e.contains("wildcards"), "{e}");
    let e = check_err("[[sinks]]\ntype = \"jsonl\"\npath = \"/nonexistent/dir/a.jsonl\"\n");
    assert!(e.contains("not a directory"), "{e}");
    let e = check_err(
        "[[sinks]]\ntype = \"jsonl\"\nname = \"a\"\npath = \"-\"\n[[sinks]]\ntype = \"jsonl\"\nname = \"a\"\npath = \"-\"\n",
    );
    assert!(e.contains("same name"), "{e}");
    let e = check_err("[[sinks]]\ntype = \"jsonl\"\npath = \"-\"\nqueue_capacity = 0\n");
    assert!(e.contains("queue_capacity"), "{e}");
    let e =
        check_err("[[sinks]]\ntype = \"jsonl\"\npath = \"-\"\n[sinks.retry]\nmax_attempts = 0\n");
    assert!(e.contains("max_attempts"), "{e}");
}

#[test]
fn start_outside_a_runtime_is_an_error() {
    let r = Dispatcher::start(sinks("[[sinks]]\ntype = \"jsonl\"\npath = \"-\"\n"));
    assert!(matches!(r, Err(SinkError::Config { .. })));
}
