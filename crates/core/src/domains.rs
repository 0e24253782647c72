//! Custom domains: which names a project may claim, and how it proves
//! that it controls one.
//!
//! A name is stored and compared in its ASCII form (an IDN as punycode),
//! lowercase, without a trailing dot. A wildcard is `*.` followed by at
//! least two labels and serves one label below it. Proof is a TXT record
//! `_helix-challenge.<name>` (for a wildcard: of the name below `*.`)
//! holding `helix-verify=<token>`, or — for an exact name whose DNS
//! already points at the edge — the edge answering
//! `/.well-known/helix-challenge/<token>` on that name with the token.

/// A domain name a project may claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomDomain {
    /// ASCII, lowercase, no trailing dot; `*.` first for a wildcard.
    pub name: String,
}

/// The path under which the edge answers HTTP verification.
pub const CHALLENGE_PATH: &str = "/.well-known/helix-challenge/";

/// The TXT record's label in front of the name it proves.
pub const TXT_LABEL: &str = "_helix-challenge";

/// What the TXT record holds in front of the token.
pub const TXT_PREFIX: &str = "helix-verify=";

/// Most custom domains one project may have.
pub const MAX_DOMAINS_PER_PROJECT: usize = 50;

impl CustomDomain {
    /// Checks and normalizes what a user typed: a hostname (Unicode is
    /// turned into punycode), optionally `*.` in front; never an address,
    /// a single label, or a name under `base_domain` (the platform's own
    /// hostnames).
    pub fn parse(input: &str, base_domain: &str) -> Result<CustomDomain, String> {
        let shown: String = input.chars().take(100).collect();
        let trimmed = input.trim().trim_end_matches('.');
        let (wildcard, rest) = match trimmed.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        if rest.contains('*') {
            return Err(format!("{shown:?}: a wildcard is `*.` in front of a name, nowhere else"));
        }
        if rest.contains(':') || rest.contains('/') || rest.contains('@') {
            return Err(format!("{shown:?} is not a hostname (no scheme, port, path or user)"));
        }
        let ascii = idna::domain_to_ascii(rest).map_err(|_| format!("{shown:?} is not a valid domain name"))?;
        if ascii.parse::<std::net::Ipv4Addr>().is_ok() || ascii.starts_with('[') {
            return Err(format!("{shown:?} is an address, not a domain name"));
        }
        check_labels(&ascii).map_err(|why| format!("{shown:?} is not a valid domain name: {why}"))?;
        let labels = ascii.split('.').count();
        if labels < 2 {
            return Err(format!("{shown:?}: a custom domain has at least two labels (like example.com)"));
        }
        if ascii.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
            return Err(format!("{shown:?} is not a domain name: its last label is a number"));
        }
        let base = base_domain.trim_end_matches('.').to_ascii_lowercase();
        if ascii == base
            || ascii.ends_with(&format!(".{base}"))
            || ascii == "localhost"
            || ascii.ends_with(".localhost")
        {
            return Err(format!(
                "{shown:?} is under this server's own domain {base:?}, whose names it gives out itself"
            ));
        }
        let name = if wildcard { format!("*.{ascii}") } else { ascii };
        if name.len() > 253 {
            return Err(format!("{shown:?} is longer than a domain name may be (253 characters)"));
        }
        Ok(CustomDomain { name })
    }

    pub fn is_wildcard(&self) -> bool {
        self.name.starts_with("*.")
    }

    /// The name without `*.`: what the TXT record is under.
    pub fn base(&self) -> &str {
        self.name.strip_prefix("*.").unwrap_or(&self.name)
    }

    /// The TXT record that proves control: its name.
    pub fn txt_name(&self) -> String {
        format!("{TXT_LABEL}.{}", self.base())
    }

    /// `www.example.com` ↔ `example.com`: the other name an apex/www
    /// pair is usually served under.
    pub fn www_partner(&self) -> Option<String> {
        if self.is_wildcard() {
            return None;
        }
        match self.name.strip_prefix("www.") {
            Some(apex) if apex.contains('.') => Some(apex.to_owned()),
            Some(_) => None,
            None if self.name.matches('.').count() == 1 => Some(format!("www.{}", self.name)),
            None => None,
        }
    }
}

/// The TXT record's value for `token`.
pub fn txt_value(token: &str) -> String {
    format!("{TXT_PREFIX}{token}")
}

/// Letters, digits and inner hyphens; 1–63 bytes a label, 253 in all.
fn check_labels(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 253 {
        return Err("a name is 1 to 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each label is 1 to 63 characters");
        }
        if !label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err("labels hold letters, digits and hyphens");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label neither starts nor ends with a hyphen");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<String, String> {
        CustomDomain::parse(s, "localhost").map(|d| d.name)
    }

    #[test]
    fn names_are_normalized_to_ascii_lowercase() {
        assert_eq!(parse("Shop.Example.COM."), Ok("shop.example.com".into()));
        assert_eq!(parse("bücher.example"), Ok("xn--bcher-kva.example".into()));
        assert_eq!(parse("*.preview.example.com"), Ok("*.preview.example.com".into()));
    }

    #[test]
    fn what_is_not_a_claimable_name_is_refused_with_the_reason() {
        for (bad, says) in [
            ("example", "two labels"),
            ("127.0.0.1", "address"),
            ("[::1]", "hostname"),
            ("shop.example.com:443", "hostname"),
            ("https://shop.example.com", "hostname"),
            ("a..b.com", "valid"),
            ("-a.example.com", "hyphen"),
            ("a_b.example.com", "letters"),
            ("x.*.example.com", "wildcard"),
            ("*.com", "two labels"),
            ("shop.localhost", "own domain"),
            ("localhost", "two labels"),
            ("1.2.3.4.5", "number"),
            (&format!("{}.com", "a".repeat(64)), "63"),
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
        let err = CustomDomain::parse("a.apps.example.org", "apps.example.org").unwrap_err();
        assert!(err.contains("own domain"), "{err}");
    }

    #[test]
    fn proof_records_and_partners() {
        let d = CustomDomain::parse("*.preview.example.com", "localhost").unwrap();
        assert_eq!(d.txt_name(), "_helix-challenge.preview.example.com");
        assert_eq!(d.www_partner(), None);
        let apex = CustomDomain::parse("example.com", "localhost").unwrap();
        assert_eq!(apex.www_partner().as_deref(), Some("www.example.com"));
        let www = CustomDomain::parse("www.example.com", "localhost").unwrap();
        assert_eq!(www.www_partner().as_deref(), Some("example.com"));
        assert_eq!(txt_value("abc"), "helix-verify=abc");
    }
}
