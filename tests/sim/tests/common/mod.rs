#![allow(dead_code)]

use std::time::Duration;

use toopher_api::{AuthenticationRequest, ToopherApi};
use toopher_sim::{SimHandle, SimOptions, Simulator};

/// An HTTPS simulator and a client that trusts its CA.
pub async fn https() -> (SimHandle, ToopherApi) {
    let sim = Simulator::start(SimOptions::default())
        .await
        .expect("start sim");
    let api = client(&sim).build().expect("client");
    (sim, api)
}

pub fn client(sim: &SimHandle) -> toopher_api::ToopherApiBuilder {
    let mut b = ToopherApi::builder(sim.consumer_key(), sim.consumer_secret())
        .base_url(sim.base_url())
        .timeout(Duration::from_secs(5))
        .user_agent("toopher_sim-tests/0.1");
    if let Some(ca) = sim.ca_file() {
        b = b.ca_file(ca);
    } else {
        b = b.allow_http(true);
    }
    b
}

/// Polls until the request is settled (at most `secs`).
pub async fn poll(
    api: &ToopherApi,
    mut r: AuthenticationRequest,
    secs: u64,
) -> AuthenticationRequest {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while r.pending {
        assert!(
            tokio::time::Instant::now() < deadline,
            "request still pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        r.refresh_from_server(api).await.expect("refresh");
    }
    r
}

/// A raw HTTP/1.1 request to a plain-HTTP simulator's control interface.
pub async fn control(
    sim: &SimHandle,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(sim.addr())
        .await
        .expect("connect");
    let req = format!(
        "{method} /_sim{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        sim.addr(),
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}
