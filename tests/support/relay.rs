//! A TCP relay on loopback that can be cut and healed: what stands between
//! one daemon and its NATS server when a test cuts that host off (a
//! network partition, made with real sockets; nothing is simulated above
//! TCP).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Relay {
    port: u16,
    target: SocketAddr,
    accept: Option<JoinHandle<()>>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    /// Relay a new loopback port to `target`.
    pub async fn start(target: SocketAddr) -> Relay {
        let mut relay = Relay {
            port: super::quiet_port(),
            target,
            accept: None,
            links: Arc::default(),
        };
        relay.heal().await;
        relay
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Drop every connection and refuse new ones.
    pub fn cut(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Accept and relay connections again, on the same port.
    pub async fn heal(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the relay's port");
        let (target, links) = (self.target, self.links.clone());
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                links.lock().unwrap().push(link);
            }
        }));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}
