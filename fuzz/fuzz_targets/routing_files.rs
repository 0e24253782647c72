//! Fuzz target: every routing-file parser, on arbitrary bytes. The first
//! byte picks the file and the platform; nothing may panic, and what is kept
//! must be well formed.
#![no_main]

use helix_config::{ProjectFiles, compile};
use helix_core::routes::Platform;
use libfuzzer_sys::fuzz_target;

const FILES: &[(&str, bool, Platform)] = &[
    ("_redirects", false, Platform::Netlify),
    ("_headers", false, Platform::Netlify),
    ("netlify.toml", true, Platform::Netlify),
    ("_redirects", false, Platform::CloudflarePages),
    ("_headers", false, Platform::CloudflarePages),
    ("vercel.json", true, Platform::Vercel),
    ("helix.toml", true, Platform::Helix),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let (name, at_root, platform) = FILES[pick as usize % FILES.len()];
    let mut files = ProjectFiles::default();
    let target = if at_root { &mut files.root } else { &mut files.publish };
    target.insert(name.to_owned(), rest.to_vec());
    let compiled = compile(&files, Some(platform));
    for r in &compiled.table.redirects {
        assert!((100..=999).contains(&r.status));
    }
});
