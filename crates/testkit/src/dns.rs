//! A real DNS server for tests: Pebble's `pebble-challtestsrv` (Debian
//! `pebble`), on free loopback ports, with its management API to set the
//! records a test needs. Names without records answer `127.0.0.2` (where
//! nothing of a test listens), so only names a test points at the edge
//! reach it.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct FakeDns {
    child: Child,
    /// Where it answers DNS (UDP and TCP).
    pub addr: SocketAddr,
    management: SocketAddr,
    http: reqwest::Client,
}

/// A loopback port free for both TCP and UDP (a moment ago).
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        let port = udp.local_addr().expect("address").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl FakeDns {
    pub async fn start() -> FakeDns {
        let (dns, management) = (free_port(), free_port());
        let child = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns}"), "-management", &format!("127.0.0.1:{management}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv4", "127.0.0.2", "-defaultIPv6", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv runs (Debian package `pebble`; `cargo xtask setup` installs it)");
        let fake = FakeDns {
            child,
            addr: ([127, 0, 0, 1], dns).into(),
            management: ([127, 0, 0, 1], management).into(),
            http: crate::client(),
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(fake.management).await.is_ok()
                && tokio::net::TcpStream::connect(fake.addr).await.is_ok()
            {
                return fake;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("pebble-challtestsrv did not start on {} / {}", fake.addr, fake.management);
    }

    async fn manage(&self, path: &str, body: serde_json::Value) {
        let resp = self
            .http
            .post(format!("http://{}{path}", self.management))
            .json(&body)
            .send()
            .await
            .expect("challtestsrv management answers");
        assert!(resp.status().is_success(), "challtestsrv {path}: {}", resp.status());
    }

    /// `host` (no trailing dot needed) answers TXT `value`.
    pub async fn set_txt(&self, host: &str, value: &str) {
        self.manage("/set-txt", serde_json::json!({ "host": fqdn(host), "value": value })).await;
    }

    pub async fn clear_txt(&self, host: &str) {
        self.manage("/clear-txt", serde_json::json!({ "host": fqdn(host) })).await;
    }

    /// `host` answers A with `addresses`.
    pub async fn set_a(&self, host: &str, addresses: &[&str]) {
        self.manage("/add-a", serde_json::json!({ "host": fqdn(host), "addresses": addresses })).await;
    }
}

fn fqdn(host: &str) -> String {
    format!("{}.", host.trim_end_matches('.'))
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
