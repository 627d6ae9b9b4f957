//! The reqwest transport against a small loopback HTTP server that serves
//! through [`Repository::resolve`] and honours `Range: bytes=N-`: metadata
//! loads, an artifact transfer cut midway resumes with a range request.
//! (TLS and client certificates are the caller's `reqwest::Client`
//! configuration; here the transport's loopback-HTTP allowance is used.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::HttpsTransport;

#[derive(Default)]
struct ServerState {
    cut_next_target: AtomicBool,
    ranges: Mutex<Vec<String>>,
}

async fn handle(
    mut conn: TcpStream,
    repo: &Repository,
    state: &ServerState,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let range = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("range: bytes=")
                .map(str::to_owned)
        })
        .and_then(|r| r.trim_end_matches('-').parse::<u64>().ok());
    let file = path.strip_prefix("/ota/").map(|rel| repo.resolve(rel));
    let Some(Ok(file)) = file else {
        return conn
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
    };
    let body = std::fs::read(file)?;
    let total = body.len() as u64;
    let (status, start) = match range {
        Some(start) if start < total => {
            state.ranges.lock().unwrap().push(format!("bytes={start}-"));
            ("206 Partial Content", start)
        }
        _ => ("200 OK", 0),
    };
    let rest = &body[start as usize..];
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n",
        rest.len()
    );
    if start > 0 {
        out.push_str(&format!(
            "content-range: bytes {start}-{}/{total}\r\n",
            total - 1
        ));
    }
    out.push_str("\r\n");
    conn.write_all(out.as_bytes()).await?;
    let is_target = path.starts_with("/ota/targets/");
    if is_target && state.cut_next_target.swap(false, Ordering::SeqCst) {
        // Drop the connection midway, as a flaky network would.
        conn.write_all(&rest[..rest.len() / 3]).await?;
        return conn.shutdown().await;
    }
    conn.write_all(rest).await?;
    conn.shutdown().await
}

async fn start_server(repo: Repository, state: Arc<ServerState>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let _ = handle(conn, &repo, &state).await;
        }
    });
    addr
}

#[tokio::test]
async fn metadata_and_a_resumed_artifact_over_http() {
    let fx = Fixture::new();
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    fx.add("fw.bin", &content, release(&["m1"], "1.0.0", None));
    let state = Arc::new(ServerState::default());
    let served = Repository::open(&fx.dir.path().join("ota"), Expiries::default()).unwrap();
    let addr = start_server(served, state.clone()).await;
    let meta: Url = format!("http://{addr}/ota/").parse().unwrap();
    let targets: Url = format!("http://{addr}/ota/targets/").parse().unwrap();

    let transport = HttpsTransport::new(reqwest::Client::new()).allow_loopback_http();
    let store = tempfile::tempdir().unwrap();
    let client = UpdateClient::load(
        &fx.root_v1(),
        &store.path().join("tuf"),
        meta.clone(),
        targets.clone(),
        transport.clone(),
    )
    .await
    .unwrap();
    let c = client.check(&name("fw.bin"), &device("m1", None)).unwrap();

    state.cut_next_target.store(true, Ordering::SeqCst);
    let dl = store.path().join("dl");
    let err = client.download(&c, &transport, &dl).await.unwrap_err();
    assert!(
        matches!(
            err,
            OtaError::Transport { .. } | OtaError::Incomplete { .. }
        ),
        "{err:?}"
    );
    let verified = client.download(&c, &transport, &dl).await.unwrap();
    assert_eq!(std::fs::read(verified.path()).unwrap(), content);
    let ranges = state.ranges.lock().unwrap().clone();
    assert_eq!(ranges, vec![format!("bytes={}-", content.len() / 3)]);

    // Plain HTTP is refused unless explicitly allowed for loopback.
    let strict = HttpsTransport::new(reqwest::Client::new());
    let err = UpdateClient::load(
        &fx.root_v1(),
        &store.path().join("tuf2"),
        meta,
        targets,
        strict,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OtaError::Transport { .. }), "{err:?}");
}
