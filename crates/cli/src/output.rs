//! How the CLI prints reports for people: deploy summaries, numbers, sizes.

use helix_client::deploy::DeployReport;
use helix_core::api::{Propagation, RoutesReport};

pub fn print_human(r: &DeployReport) {
    println!(
        "✔ hashed {} files ({}) · uploaded {} · deployment {} ready in {:.1} s",
        group(r.files as u64),
        human_bytes(r.total_bytes),
        group(r.uploaded as u64),
        r.id,
        r.seconds
    );
    println!("  url:        {}", r.url);
    if let Some(p) = &r.production_url {
        println!("  production: {p}");
    }
    if let Some(routes) = &r.routes {
        print_routes_summary(routes);
    }
    if r.function_sources > 0 {
        println!(
            "  functions:  {} source file(s) · helix functions --project {} · helix logs --project {}",
            r.function_sources, r.project, r.project
        );
    }
    warn_if_unserved(r.propagation.as_ref());
}

/// A change the edge has not confirmed serving yet: said on stderr, so a
/// script that deploys and then tests knows why it may see the old site.
pub fn warn_if_unserved(propagation: Option<&Propagation>) {
    if let Some(p) = propagation.filter(|p| !p.served) {
        let detail = p.detail.as_deref().unwrap_or("the edge has not confirmed serving it yet");
        eprintln!("warning: {detail}");
    }
}

/// One line on the routing semantics, then each rule not honored.
pub fn print_routes_summary(routes: &RoutesReport) {
    println!("  routing:    {} · {} redirects · {} header rules", routes.reason, routes.redirects, routes.headers);
    for d in &routes.diagnostics {
        println!("    {d}");
    }
}

/// 1234567 → "1,234,567".
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(group(1204), "1,204");
        assert_eq!(group(12), "12");
        assert_eq!(group(1_000_000), "1,000,000");
        assert_eq!(human_bytes(38_200_000), "38.2 MB");
        assert_eq!(human_bytes(999), "999 B");
    }
}
