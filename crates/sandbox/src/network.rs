//! A sandbox's own network: out through slirp4netns, with this machine
//! closed. Before slirp4netns connects the namespace, routes that refuse
//! every internal range (loopback, private, link-local, …, the list the
//! edge's proxy refuses) and every address and connected network of this
//! machine are put in it; the sandbox, without capabilities, cannot remove
//! them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use helix_core::net::Cidr;
use tokio::process::Command;

/// Where a sandbox's network comes from.
pub(crate) enum Network {
    /// Its own network namespace, connected to the outside through
    /// slirp4netns (user-mode NAT) with this machine closed: package
    /// registries answer, the machine's services (the database, the API,
    /// anything on its addresses or its networks) do not.
    Own { resolv: PathBuf },
    /// The host's network (when slirp4netns is missing).
    Shared,
}

/// slirp4netns' DNS forwarder inside the namespace.
pub(crate) const SLIRP_DNS: &str = "10.0.2.3";

pub fn slirp4netns_available() -> bool {
    ["/usr/bin/slirp4netns", "/usr/local/bin/slirp4netns"].iter().any(|p| Path::new(p).exists())
}

/// Waits (at most 5 s) until bwrap has given the sandbox's loopback its
/// address. bwrap reports the pid before it sets loopback up, and adds
/// the address exclusively: were slirp4netns to bring `lo` up first (the
/// kernel then adds 127.0.0.1 itself), bwrap would fail with
/// "loopback: Failed RTM_NEWADDR".
async fn loopback_ready(pid: u64) -> Result<(), String> {
    let started = std::time::Instant::now();
    // The namespace's local routing table lists 127.0.0.1 once it is set.
    while !std::fs::read_to_string(format!("/proc/{pid}/net/fib_trie")).is_ok_and(|t| t.contains("127.0.0.1")) {
        if started.elapsed() > Duration::from_secs(5) {
            return Err("the sandbox's loopback was never set up".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Puts into the sandbox's network namespace a route that refuses each
/// internal range and each address and network of this machine (connect
/// fails at once with "no route to host"). Fails closed: an error means
/// the sandbox gets no network at all.
pub(crate) async fn confine_network(pid: u64) -> Result<(), String> {
    loopback_ready(pid).await?;
    let (v4, v6) = refused_ranges();
    // Without IPv6 in the kernel there is no IPv6 route to close.
    let v6 = if Path::new("/proc/net/if_inet6").exists() { v6 } else { Vec::new() };
    for (family, ranges) in [("-4", v4), ("-6", v6)] {
        if ranges.is_empty() {
            continue;
        }
        let batch: String = ranges.iter().map(|c| format!("route replace unreachable {c}\n")).collect();
        let mut ip = Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .args(["ip", family, "-batch", "-"])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running nsenter ip: {e}"))?;
        if let Some(mut stdin) = ip.stdin.take() {
            use tokio::io::AsyncWriteExt;
            stdin.write_all(batch.as_bytes()).await.map_err(|e| format!("writing routes: {e}"))?;
        }
        let out = ip.wait_with_output().await.map_err(|e| format!("running ip: {e}"))?;
        if !out.status.success() {
            return Err(format!("ip {family}: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
    }
    Ok(())
}

/// The ranges a sandbox may not reach, IPv4 and IPv6: the internal ranges,
/// and this machine's addresses and the networks they are on.
pub fn refused_ranges() -> (Vec<Cidr>, Vec<Cidr>) {
    let mut all: Vec<Cidr> = helix_core::net::INTERNAL_RANGES.iter().map(|(c, _)| *c).collect();
    for iface in if_addrs::get_if_addrs().unwrap_or_default() {
        all.push(Cidr::host(iface.ip()));
        let (ip, prefix) = match &iface.addr {
            if_addrs::IfAddr::V4(a) => (IpAddr::V4(a.ip), a.prefixlen),
            if_addrs::IfAddr::V6(a) => (IpAddr::V6(a.ip), a.prefixlen),
        };
        if let Some(net) = network_of(ip, prefix) {
            all.push(net);
        }
    }
    // IPv4-mapped IPv6 addresses are IPv4 addresses.
    all.push(Cidr { addr: IpAddr::V6(std::net::Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0)), prefix: 96 });
    all.dedup();
    all.into_iter().partition(|c| c.addr.is_ipv4())
}

/// The network `ip` is on, as a CIDR with its first address.
fn network_of(ip: IpAddr, prefix: u8) -> Option<Cidr> {
    let addr = match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32u32.checked_sub(u32::from(prefix))?).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128u32.checked_sub(u32::from(prefix))?).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    };
    Some(Cidr { addr, prefix })
}

/// Connects the sandbox's network namespace to the outside. The returned
/// process lives as long as the handle.
pub(crate) async fn attach_network(pid: u64) -> Result<tokio::process::Child, String> {
    Command::new("slirp4netns")
        .args(["--configure", "--mtu=65520", "--disable-host-loopback", &pid.to_string(), "tap0"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting slirp4netns: {e}"))
}

/// Before the sandbox's command: wait (at most 5 s) until slirp4netns has
/// configured the default route, so the first download does not fail.
pub(crate) const WAIT_FOR_NETWORK: &str = "i=0; while [ $i -lt 250 ] && ! grep -q '^tap0\t00000000' /proc/net/route; do i=$((i+1)); sleep 0.02; done; exec \"$@\"";
