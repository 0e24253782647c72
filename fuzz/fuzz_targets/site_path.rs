//! Fuzz target: upload path validation. Whatever it accepts is normalized
//! and free of `..`, backslashes and control characters.
#![no_main]

use helix_core::path::SitePath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Ok(p) = SitePath::parse(raw) {
        let s = p.as_str();
        assert!(s.starts_with('/') && !s.contains("//") && !s.contains('\\'));
        assert!(s.split('/').all(|seg| seg != ".." && seg != "."));
        assert_eq!(SitePath::parse(s).as_ref(), Ok(&p));
    }
});
