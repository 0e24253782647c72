//! The listener's limits against real sockets: the connection cap closes
//! the idlest connection (idle first, then one stalled mid-request) to make
//! room, refuses with 503 when every connection is busy, and a connection
//! that never sends a request is closed after the header timeout.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use helix_http::ListenerSettings;
use http_body_util::{BodyExt, Full};

/// A server answering `ok` once it has read the whole request body.
async fn server(max_connections: usize, header_timeout: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = ListenerSettings {
        name: "test",
        max_connections,
        auto_share_percent: 10,
        header_timeout,
        idle_timeout: Duration::from_secs(30),
    };
    let make = |_peer| {
        hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
            let _ = req.into_body().collect().await;
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
        })
    };
    tokio::spawn(helix_http::serve(listener, settings, make, std::future::pending()));
    addr
}

fn get(addr: SocketAddr) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out
}

/// A request whose body never finishes: in flight, nothing moving.
fn stalled(addr: SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nab").unwrap();
    c
}

fn closed(c: &mut TcpStream) -> bool {
    c.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    matches!(c.read(&mut [0u8; 64]), Ok(0) | Err(_)) && matches!(c.read(&mut [0u8; 64]), Ok(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_cap_idle_then_stalled_connections_make_room() {
    let addr = server(2, Duration::from_secs(30)).await;
    tokio::task::spawn_blocking(move || {
        // Two idle connections fill the cap; a third request still gets in.
        let mut idle = [TcpStream::connect(addr).unwrap(), TcpStream::connect(addr).unwrap()];
        std::thread::sleep(Duration::from_millis(100));
        assert!(get(addr).ends_with("ok"), "served past two idle connections");
        assert!(idle.iter_mut().any(closed), "an idle connection was closed to make room");

        // Two requests stalled mid-body: after a second without progress
        // they are fair game too.
        let mut stuck = [stalled(addr), stalled(addr)];
        std::thread::sleep(Duration::from_millis(1500));
        assert!(get(addr).ends_with("ok"), "served past two stalled requests");
        assert!(stuck.iter_mut().any(closed), "a stalled connection was closed to make room");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn when_every_connection_is_busy_newcomers_get_503() {
    let addr = server(2, Duration::from_secs(30)).await;
    tokio::task::spawn_blocking(move || {
        // Busy: requests in flight whose bodies arrived a moment ago.
        let mut busy = [stalled(addr), stalled(addr)];
        std::thread::sleep(Duration::from_millis(200));
        let answer = get(addr);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        for c in &mut busy {
            c.write_all(b"x").unwrap();
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let addr = server(16, Duration::from_millis(300)).await;
    tokio::task::spawn_blocking(move || {
        let mut silent = TcpStream::connect(addr).unwrap();
        silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        assert!(matches!(silent.read(&mut [0u8; 8]), Ok(0) | Err(_)));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{took:?}");
    })
    .await
    .unwrap();
}
