//! Netlify `Role=` conditions: the roles in the visitor's `nf_jwt` cookie,
//! a JWT signed with HS256 by the site's identity provider, whose secret
//! the operator gives the edge. A token that is malformed, badly signed or
//! expired carries no roles.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The roles of a verified token: `app_metadata.roles`, or
/// `app_metadata.authorization.roles` (Netlify's external-provider form).
pub(crate) fn roles(token: &str, secret: &[u8], now_unix: u64) -> Option<Vec<String>> {
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    if header.get("alg")?.as_str()? != "HS256" {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(&token.as_bytes()[..header_len(token)?]);
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(signature).ok()?).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    if let Some(exp) = claims.get("exp").and_then(serde_json::Value::as_u64)
        && exp <= now_unix
    {
        return None;
    }
    let meta = claims.get("app_metadata")?;
    let list = meta.get("roles").or_else(|| meta.get("authorization")?.get("roles"))?;
    Some(list.as_array()?.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect())
}

/// Length of `header.payload`, the signed part.
fn header_len(token: &str) -> Option<usize> {
    token.rfind('.')
}

#[cfg(test)]
pub(crate) fn sign(claims: &serde_json::Value, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(format!("{header}.{payload}").as_bytes());
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verifies_and_reads_roles() {
        let secret = b"s3cret";
        let token = sign(&json!({"app_metadata": {"roles": ["admin", "editor"]}, "exp": 2_000_000_000u64}), secret);
        assert_eq!(roles(&token, secret, 1_900_000_000), Some(vec!["admin".into(), "editor".into()]));
        assert_eq!(roles(&token, b"wrong", 1_900_000_000), None, "bad signature");
        assert_eq!(roles(&token, secret, 2_000_000_001), None, "expired");
        let external = sign(&json!({"app_metadata": {"authorization": {"roles": ["member"]}}}), secret);
        assert_eq!(roles(&external, secret, 0), Some(vec!["member".into()]));
        let tampered = format!("{}x", &token[..token.len() - 1]);
        assert_eq!(roles(&tampered, secret, 0), None);
        assert_eq!(roles("not.a.jwt", secret, 0), None);
        assert_eq!(roles("", secret, 0), None);
    }
}
