//! Fuzz target: the deploy API's request bodies, on arbitrary bytes, as
//! any token holder can send them. Nothing may panic; an accepted body's
//! file table is within the limits.
#![no_main]

use helix_core::api::{LinkProject, RequestBuild, Rollback, SetSplit};
use helix_core::limits::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_files: 64, ..Limits::default() };
    if let Ok(files) = helix_control::check_create_body(data, &limits) {
        assert!(files <= limits.max_files);
    }
    let _ = serde_json::from_slice::<Rollback>(data);
    let _ = serde_json::from_slice::<SetSplit>(data);
    let _ = serde_json::from_slice::<LinkProject>(data);
    let _ = serde_json::from_slice::<RequestBuild>(data);
});
