//! Fuzz target: webhook payload parsing, on arbitrary bytes, as a stranger
//! can send them before any signature is checked. The first byte picks the
//! provider and the event; nothing may panic, and what is read must be well
//! formed.
#![no_main]

use helix_control::hooks::payload::{self, HookEvent, Provider};
use helix_core::build::{is_branch_name, is_commit_id};
use libfuzzer_sys::fuzz_target;

const EVENTS: &[(Provider, &str)] = &[
    (Provider::GitHub, "push"),
    (Provider::GitHub, "pull_request"),
    (Provider::GitHub, "ping"),
    (Provider::GitLab, "Push Hook"),
    (Provider::GitLab, "Merge Request Hook"),
    (Provider::Bitbucket, "repo:push"),
    (Provider::Bitbucket, "pullrequest:created"),
    (Provider::Bitbucket, "pullrequest:fulfilled"),
    (Provider::Generic, ""),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let (provider, event) = EVENTS[pick as usize % EVENTS.len()];
    if let Ok(delivery) = payload::parse(provider, event, body) {
        match &delivery.event {
            HookEvent::Push { branch, commit } | HookEvent::PullRequest { branch, commit, .. } => {
                assert!(is_branch_name(branch), "{branch:?}");
                assert!(is_commit_id(commit), "{commit:?}");
            }
            _ => {}
        }
        for key in &delivery.repo_keys {
            assert!(!key.contains(char::is_whitespace) && !key.split('/').any(|s| s == ".."), "{key:?}");
        }
    }
    // Any string as a repository URL.
    if let Ok(url) = std::str::from_utf8(body)
        && let Some(key) = payload::repo_key(url)
    {
        assert_eq!(key, key.to_ascii_lowercase());
    }
});
