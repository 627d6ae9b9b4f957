//! Syslog over TCP against a real listener that reads octet-counted frames
//! and parses RFC 5424 (and CEF) the way a collector does.

use std::time::Duration;

use bulwark_sinks::{Dispatcher, Notice};
use bulwark_types::Severity;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::common::{action_notice, alert, eventually, sinks, FAST_RETRY};

/// Reads one `LEN SP MSG` frame; `None` at a clean end of stream.
pub async fn read_frame(s: &mut (impl AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let mut len = 0usize;
    let mut digits = 0;
    loop {
        let b = match s.read_u8().await {
            Ok(b) => b,
            Err(_) if digits == 0 => return None,
            Err(e) => panic!("frame cut short: {e}"),
        };
        match b {
            b'0'..=b'9' if digits < 6 => {
                len = len * 10 + usize::from(b - b'0');
                digits += 1;
            }
            b' ' if digits > 0 => break,
            other => panic!("bad frame byte {other:#x}"),
        }
    }
    let mut msg = vec![0; len];
    s.read_exact(&mut msg).await.unwrap();
    Some(msg)
}

/// A parsed RFC 5424 message.
#[derive(Debug)]
pub struct Parsed {
    pub pri: u8,
    pub version: String,
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    pub sd_id: String,
    pub params: Vec<(String, String)>,
    pub msg: Vec<u8>,
}

impl Parsed {
    pub fn param(&self, name: &str) -> &str {
        &self.params.iter().find(|(n, _)| n == name).unwrap().1
    }
}

/// Parses one RFC 5424 message with a single SD-ELEMENT, unescaping the
/// PARAM-VALUEs.
pub fn parse_5424(m: &[u8]) -> Parsed {
    let text = std::str::from_utf8(m).unwrap();
    let close = text.find('>').unwrap();
    assert!(text.starts_with('<'));
    let pri: u8 = text[1..close].parse().unwrap();
    let mut fields = text[close + 1..].splitn(7, ' ');
    let mut next = || fields.next().unwrap().to_owned();
    let (version, timestamp, hostname, app_name, procid, msgid) =
        (next(), next(), next(), next(), next(), next());
    let rest = next();
    for f in [&hostname, &app_name, &procid, &msgid] {
        assert!(f.bytes().all(|b| (33..=126).contains(&b)), "{f:?}");
    }
    let b = rest.as_bytes();
    assert_eq!(b[0], b'[', "structured data expected: {rest}");
    let mut i = 1;
    while b[i] != b' ' && b[i] != b']' {
        i += 1;
    }
    let sd_id = rest[1..i].to_owned();
    let mut params = Vec::new();
    while b[i] == b' ' {
        let eq = i + rest[i..].find('=').unwrap();
        let name = rest[i + 1..eq].to_owned();
        assert_eq!(b[eq + 1], b'"');
        let mut j = eq + 2;
        let mut value = Vec::new();
        loop {
            match b[j] {
                b'\\' if matches!(b[j + 1], b'"' | b'\\' | b']') => {
                    value.push(b[j + 1]);
                    j += 2;
                }
                b'"' => break,
                c => {
                    value.push(c);
                    j += 1;
                }
            }
        }
        params.push((name, String::from_utf8(value).unwrap()));
        i = j + 1;
    }
    assert_eq!(b[i], b']');
    assert_eq!(b[i + 1], b' ');
    Parsed {
        pri,
        version,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        sd_id,
        params,
        msg: b[i + 2..].to_vec(),
    }
}

/// A collector: every frame of every connection, tagged with the
/// connection's number. Each connection is closed after `per_conn` frames.
async fn collector(per_conn: usize) -> (String, mpsc::UnboundedReceiver<(usize, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for conn in 0.. {
            let (mut s, _) = listener.accept().await.unwrap();
            for _ in 0..per_conn {
                match read_frame(&mut s).await {
                    Some(f) => tx.send((conn, f)).unwrap(),
                    None => break,
                }
            }
        }
    });
    (addr, rx)
}

async fn frame(rx: &mut mpsc::UnboundedReceiver<(usize, Vec<u8>)>) -> (usize, Vec<u8>) {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap()
}

fn tcp_sink(addr: &str, extra: &str) -> Dispatcher {
    Dispatcher::start(sinks(&format!(
        "[[sinks]]\ntype = \"syslog\"\ntransport = \"tcp\"\naddress = \"{addr}\"\n\
         hostname = \"bulwark-test\"\n{extra}\n[sinks.retry]\n{FAST_RETRY}"
    )))
    .unwrap()
}

#[tokio::test]
async fn rfc5424_over_tcp_with_hostile_values() {
    let (addr, mut rx) = collector(100).await;
    let d = tcp_sink(&addr, "facility = \"local0\"");
    let mut a = alert(Severity::Critical);
    a.title = "title with \"quotes\", ] and \\ backslash".to_owned();
    a.entity = "source:\"x\"] [evil@1 y=\"z\"".to_owned();
    a.detector = "rule:a\\\"]b".to_owned();
    d.dispatch(Notice::Alert(a.clone()));
    d.dispatch(action_notice());

    let (_, f) = frame(&mut rx).await;
    let p = parse_5424(&f);
    assert_eq!(p.pri, 16 * 8 + 2, "local0.crit");
    assert_eq!(p.version, "1");
    assert_eq!(p.timestamp, "2026-01-02T03:04:05.500000Z");
    assert_eq!(p.hostname, "bulwark-test");
    assert_eq!(p.app_name, "bulwark");
    assert_eq!(p.procid, std::process::id().to_string());
    assert_eq!(p.msgid, "alert.opened");
    assert_eq!(p.sd_id, "bulwark@32473");
    // The hostile values come back intact, each inside its own parameter.
    assert_eq!(p.param("entity"), a.entity);
    assert_eq!(p.param("detector"), a.detector);
    assert_eq!(p.param("device"), "dev-1");
    assert_eq!(p.param("alert"), "42");
    assert_eq!(p.param("severity"), "critical");
    assert_eq!(p.params.len(), 8);
    assert!(p.msg.starts_with(b"\xEF\xBB\xBF"), "BOM");
    assert_eq!(&p.msg[3..], a.title.as_bytes());

    let (_, f) = frame(&mut rx).await;
    let p = parse_5424(&f);
    assert_eq!(p.pri, 16 * 8 + 3, "local0.err");
    assert_eq!(p.msgid, "action.applied");
    assert_eq!(p.param("action"), "restrict");
    assert_eq!(p.param("action_state"), "applied");
    assert_eq!(&p.msg[3..], b"restrict applied: Repeated auth failures");
    eventually(&d, "two deliveries", |s| s.delivered == 2).await;
}

#[tokio::test]
async fn cef_over_tcp() {
    let (addr, mut rx) = collector(100).await;
    let d = tcp_sink(&addr, "format = \"cef\"");
    d.dispatch(crate::common::notice(Severity::Medium));
    let (_, f) = frame(&mut rx).await;
    let text = String::from_utf8(f).unwrap();
    let (head, cef) = text.split_once(" - CEF:").unwrap();
    assert!(head.starts_with("<36>1 2026-01-02T03:04:05.500000Z bulwark-test bulwark "));
    assert!(head.ends_with(" alert.opened"));
    assert!(cef.starts_with(&format!(
        "0|Bulwark|Bulwark|{}|rule:auth_fail|Repeated auth failures|5|rt=1767323045500 ",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(cef.contains(" externalId=42 "));
    assert!(cef.contains(" cs1Label=device cs1=dev-1 "));
}

#[tokio::test]
async fn reconnects_after_the_collector_hangs_up() {
    // The collector closes each connection after one frame.
    let (addr, mut rx) = collector(1).await;
    let d = tcp_sink(&addr, "");
    d.dispatch(crate::common::notice(Severity::High));
    assert_eq!(frame(&mut rx).await.0, 0);
    eventually(&d, "first delivery", |s| s.delivered == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    d.dispatch(crate::common::notice(Severity::High));
    assert_eq!(
        frame(&mut rx).await.0,
        1,
        "second frame on a new connection"
    );
    eventually(&d, "second delivery", |s| s.delivered == 2).await;
}

#[tokio::test]
async fn unreachable_collector_counts_failures() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let d = tcp_sink(&format!("127.0.0.1:{port}"), "");
    d.dispatch(crate::common::notice(Severity::High));
    let s = eventually(&d, "giving up", |s| s.gave_up == 1).await;
    assert_eq!((s.delivered, s.failed_attempts), (0, 4));
    assert!(s.last_error.unwrap().contains("cannot connect"));
}
