//! Plugin configs and network config lists, and loading them from a conf dir as libcni v1.3.0 does.
//!
//! Configs are kept lossless: the raw JSON object is the source of truth, typed accessors read it,
//! so plugin-specific keys reach the plugin untouched. Subdirectory loading (libcni 1.3.0): a list
//! named N loaded from a file in D also gets every `D/N/*.conf`, unless `loadOnlyInlinedPlugins`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::Error;
use super::version::{self, Version};

/// One plugin's configuration: a JSON object with at least `type`.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    pub raw: Map<String, Value>,
}

fn str_field<'a>(raw: &'a Map<String, Value>, key: &str) -> &'a str {
    raw.get(key).and_then(Value::as_str).unwrap_or("")
}

impl PluginConfig {
    /// Parses a plugin config (libcni `NetworkPluginConfFromBytes`): a JSON object with a `type`.
    pub fn from_bytes(bytes: &[u8]) -> Result<PluginConfig, Error> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| Error::Decoding(format!("error parsing configuration: {e}")))?;
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<PluginConfig, Error> {
        let Value::Object(raw) = value else {
            return Err(Error::Decoding("error parsing configuration: not a JSON object".into()));
        };
        for key in ["type", "name", "cniVersion"] {
            if let Some(v) = raw.get(key) {
                if !v.is_string() {
                    return Err(Error::Decoding(format!("error parsing configuration: {key:?} must be a string")));
                }
            }
        }
        if str_field(&raw, "type").is_empty() {
            return Err(Error::InvalidConfig("error parsing configuration: missing 'type'".into()));
        }
        Ok(PluginConfig { raw })
    }

    pub fn from_file(path: &Path) -> Result<PluginConfig, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("error reading", path, e))?;
        Self::from_bytes(&bytes).map_err(|e| with_path(e, path))
    }

    pub fn plugin_type(&self) -> &str {
        str_field(&self.raw, "type")
    }

    pub fn name(&self) -> &str {
        str_field(&self.raw, "name")
    }

    pub fn cni_version(&self) -> &str {
        str_field(&self.raw, "cniVersion")
    }

    /// Capabilities the plugin declares with `true` (only those get `runtimeConfig` entries).
    pub fn capability_enabled(&self, cap: &str) -> bool {
        self.raw.get("capabilities").and_then(|c| c.get(cap)).and_then(Value::as_bool) == Some(true)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.raw).expect("JSON object serializes")
    }
}

/// A network configuration list (a `.conflist`, or a single `.conf` wrapped as a list).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    pub name: String,
    pub cni_version: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    pub load_only_inlined_plugins: bool,
    pub plugins: Vec<PluginConfig>,
    /// The list document as parsed.
    pub raw: Map<String, Value>,
    /// The bytes it was parsed from (what libcni caches as the attachment's config).
    pub bytes: Vec<u8>,
}

/// `strconv.ParseBool` plus real booleans: libcni accepts both for the list flags.
fn parse_bool_field(raw: &Map<String, Value>, key: &str) -> Result<bool, Error> {
    match raw.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => crate::golang::parse_bool(s)
            .ok_or_else(|| Error::Decoding(format!("error parsing configuration list: invalid {key} value {s:?}"))),
        Some(other) => Err(Error::Decoding(format!("error parsing configuration list: invalid {key} type {other}"))),
    }
}

impl NetworkConfigList {
    /// Parses a list document (libcni `NetworkConfFromBytes`); subdirectory plugins are not added here.
    pub fn from_bytes(bytes: &[u8]) -> Result<NetworkConfigList, Error> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::Decoding(format!("error parsing configuration list: {e}")))?;
        let mut list = Self::from_value(value)?;
        list.bytes = bytes.to_vec();
        Ok(list)
    }

    pub fn from_value(value: Value) -> Result<NetworkConfigList, Error> {
        let Value::Object(raw) = value else {
            return Err(Error::Decoding("error parsing configuration list: not a JSON object".into()));
        };
        let name = match raw.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) | None => {
                return Err(Error::InvalidConfig("error parsing configuration list: no name".into()));
            }
            Some(_) => return Err(Error::Decoding("error parsing configuration list: invalid name type".into())),
        };
        let mut cni_version = match raw.get("cniVersion") {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(Error::Decoding("error parsing configuration list: invalid cniVersion type".into())),
        };
        if let Some(versions) = raw.get("cniVersions") {
            let Value::Array(items) = versions else {
                return Err(Error::Decoding("error parsing configuration list: invalid type for cniVersions".into()));
            };
            let current = Version::parse(version::CURRENT)?;
            let mut candidates = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let Some(s) = item.as_str() else {
                    return Err(Error::Decoding(format!(
                        "error parsing configuration list: invalid type for cniVersions index {i}"
                    )));
                };
                let v = Version::parse(s).map_err(|e| {
                    Error::Decoding(format!(
                        "error parsing configuration list: invalid cniVersions entry {s} at index {i}: {e}"
                    ))
                })?;
                if v <= current {
                    candidates.push((v, s.to_string()));
                }
            }
            if !cni_version.is_empty() {
                if let Ok(v) = Version::parse(&cni_version) {
                    if v <= current {
                        candidates.push((v, cni_version.clone()));
                    }
                }
            }
            if let Some((_, best)) = candidates.into_iter().max_by_key(|(v, _)| *v) {
                cni_version = best;
            }
        }
        let disable_check = parse_bool_field(&raw, "disableCheck")?;
        let disable_gc = parse_bool_field(&raw, "disableGC")?;
        let load_only_inlined_plugins = parse_bool_field(&raw, "loadOnlyInlinedPlugins")?;
        let mut plugins = Vec::new();
        match raw.get("plugins") {
            None if load_only_inlined_plugins => {
                return Err(Error::InvalidConfig(
                    "error parsing configuration list: `loadOnlyInlinedPlugins` is true, and no 'plugins' key".into(),
                ));
            }
            None => {}
            Some(Value::Array(items)) => {
                if items.is_empty() {
                    return Err(Error::InvalidConfig("error parsing configuration list: no plugins in list".into()));
                }
                for (i, item) in items.iter().enumerate() {
                    plugins.push(
                        PluginConfig::from_value(item.clone())
                            .map_err(|e| Error::InvalidConfig(format!("failed to parse plugin config {i}: {e}")))?,
                    );
                }
            }
            Some(_) => {
                return Err(Error::Decoding("error parsing configuration list: invalid 'plugins' type".into()));
            }
        }
        let bytes = serde_json::to_vec(&raw).expect("JSON object serializes");
        Ok(NetworkConfigList {
            name,
            cni_version,
            disable_check,
            disable_gc,
            load_only_inlined_plugins,
            plugins,
            raw,
            bytes,
        })
    }

    /// Loads a list file and appends `<dir>/<name>/*.conf` (libcni `NetworkConfFromFile`).
    pub fn from_file(path: &Path) -> Result<NetworkConfigList, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("error reading", path, e))?;
        let mut list = Self::from_bytes(&bytes).map_err(|e| with_path(e, path))?;
        if !list.load_only_inlined_plugins {
            let dir = path.parent().unwrap_or(Path::new("."));
            list.plugins.extend(subdirectory_plugins(dir, &list.name)?);
        }
        if list.plugins.is_empty() {
            return Err(Error::InvalidConfig(format!(
                "no plugin configs found for network {:?} in {}",
                list.name,
                path.display()
            )));
        }
        Ok(list)
    }

    /// Wraps a single plugin config as a one-plugin list (libcni `ConfListFromConf`).
    pub fn from_single(conf: PluginConfig) -> Result<NetworkConfigList, Error> {
        let mut doc = Map::new();
        doc.insert("cniVersion".into(), Value::String(conf.cni_version().to_string()));
        doc.insert("name".into(), Value::String(conf.name().to_string()));
        doc.insert("plugins".into(), Value::Array(vec![Value::Object(conf.raw)]));
        Self::from_value(sorted_keys(Value::Object(doc)))
    }

    /// Loads a `.conf`/`.json` single config or a `.conflist` by extension, wrapping singles.
    pub fn from_any_file(path: &Path) -> Result<NetworkConfigList, Error> {
        if path.extension().and_then(|e| e.to_str()) == Some("conflist") {
            Self::from_file(path)
        } else {
            Self::from_single(PluginConfig::from_file(path)?)
        }
    }

    /// Finds network `name` in `dir`: `.conflist` files first, then `.conf`/`.json` (libcni `LoadNetworkConf`).
    pub fn load(dir: &Path, name: &str) -> Result<NetworkConfigList, Error> {
        for path in conf_files(dir, &["conflist"])? {
            let list = Self::from_file(&path)?;
            if list.name == name {
                return Ok(list);
            }
        }
        for path in conf_files(dir, &["conf", "json"])? {
            let conf = PluginConfig::from_file(&path)?;
            if conf.name() == name {
                return Self::from_single(conf);
            }
        }
        Err(Error::InvalidConfig(format!("no net configuration with name {name:?} in {}", dir.display())))
    }

    pub fn version(&self) -> Result<Version, Error> {
        Version::parse(&self.cni_version)
    }
}

fn with_path(e: Error, path: &Path) -> Error {
    match e {
        Error::Decoding(m) => Error::Decoding(format!("{}: {m}", path.display())),
        Error::InvalidConfig(m) => Error::InvalidConfig(format!("{}: {m}", path.display())),
        other => other,
    }
}

/// The value with every object's keys in lexical order, as Go's encoder writes maps.
pub fn sorted_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted_keys(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted_keys).collect()),
        other => other,
    }
}

pub use super::validate::valid_name;

/// Every `*.conf` in `<dir>/<name>/` (lexical, no recursion; each must have a `type`).
/// The name is validated first, so it can never climb out of `dir`.
pub fn subdirectory_plugins(dir: &Path, name: &str) -> Result<Vec<PluginConfig>, Error> {
    if !valid_name(name) {
        return Err(Error::InvalidConfig(format!(
            "invalid network name {name:?}: must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"
        )));
    }
    conf_files(&dir.join(name), &["conf"])?.iter().map(|p| PluginConfig::from_file(p)).collect()
}

/// Regular entries of `dir` with one of `extensions`, in lexical order; a missing dir is empty.
pub fn conf_files(dir: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("error reading directory", dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("error reading directory", dir, e))?;
        let path = entry.path();
        if path.is_dir() {
            continue;
        }
        if path.extension().and_then(|e| e.to_str()).is_some_and(|e| extensions.contains(&e)) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("net-1_a.b"));
        assert!(!valid_name(".."));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("-a"));
        assert!(!valid_name(""));
    }

    #[test]
    fn cni_versions_picks_highest_known() {
        let l = NetworkConfigList::from_bytes(
            br#"{"name":"n","cniVersion":"0.4.0","cniVersions":["1.0.0","9.9.9"],"plugins":[{"type":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(l.cni_version, "1.0.0");
        assert!(NetworkConfigList::from_bytes(br#"{"name":"n","cniVersions":["x"]}"#).is_err());
    }

    #[test]
    fn flags_accept_strings() {
        let l = NetworkConfigList::from_bytes(br#"{"name":"n","disableCheck":"true","disableGC":true}"#).unwrap();
        assert!(l.disable_check && l.disable_gc && l.plugins.is_empty());
        assert!(NetworkConfigList::from_bytes(br#"{"name":"n","disableCheck":"yes"}"#).is_err());
        assert!(NetworkConfigList::from_bytes(br#"{"name":"n","loadOnlyInlinedPlugins":true}"#).is_err());
        assert!(NetworkConfigList::from_bytes(br#"{"name":"n","plugins":[]}"#).is_err());
        assert!(NetworkConfigList::from_bytes(br#"{"plugins":[{"type":"x"}]}"#).is_err());
    }

    #[test]
    fn plugin_needs_type_and_keeps_unknown_keys() {
        assert!(PluginConfig::from_bytes(br#"{"name":"x"}"#).is_err());
        let p = PluginConfig::from_bytes(br#"{"type":"calico","datastore_type":"kubernetes","nested":{"a":[1,2]}}"#)
            .unwrap();
        assert_eq!(
            String::from_utf8(p.to_bytes()).unwrap(),
            r#"{"type":"calico","datastore_type":"kubernetes","nested":{"a":[1,2]}}"#
        );
    }
}
