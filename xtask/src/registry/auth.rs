//! Registry authentication as data: parsing `WWW-Authenticate` challenges (RFC 7235 auth-params,
//! quoted strings with commas inside), the Basic credential, the token request of the Docker
//! token flow (`realm?service=…&scope=…`) and its answer. The client decides when to use them.

use anyhow::{Context, bail};
use base64::Engine as _;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic { realm: Option<String> },
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    pub username: String,
    pub password: String,
}

/// Every challenge in a header value (`Basic realm="r", Bearer realm="x",scope="a:b:pull,push"`).
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        let scheme_end = rest.find(|c: char| c.is_ascii_whitespace() || c == ',').unwrap_or(rest.len());
        let scheme = rest[..scheme_end].to_string();
        rest = rest[scheme_end..].trim_start_matches(|c: char| c.is_ascii_whitespace() || c == ',');
        let mut params: Vec<(String, String)> = Vec::new();
        // auth-params until a token not followed by '=' (the next scheme).
        while let Some(eq) = rest.find('=') {
            let name = &rest[..eq];
            if name.is_empty() || name.contains(|c: char| c.is_ascii_whitespace() || c == ',' || c == '"') {
                break;
            }
            let after = &rest[eq + 1..];
            let (value, tail) = if let Some(q) = after.strip_prefix('"') {
                let mut v = String::new();
                let mut chars = q.char_indices();
                let mut end = q.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                v.push(n)
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        _ => v.push(c),
                    }
                }
                (v, &q[end.min(q.len())..])
            } else {
                let e = after.find(',').unwrap_or(after.len());
                (after[..e].trim().to_string(), &after[e..])
            };
            params.push((name.to_ascii_lowercase(), value));
            rest = tail.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == ',');
        }
        if scheme.is_empty() {
            break;
        }
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        out.push(match scheme.to_ascii_lowercase().as_str() {
            "basic" => Challenge::Basic { realm: get("realm") },
            "bearer" => match get("realm") {
                Some(realm) => Challenge::Bearer { realm, service: get("service"), scope: get("scope") },
                None => Challenge::Other(scheme),
            },
            _ => Challenge::Other(scheme),
        });
    }
    out
}

pub fn basic(c: &Creds) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password)))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The token request URL: `realm?service=S&scope=A&scope=B`.
pub fn token_url(realm: &str, service: Option<&str>, scopes: &[String]) -> String {
    let mut q: Vec<String> = Vec::new();
    if let Some(s) = service {
        q.push(format!("service={}", query_escape(s)));
    }
    for s in scopes {
        q.push(format!("scope={}", query_escape(s)));
    }
    if q.is_empty() {
        return realm.to_string();
    }
    format!("{realm}{}{}", if realm.contains('?') { '&' } else { '?' }, q.join("&"))
}

/// The token from a token endpoint's JSON answer (`token`, or OAuth2's `access_token`).
pub fn parse_token(body: &[u8]) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_slice(body).context("the token endpoint did not answer JSON")?;
    for k in ["token", "access_token"] {
        if let Some(t) = v.get(k).and_then(|t| t.as_str()).filter(|t| !t.is_empty()) {
            return Ok(t.to_string());
        }
    }
    bail!("the token endpoint's answer has neither token nor access_token")
}

/// Adds the actions of `scope` (`repository:NAME:pull,push`) to a set of scopes, merging
/// actions of the same resource so one token covers everything asked for so far.
pub fn merge_scope(scopes: &mut Vec<String>, scope: &str) {
    for new in scope.split(' ').filter(|s| !s.is_empty()) {
        let Some((resource, actions)) = new.rsplit_once(':') else {
            if !scopes.iter().any(|s| s == new) {
                scopes.push(new.to_string());
            }
            continue;
        };
        match scopes.iter_mut().find(|s| s.rsplit_once(':').map(|(r, _)| r) == Some(resource)) {
            Some(existing) => {
                let (_, have) = existing.rsplit_once(':').expect("matched above");
                let mut all: Vec<&str> = have.split(',').chain(actions.split(',')).filter(|a| !a.is_empty()).collect();
                all.sort();
                all.dedup();
                *existing = format!("{resource}:{}", all.join(","));
            }
            None => scopes.push(new.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_commas_in_quotes() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push",error="insufficient_scope""#;
        assert_eq!(
            parse_challenges(h),
            [Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:samalba/my-app:pull,push".into()),
            }]
        );
    }

    #[test]
    fn basic_and_several_challenges() {
        assert_eq!(
            parse_challenges(r#"Basic realm="test-realm""#),
            [Challenge::Basic { realm: Some("test-realm".into()) }]
        );
        let two = parse_challenges(r#"Basic realm="a b", Bearer realm=http://t/x, service=reg"#);
        assert_eq!(
            two,
            [
                Challenge::Basic { realm: Some("a b".into()) },
                Challenge::Bearer { realm: "http://t/x".into(), service: Some("reg".into()), scope: None }
            ]
        );
        assert_eq!(
            parse_challenges(r#"bEaReR realm="r\"q""#),
            [Challenge::Bearer { realm: "r\"q".into(), service: None, scope: None }]
        );
        assert_eq!(parse_challenges("Negotiate"), [Challenge::Other("Negotiate".into())]);
        assert_eq!(parse_challenges(""), []);
    }

    #[test]
    fn credentials_and_token_requests() {
        let c = Creds { username: "tester".into(), password: "secret".into() };
        assert_eq!(basic(&c), "Basic dGVzdGVyOnNlY3JldA==");
        assert_eq!(
            token_url("http://127.0.0.1:1/token", Some("reg istry"), &["repository:a/b:pull,push".into()]),
            "http://127.0.0.1:1/token?service=reg%20istry&scope=repository%3Aa%2Fb%3Apull%2Cpush"
        );
        assert_eq!(token_url("https://t/x?a=1", None, &["s".into()]), "https://t/x?a=1&scope=s");
        assert_eq!(parse_token(br#"{"token":"abc","expires_in":60}"#).unwrap(), "abc");
        assert_eq!(parse_token(br#"{"access_token":"xyz"}"#).unwrap(), "xyz");
        assert!(parse_token(b"{}").is_err());
        assert!(parse_token(b"<html>").is_err());
    }

    #[test]
    fn scopes_merge_per_resource() {
        let mut s = Vec::new();
        merge_scope(&mut s, "repository:a:pull");
        merge_scope(&mut s, "repository:a:push,pull");
        merge_scope(&mut s, "repository:b:pull registry:catalog:*");
        assert_eq!(s, ["repository:a:pull,push", "repository:b:pull", "registry:catalog:*"]);
    }
}
