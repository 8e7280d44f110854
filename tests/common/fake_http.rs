//! An HTTP server that answers every request with whatever reply the test set last: for
//! feeding clients bodies, statuses and headers no well-behaved server would send.

#![allow(dead_code)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// A 200 with this body (served as `application/json`, whatever it holds).
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
        }
    }
}

pub struct FakeHttp {
    addr: SocketAddr,
    reply: Arc<Mutex<Reply>>,
    requests: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl FakeHttp {
    /// Listens on a free loopback port; answers `200 {}` until told otherwise. Needs a tokio
    /// runtime, which must outlive the server.
    pub async fn start() -> FakeHttp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reply = Arc::new(Mutex::new(Reply::ok("{}")));
        let requests = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (r, n, h) = (reply.clone(), requests.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (r, n, h) = (r.clone(), n.clone(), h.clone());
                tokio::spawn(async move {
                    let _ = answer(sock, r, n, h).await;
                });
            }
        });
        FakeHttp {
            addr,
            reply,
            requests,
            heads,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What every request gets from now on.
    pub fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap_or_else(|p| p.into_inner()) = reply;
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// The request line and headers of each request so far, lowercased, oldest first.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Reads one request (head and body), writes the reply and closes the connection.
async fn answer(
    mut sock: tokio::net::TcpStream,
    reply: Arc<Mutex<Reply>>,
    requests: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    // Unread request bytes would make the close a reset, which the client sees as an error.
    while buf.len() < head_end + length {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    heads.lock().unwrap_or_else(|p| p.into_inner()).push(head);
    requests.fetch_add(1, Ordering::Relaxed);
    let reply = reply.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut out = format!(
        "HTTP/1.1 {} Fake\r\ncontent-length: {}\r\nconnection: close\r\ncontent-type: application/json\r\n",
        reply.status,
        reply.body.len()
    )
    .into_bytes();
    for (k, v) in &reply.headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&reply.body);
    sock.write_all(&out).await?;
    sock.shutdown().await
}
