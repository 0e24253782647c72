//! Who may do what: roles, and the API bodies of tokens, organisations and
//! members (`/api/v1/tokens`, `/api/v1/orgs`, `/api/v1/members`).
//!
//! An organisation owns projects; a user belongs to organisations through
//! memberships, each with a role, optionally narrowed to one project. A
//! token acts for one user in one organisation with a role of its own: what
//! it may do is the lesser of its role and its user's, on the objects its
//! scope covers.

use serde::{Deserialize, Serialize};

/// A role, from least to most trusted: each may do what the ones before it
/// may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads projects, deployments, builds and logs.
    Viewer,
    /// Also deploys, builds, promotes, rolls back and splits traffic.
    Developer,
    /// Also links repositories, manages members (not owners) and others'
    /// tokens.
    Admin,
    /// Also manages owners.
    Owner,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Developer, Role::Admin, Role::Owner];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Developer => "developer",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("role {s:?} is not one of owner, admin, developer, viewer"))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /api/v1/tokens`
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    /// Default: the caller's own role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Narrow it to one project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Seconds until it stops working; default: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
    /// Whose token it is (admins only); default: the caller's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Which organisation it acts in (server admins only); default: the
    /// caller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

/// A token as listed: never the secret itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub user: String,
    pub org: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    pub read_only: bool,
    pub created_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<i64>,
}

/// The answer to `POST /api/v1/tokens`: the secret, shown this once.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// `GET /api/v1/whoami`
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub user: String,
    pub org: String,
    /// The token's own role (what it may do is also capped by the user's
    /// memberships).
    pub role: Role,
    pub token: String,
    pub token_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    pub read_only: bool,
    /// The bootstrap token: acts in every organisation.
    pub server_admin: bool,
    pub memberships: Vec<Membership>,
}

/// `POST /api/v1/orgs`
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    pub name: String,
    /// Its first owner (a user, made on first use).
    pub owner: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Org {
    pub name: String,
    pub created_at_ms: i64,
}

/// `POST /api/v1/members`
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub user: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Membership {
    pub user: String,
    pub org: String,
    pub role: Role,
    /// The one project it covers; none: the whole organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// A user or organisation name: 1–64 of `a-z 0-9 - _ .`, starting with a
/// letter or digit.
pub fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("{kind} name {name:?} must be 1–64 of a-z, 0-9, '-', '_', '.', starting with a letter or digit"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_trust_and_round_trip() {
        assert!(Role::Viewer < Role::Developer && Role::Developer < Role::Admin && Role::Admin < Role::Owner);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Ok(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        assert!(Role::parse("root").is_err());
    }

    #[test]
    fn names_are_checked() {
        for ok in ["alice", "a", "team-1", "ops.eu_2"] {
            assert!(check_name("user", ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "Alice", "a b", "a/b", &"x".repeat(65)] {
            assert!(check_name("user", bad).is_err(), "{bad}");
        }
    }
}
