//! What upstream's Go standard library does to the documents we read and write, where it is
//! observable: `encoding/json` field matching (case-insensitive, last key wins) and typed
//! decoding of daemon-config keys, `json.Marshal`'s HTML escaping, and `path/filepath`'s
//! `Join`/`Clean` (the generated `clusterNetwork` is such a path).
//!
//! Pure functions only; nothing here touches the file system. Low level: it uses nothing of the
//! crate, and its [`FieldError`] converts into each layer's error.

use serde_json::{Map, Value};

use crate::prelude::*;

/// A key whose value Go would refuse to decode; the message names the document and the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FieldError(pub String);

/// Go's `strconv.ParseBool` (pflag's `--flag=value`, libcni's list flags given as strings).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// A command line read as Go's `flag` package reads it: `-name value`, `-name=value`, and the same
/// with two dashes, up to the first non-flag or `--`; every name must be in `known` (string flags;
/// `-v`/`-version`/`-h`/`-help` are the caller's business and returned as given). Returns the
/// values by name (the last one wins).
pub fn go_flags(args: &[String], known: &[&str]) -> Result<alloc::collections::BTreeMap<String, String>, String> {
    let mut out = alloc::collections::BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" || !a.starts_with('-') || a == "-" {
            break;
        }
        let flag = a.trim_start_matches('-');
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        if ["v", "version", "h", "help"].contains(&name) {
            out.insert(name.to_string(), inline.unwrap_or_else(|| "true".into()));
            i += 1;
            continue;
        }
        if !known.contains(&name) {
            return Err(format!("flag provided but not defined: -{name}"));
        }
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                args.get(i).cloned().ok_or_else(|| format!("flag needs an argument: -{name}"))?
            }
        };
        out.insert(name.to_string(), value);
        i += 1;
    }
    Ok(out)
}

/// Go's `time.ParseDuration` for non-negative durations (`10m`, `1h30m`, `1.5s`, `300ms`; units
/// ns, us, µs, ms, s, m, h); `None` for anything Go would refuse, or a negative duration.
pub fn parse_duration(s: &str) -> Option<core::time::Duration> {
    if s == "0" {
        return Some(core::time::Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        nanos += value * scale;
        rest = next;
    }
    (nanos.is_finite() && nanos < 9.2e18).then(|| core::time::Duration::from_nanos(nanos as u64))
}

/// The value `encoding/json` would decode into the struct field tagged `name`: every key that
/// equals `name` ignoring ASCII case sets the field, so the last such key in document order wins.
pub fn field<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    m.iter().rev().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// Typed reads of a JSON object with Go's decoding rules: absent or `null` leaves the default,
/// a value of the wrong type is an error naming the key and the document.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    /// What the object is, for error messages ("daemon config").
    what: &'a str,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a Map<String, Value>, what: &'a str) -> Fields<'a> {
        Fields { map, what }
    }

    fn bad(&self, key: &str, want: &str) -> FieldError {
        FieldError(format!("{}: {key:?} must be {want}", self.what))
    }

    /// An error about `key` in this document's words (for rules beyond the value's type).
    pub fn invalid(&self, key: &str, want: &str) -> FieldError {
        self.bad(key, want)
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        field(self.map, key).filter(|v| !v.is_null())
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.bad(key, "a string")),
        }
    }

    pub fn string_or(&self, key: &str, default: &str) -> Result<String, FieldError> {
        Ok(self.string(key)?.unwrap_or_else(|| default.to_string()))
    }

    pub fn boolean(&self, key: &str) -> Result<bool, FieldError> {
        self.boolean_or(key, false)
    }

    pub fn boolean_or(&self, key: &str, default: bool) -> Result<bool, FieldError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.bad(key, "a boolean")),
        }
    }

    /// A Go `int`: a JSON number without a fraction.
    pub fn integer(&self, key: &str) -> Result<Option<i64>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| self.bad(key, "an integer")),
        }
    }

    /// A Go `map[string]bool`.
    pub fn bool_map(&self, key: &str) -> Result<Option<Vec<(String, bool)>>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(o)) => o
                .iter()
                .map(|(k, v)| v.as_bool().map(|b| (k.clone(), b)).ok_or_else(|| self.bad(key, "a map of booleans")))
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(self.bad(key, "a map of booleans")),
        }
    }

    /// A Go `[]string`.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(|| self.bad(key, "a list of strings")))
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(self.bad(key, "a list of strings")),
        }
    }

    pub fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(self.bad(key, "an object")),
        }
    }
}

/// `json.Marshal`'s output for a document: compact, with `<`, `>`, `&`, U+2028 and U+2029
/// escaped as `\u003c`-style sequences. Those characters can only occur inside JSON strings,
/// so replacing them in the serialized text is exact.
pub fn marshal(v: &Value) -> String {
    html_escape(&serde_json::to_string(v).expect("a JSON value serializes"))
}

/// Go's encoder escapes these even inside strings; they never appear outside strings in JSON,
/// so replacing them in the encoded text is exact.
pub fn html_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// `filepath.Clean`: the shortest lexically equivalent path (no `//`, `.`, or resolvable `..`).
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// `filepath.Join(dir, name)`: the elements joined with `/` and cleaned; empty elements are
/// ignored (so an absolute `name` is appended, not substituted as `Path::join` would do).
pub fn join(dir: &str, name: &str) -> String {
    match (dir.is_empty(), name.is_empty()) {
        (true, true) => String::new(),
        (true, false) => clean(name),
        (false, true) => clean(dir),
        (false, false) => clean(&format!("{dir}/{name}")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn go_flag_parsing() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let f = go_flags(
            &a(&["-certdir", "/c", "--kubeconfig=/k", "-cert-duration=1h"]),
            &["certdir", "kubeconfig", "cert-duration"],
        )
        .unwrap();
        assert_eq!((f["certdir"].as_str(), f["kubeconfig"].as_str(), f["cert-duration"].as_str()), ("/c", "/k", "1h"));
        assert!(go_flags(&a(&["-nope", "x"]), &["certdir"]).unwrap_err().contains("-nope"));
        assert!(go_flags(&a(&["-certdir"]), &["certdir"]).unwrap_err().contains("needs an argument"));
        assert_eq!(go_flags(&a(&["-version"]), &[]).unwrap()["version"], "true");
    }

    #[test]
    fn go_durations() {
        use std::time::Duration;
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "10", "m", "1x", "-1s", "1..5s", "1h 2m"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn field_matching_ignores_case_and_the_last_key_wins() {
        let m: Map<String, Value> =
            serde_json::from_str(r#"{"readinessIndicatorFile":"/a","other":1,"READINESSINDICATORFILE":"/b"}"#).unwrap();
        assert_eq!(field(&m, "readinessindicatorfile"), Some(&json!("/b")));
        assert_eq!(field(&m, "missing"), None);
    }

    #[test]
    fn typed_reads_report_the_key_and_treat_null_as_absent() {
        let m: Map<String, Value> =
            serde_json::from_str(r#"{"a":null,"b":"x","c":3,"d":1.5,"e":{"p":true,"q":false}}"#).unwrap();
        let f = Fields::new(&m, "daemon config");
        assert_eq!(f.string("a").unwrap(), None);
        assert_eq!(f.string_or("a", "dflt").unwrap(), "dflt");
        assert_eq!(f.string("b").unwrap().as_deref(), Some("x"));
        assert_eq!(f.string("c").unwrap_err().to_string(), r#"daemon config: "c" must be a string"#);
        assert_eq!(f.integer("c").unwrap(), Some(3));
        assert!(f.integer("d").is_err());
        assert_eq!(f.bool_map("e").unwrap().unwrap(), vec![("p".to_string(), true), ("q".to_string(), false)]);
        assert!(f.boolean("b").is_err());
        assert!(!f.boolean("zz").unwrap());
    }

    #[test]
    fn marshal_escapes_html_like_go() {
        assert_eq!(marshal(&json!({"k":"a<b>&c\u{2028}"})), r#"{"k":"a\u003cb\u003e\u0026c\u2028"}"#);
        assert_eq!(marshal(&json!({"k":"plain"})), r#"{"k":"plain"}"#);
    }

    #[test]
    fn clean_and_join_match_go() {
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("//a//b/", "/a/b"),
            ("a/./b/../c", "a/c"),
            ("/../a", "/a"),
            ("../../a", "../../a"),
            ("a/..", "."),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
        assert_eq!(join("/host/etc/cni/net.d/", "10-calico.conflist"), "/host/etc/cni/net.d/10-calico.conflist");
        assert_eq!(join("/etc/cni/net.d", "/abs.conf"), "/etc/cni/net.d/abs.conf");
        assert_eq!(join("", "x.conf"), "x.conf");
    }
}
