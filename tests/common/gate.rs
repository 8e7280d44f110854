//! A TCP relay from the gateway to the broker that can turn new connections away, so that the
//! test, not a race, decides when the gateway may reconnect.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What went through the gate so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Connections being relayed now.
    pub connections: usize,
    /// Connections turned away while the gate was closed.
    pub refused: usize,
}

pub struct Gate {
    port: u16,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    open: AtomicBool,
    traffic: watch::Sender<Traffic>,
}

impl Gate {
    pub async fn start(broker_port: u16) -> Gate {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            open: AtomicBool::new(true),
            traffic: watch::Sender::new(Traffic::default()),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if !accepting.open.load(Ordering::SeqCst) {
                    // Closed at once: the gateway sees the connection fail and backs off.
                    accepting.traffic.send_modify(|t| t.refused += 1);
                    continue;
                }
                tokio::spawn(relay(client, broker_port, accepting.clone()));
            }
        });
        Gate { port, shared, task }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Closed, the gate turns new connections away; connections being relayed go on.
    pub fn set_open(&self, open: bool) {
        self.shared.open.store(open, Ordering::SeqCst);
    }

    pub fn traffic(&self) -> Traffic {
        *self.shared.traffic.borrow()
    }

    /// Waits until the traffic satisfies `cond`; panics after `timeout`, saying `what` was
    /// awaited.
    pub async fn wait_for(&self, what: &str, timeout: Duration, cond: impl Fn(&Traffic) -> bool) {
        let mut traffic = self.shared.traffic.subscribe();
        if tokio::time::timeout(timeout, traffic.wait_for(cond))
            .await
            .is_err()
        {
            panic!(
                "not within {timeout:?}: {what}; traffic through the gate: {:?}",
                self.traffic()
            );
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(mut client: TcpStream, broker_port: u16, shared: Arc<Shared>) {
    let Ok(mut broker) = TcpStream::connect((Ipv4Addr::LOCALHOST, broker_port)).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = broker.set_nodelay(true);
    shared.traffic.send_modify(|t| t.connections += 1);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
    shared.traffic.send_modify(|t| t.connections -= 1);
}
