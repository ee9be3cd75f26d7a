//! The primary CNI config (upstream's "master plugin"): the cluster's own network config that
//! multus wraps. Owns choosing it from a directory, reading it, what capabilities it contributes,
//! and the thick version-compatibility check.
//!
//! Selection, thick (`findMasterPlugin`) and thin (`libcni.ConfFiles` in thin_entrypoint) alike:
//! names ending in `.conf` or `.conflist` (Go's `filepath.Ext`, so not `.json`), sorted by bytes,
//! the first wins. They differ in what they skip: thick skips every name starting with
//! `00-multus`, thin only names starting with `00-multus.conf`. Go's `os.ReadDir` (used by both)
//! already returns names sorted, so the "ReadDir order" of the thin entrypoint is the same sorted
//! order; we sort explicitly in both. Directories are skipped in both (upstream's thick selection
//! would pick a directory named `x.conf` and then fail to read it).
//!
//! Capabilities differ too: thick adds every capability a plugin enables (`true`) to the
//! configured ones (for a conflist, the union over its plugins); thin copies every declared
//! capability with its value, later plugins overriding earlier ones. Upstream panics on a
//! non-boolean capability or a `plugins` that is not a list; we return an error.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::Error;
use crate::cni::version::Version;

/// The name our own generated files start with.
pub const OWN_PREFIX_THICK: &str = "00-multus";
pub const OWN_PREFIX_THIN: &str = "00-multus.conf";

/// Which binary's selection rule applies (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Thick,
    Thin,
}

impl Rule {
    fn skips(self, name: &str) -> bool {
        match self {
            Rule::Thick => name.starts_with(OWN_PREFIX_THICK),
            Rule::Thin => name.starts_with(OWN_PREFIX_THIN),
        }
    }
}

/// Go's `filepath.Ext`: the suffix from the last dot of the name.
fn ext(name: &str) -> &str {
    name.rfind('.').map(|i| &name[i..]).unwrap_or("")
}

/// The primary among file names (directories already removed), or `None`.
pub fn select<'a>(names: impl IntoIterator<Item = &'a str>, rule: Rule) -> Option<String> {
    names.into_iter().filter(|n| !rule.skips(n) && matches!(ext(n), ".conf" | ".conflist")).min().map(str::to_string)
}

/// Lists `dir` and selects the primary's file name.
pub fn find(dir: &Path, rule: Rule) -> Result<Option<String>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("failed to list CNI configs in", dir, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("failed to list CNI configs in", dir, e))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(select(names.iter().map(String::as_str), rule))
}

/// Parses a primary config: it must be a JSON object.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Map<String, Value>, Error> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::Invalid(format!("primary CNI config {}: not a JSON object", path.display()))),
        Err(e) => Err(Error::Invalid(format!("primary CNI config {}: {e}", path.display()))),
    }
}

/// Reads and parses a primary config file.
pub fn load(path: &Path) -> Result<Map<String, Value>, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("failed to read the primary CNI config", path, e))?;
    parse(&bytes, path)
}

fn bad(what: &str) -> Error {
    Error::Invalid(format!("primary CNI config: {what}"))
}

/// `plugins` of a conflist; `None` for a single-plugin config (absent or null).
fn plugins(primary: &Map<String, Value>) -> Result<Option<&Vec<Value>>, Error> {
    match primary.get("plugins") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(bad("\"plugins\" must be a list")),
    }
}

/// The `capabilities` map of one plugin config as (name, enabled) pairs, in document order.
fn declared(plugin: &Value) -> Result<Vec<(&str, bool)>, Error> {
    let Some(caps) = plugin.as_object().and_then(|p| p.get("capabilities")) else {
        return Ok(vec![]);
    };
    match caps {
        Value::Null => Ok(vec![]),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| {
                v.as_bool().map(|b| (k.as_str(), b)).ok_or_else(|| bad(&format!("capability {k:?} must be a boolean")))
            })
            .collect(),
        _ => Err(bad("\"capabilities\" must be an object")),
    }
}

/// Thick: the capabilities the primary enables (`true`); for a conflist with plugins, those of
/// every plugin (the top level is then ignored, as upstream does).
pub fn enabled_capabilities(primary: &Map<String, Value>) -> Result<Vec<String>, Error> {
    let top = Value::Object(primary.clone());
    let sources: Vec<&Value> = match plugins(primary)? {
        Some(list) if !list.is_empty() => list.iter().collect(),
        _ => vec![&top],
    };
    let mut out = Vec::new();
    for s in sources {
        out.extend(declared(s)?.into_iter().filter(|(_, on)| *on).map(|(k, _)| k.to_string()));
    }
    Ok(out)
}

/// Thin: every capability the primary declares with its value; a conflist's plugins in order,
/// later ones overriding (a config with a `plugins` key counts as a list even when empty).
pub fn declared_capabilities(primary: &Map<String, Value>) -> Result<BTreeMap<String, bool>, Error> {
    let mut out = BTreeMap::new();
    let mut add = |v: &Value| -> Result<(), Error> {
        for (k, on) in declared(v)? {
            out.insert(k.to_string(), on);
        }
        Ok(())
    };
    if primary.contains_key("plugins") {
        for (i, p) in plugins(primary)?.into_iter().flatten().enumerate() {
            if !p.is_object() {
                return Err(bad(&format!("plugins[{i}] must be an object")));
            }
            add(p)?;
        }
    } else {
        add(&Value::Object(primary.clone()))?;
    }
    Ok(out)
}

/// Upstream's `CheckVersionCompatibility`: the multus `cniVersion` must parse, and from 0.4.0 on
/// (CHECK exists) the primary's `cniVersion` must be a version of at least 0.4.0 too.
pub fn check_version_compatibility(multus_version: &str, primary: &Map<String, Value>) -> Result<(), Error> {
    let top = match multus_version {
        "" => None,
        v => Version::parse(v).ok(),
    }
    .ok_or_else(|| Error::Invalid(format!("couldn't get top level cni version from {multus_version:?}")))?;
    if top < Version::V0_4_0 {
        return Ok(());
    }
    let delegate = primary
        .get("cniVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Invalid("couldn't get cni version of delegate".into()))?;
    let v = Version::parse(delegate)
        .map_err(|_| Error::Invalid(format!("couldn't parse cni version {delegate:?} of delegate")))?;
    if delegate.is_empty() || v < Version::V0_4_0 {
        return Err(Error::Incompatible(format!(
            "delegate cni version is {delegate} while top level cni version is {multus_version}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn selection_sorts_filters_extensions_and_skips_our_own_files() {
        let names = ["99-z.conf", "10-flannel.conflist", "05-x.json", "00-multus.conf", "07-a.conf.bak", "20-b.conf"];
        assert_eq!(select(names, Rule::Thick).as_deref(), Some("10-flannel.conflist"));
        // Thick skips every 00-multus*; thin only 00-multus.conf*.
        let names = ["00-multus-extra.conf", "00-multus.conflist", "30-c.conf"];
        assert_eq!(select(names, Rule::Thick).as_deref(), Some("30-c.conf"));
        assert_eq!(select(names, Rule::Thin).as_deref(), Some("00-multus-extra.conf"));
        // Byte order: upper case before lower case, as Go's sort.Strings.
        assert_eq!(select(["b.conf", "B.conf", "a.conf"], Rule::Thick).as_deref(), Some("B.conf"));
        assert_eq!(select(["x.json", ".hidden.tmp1"], Rule::Thin), None);
    }

    #[test]
    fn find_skips_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("01-dir.conf")).unwrap();
        std::fs::write(dir.path().join("02-file.conf"), "{}").unwrap();
        assert_eq!(find(dir.path(), Rule::Thick).unwrap().as_deref(), Some("02-file.conf"));
        assert!(find(&dir.path().join("missing"), Rule::Thick).is_err());
    }

    #[test]
    fn thick_capabilities_are_the_enabled_ones_of_every_plugin() {
        let list = obj(json!({"cniVersion":"0.4.0","capabilities":{"top":true},"plugins":[
            {"type":"a","capabilities":{"portMappings":true,"bandwidth":false}},
            {"type":"b"},
            {"type":"c","capabilities":{"ips":true}}]}));
        assert_eq!(enabled_capabilities(&list).unwrap(), vec!["portMappings", "ips"]);
        let single = obj(json!({"type":"a","capabilities":{"mac":true,"ips":false}}));
        assert_eq!(enabled_capabilities(&single).unwrap(), vec!["mac"]);
        // An empty plugin list falls back to the top level, as upstream does.
        let empty = obj(json!({"plugins":[],"capabilities":{"top":true}}));
        assert_eq!(enabled_capabilities(&empty).unwrap(), vec!["top"]);
        assert!(enabled_capabilities(&obj(json!({"capabilities":{"x":"yes"}}))).is_err());
        assert!(enabled_capabilities(&obj(json!({"plugins":{}}))).is_err());
    }

    #[test]
    fn thin_capabilities_keep_declared_values_and_later_plugins_win() {
        let list = obj(json!({"plugins":[
            {"type":"a","capabilities":{"portMappings":true,"bandwidth":true}},
            {"type":"b","capabilities":{"bandwidth":false}}],"capabilities":{"ignored":true}}));
        let want: BTreeMap<String, bool> =
            [("bandwidth".to_string(), false), ("portMappings".to_string(), true)].into();
        assert_eq!(declared_capabilities(&list).unwrap(), want);
        let empty = obj(json!({"plugins":[],"capabilities":{"ignored":true}}));
        assert!(declared_capabilities(&empty).unwrap().is_empty());
        assert!(declared_capabilities(&obj(json!({"plugins":["x"]}))).is_err());
    }

    #[test]
    fn version_compatibility_matches_upstream() {
        let p = |v: &str| obj(json!({"cniVersion": v}));
        assert!(check_version_compatibility("0.3.1", &p("0.2.0")).is_ok());
        assert!(check_version_compatibility("0.4.0", &p("1.0.0")).is_ok());
        assert_eq!(
            check_version_compatibility("0.4.0", &p("0.3.1")).unwrap_err().to_string(),
            "incompatible CNI versions: delegate cni version is 0.3.1 while top level cni version is 0.4.0"
        );
        assert!(check_version_compatibility("", &p("0.4.0")).is_err());
        assert!(check_version_compatibility("1.0", &p("1.0.0")).is_err());
        assert!(check_version_compatibility("1.0.0", &obj(json!({}))).is_err());
        assert!(check_version_compatibility("1.0.0", &p("")).is_err());
    }
}
