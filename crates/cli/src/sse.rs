//! Reading a server-sent event stream (build logs, function logs).

use std::ops::ControlFlow;

use anyhow::Context;
use futures_util::StreamExt;

/// Calls `on(event, data)` for each event until it breaks (then `true`)
/// or the stream ends (`false`).
pub async fn each(
    resp: reqwest::Response,
    mut on: impl FnMut(&str, &str) -> anyhow::Result<ControlFlow<()>>,
) -> anyhow::Result<bool> {
    let mut body = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut event = String::new();
    let mut data = String::new();
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk.context("reading the event stream")?);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r']).to_owned();
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_owned();
            } else if let Some(d) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            } else if line.is_empty() && !data.is_empty() {
                if on(&event, &data)?.is_break() {
                    return Ok(true);
                }
                event.clear();
                data.clear();
            }
        }
    }
    Ok(false)
}
