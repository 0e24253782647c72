//! The audit log's entries and their hash chain.
//!
//! Entries are numbered 1, 2, … with no gaps; each carries the SHA-256 of
//! the one before it (the first, of 64 zeros) and its own hash covers every
//! field and that link. Editing an entry breaks its hash, deleting or
//! reordering breaks the numbering or a link, and cutting entries off the
//! end no longer matches the head the store keeps beside the log.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The link of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One entry as stored and as `GET /api/v1/audit` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: u64,
    pub at_ms: i64,
    /// The organisation whose object it concerns (`*`: the whole server).
    pub org: String,
    /// Who: a user's name, `hook:<provider>`, or `system`.
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// What: `deploy`, `promote`, `rollback`, `split.change`, `link`,
    /// `token.create`, `token.revoke`, `member.change`, `org.create`,
    /// `login`, `denied`, …
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The object acted on (a deployment, token, user, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `ok` or `denied`.
    pub outcome: String,
    /// Anything else worth keeping, as JSON.
    pub detail: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// The hash this entry must carry: over every field but `hash`.
    pub fn compute_hash(&self) -> String {
        let fields = serde_json::json!([
            self.seq,
            self.at_ms,
            self.org,
            self.actor,
            self.token,
            self.action,
            self.project,
            self.target,
            self.outcome,
            self.detail,
            self.request_id,
            self.prev_hash,
        ]);
        hex::encode(Sha256::digest(fields.to_string().as_bytes()))
    }
}

/// Where the chain breaks, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChainBreak {
    /// The first entry that does not hold (or, for a cut-off end, the
    /// first one missing).
    pub seq: u64,
    pub why: String,
}

/// `GET /api/v1/audit/verify`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChainReport {
    pub intact: bool,
    pub entries: u64,
    /// The head the store recorded: the last entry's number and hash (to
    /// keep elsewhere, and compare later).
    pub head_seq: u64,
    pub head_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_break: Option<ChainBreak>,
}

/// Walks a whole log in stored order against the head the store keeps
/// (`head_seq`, `head_hash`: the last entry written).
pub fn verify<'a>(entries: impl IntoIterator<Item = &'a AuditEntry>, head_seq: u64, head_hash: &str) -> ChainReport {
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_owned();
    let mut count = 0;
    let broken = |seq, why: String| Some(ChainBreak { seq, why });
    let mut first_break = None;
    for e in entries {
        count += 1;
        if e.seq != expected_seq {
            first_break = broken(
                expected_seq.min(e.seq),
                if e.seq > expected_seq {
                    format!("entry {expected_seq} is missing (the next one stored is {})", e.seq)
                } else {
                    format!("entry {} is out of order (after entry {})", e.seq, expected_seq - 1)
                },
            );
            break;
        }
        if e.prev_hash != prev {
            first_break = broken(e.seq, format!("entry {} does not link to the entry before it", e.seq));
            break;
        }
        if e.compute_hash() != e.hash {
            first_break = broken(e.seq, format!("entry {} was altered: its contents do not match its hash", e.seq));
            break;
        }
        prev = e.hash.clone();
        expected_seq += 1;
    }
    if first_break.is_none() {
        let last = expected_seq - 1;
        if last < head_seq {
            first_break = broken(last + 1, format!("entries {} to {head_seq} are missing from the end", last + 1));
        } else if last > head_seq || prev != head_hash && head_seq > 0 {
            first_break = broken(head_seq.max(1), "the log's end does not match its recorded head".into());
        }
    }
    ChainReport {
        intact: first_break.is_none(),
        entries: count,
        head_seq,
        head_hash: head_hash.to_owned(),
        first_break,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let mut e = AuditEntry {
                    seq,
                    at_ms: seq as i64,
                    org: "default".into(),
                    actor: "admin".into(),
                    token: None,
                    action: "promote".into(),
                    project: Some("site".into()),
                    target: Some(format!("d{seq}")),
                    outcome: "ok".into(),
                    detail: serde_json::json!({}),
                    request_id: None,
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                e.hash = e.compute_hash();
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let c = chain(5);
        let r = verify(&c, 5, &c[4].hash);
        assert!(r.intact, "{r:?}");
        assert_eq!(r.entries, 5);
        assert!(verify(&[], 0, GENESIS).intact);
    }

    #[test]
    fn edits_deletions_reorders_and_truncations_are_found_where_they_are() {
        let c = chain(5);
        let head = c[4].hash.clone();
        let mut edited = c.clone();
        edited[2].target = Some("evil".into());
        assert_eq!(verify(&edited, 5, &head).first_break.unwrap().seq, 3);
        let mut deleted = c.clone();
        deleted.remove(1);
        assert_eq!(verify(&deleted, 5, &head).first_break.unwrap().seq, 2);
        let mut reordered = c.clone();
        reordered.swap(1, 3);
        assert_eq!(verify(&reordered, 5, &head).first_break.unwrap().seq, 2);
        // Renumbered to hide the swap: the links and hashes break instead.
        for (i, e) in reordered.iter_mut().enumerate() {
            e.seq = i as u64 + 1;
        }
        assert_eq!(verify(&reordered, 5, &head).first_break.unwrap().seq, 2);
        let cut = &c[..3];
        let r = verify(cut, 5, &head);
        assert_eq!(r.first_break.unwrap().seq, 4, "the first missing entry");
    }
}
