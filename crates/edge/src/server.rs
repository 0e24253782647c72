//! Phase `accept`: the edge's listener (connection cap, header and idle
//! timeouts from `helix-http`), HTTP/1.1 and HTTP/2, the client's address
//! on each request.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use hyper::service::service_fn;
use tokio::net::TcpListener;

use crate::Edge;

/// The share of the descriptor limit the edge's connections may take
/// when no cap is set (proxied requests need one more each).
const EDGE_FD_SHARE_PERCENT: u64 = 40;

/// Serves visitors' connections from `listener` until `shutdown` resolves.
pub async fn serve(edge: Arc<Edge>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let settings = edge.config.connections.listener("edge", EDGE_FD_SHARE_PERCENT);
    let make = |peer| {
        let edge = edge.clone();
        service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(crate::ClientAddr(peer));
            let edge = edge.clone();
            async move { Ok::<_, Infallible>(edge.handle(req).await) }
        })
    };
    helix_http::serve(listener, settings, make, shutdown).await;
}
