//! Architecture invariants that a file can show (ARCHITECTURE.md): which
//! crate may depend on which, and that every crate says what it owns.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The HelixStack crates a crate's `[dependencies]` name.
fn helix_deps(crate_dir: &str) -> Vec<String> {
    let manifest = std::fs::read_to_string(root().join(crate_dir).join("Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap_or_default();
    let deps = deps.split("\n[").next().unwrap_or_default();
    deps.lines()
        .filter_map(|l| l.split(['.', ' ', '=']).next())
        .filter(|name| name.starts_with("helix-"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn planes_depend_only_on_what_the_architecture_allows() {
    assert_eq!(helix_deps("crates/core"), Vec::<String>::new(), "helix-core depends on no other HelixStack crate");
    let edge = helix_deps("crates/edge");
    assert!(edge.contains(&"helix-artifacts".to_owned()), "the manifest reader works: {edge:?}");
    for dep in edge {
        assert!(
            !["helix-store", "helix-control", "helix-server", "helix-runtime", "helix-sandbox"].contains(&dep.as_str()),
            "the edge never depends on the state store, the control plane or a function adapter ({dep})"
        );
    }
    assert_eq!(helix_deps("crates/config"), ["helix-core"], "helix-config is pure: core only");
    for dep in helix_deps("crates/build") {
        assert!(
            !["helix-store", "helix-control", "helix-server", "helix-artifacts"].contains(&dep.as_str()),
            "the build plane gets jobs from the bus and deploys through the API, never the store or control ({dep})"
        );
    }
    for dep in helix_deps("crates/client") {
        assert!(["helix-core", "helix-config"].contains(&dep.as_str()), "the API client speaks HTTP only ({dep})");
    }
    for dep in helix_deps("crates/runtime") {
        assert!(
            ["helix-core", "helix-artifacts", "helix-sandbox"].contains(&dep.as_str()),
            "the runtime plane runs functions from blobs in sandboxes, nothing else ({dep})"
        );
    }
    assert_eq!(helix_deps("crates/sandbox"), ["helix-core"], "the sandbox knows nothing of builds or functions");
    for crate_dir in ["crates/store", "crates/bus", "crates/artifacts"] {
        for dep in helix_deps(crate_dir) {
            assert_eq!(dep, "helix-core", "{crate_dir} may only use helix-core, not {dep}");
        }
    }
}

#[test]
fn every_crate_says_what_it_owns() {
    for entry in std::fs::read_dir(root().join("crates")).unwrap().flatten() {
        let src = entry.path().join("src");
        let top = if src.join("lib.rs").exists() { src.join("lib.rs") } else { src.join("main.rs") };
        let text = std::fs::read_to_string(&top).unwrap();
        assert!(text.starts_with("//!"), "{} must open with a //! doc comment", top.display());
    }
}
