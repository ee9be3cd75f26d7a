//! libcni's result cache: `<cacheDir>/results/<net>-<containerID>-<ifname>` in the `cniCacheV1` format.
//!
//! Byte-compatible with Go libcni v1.3.0, so a node can mix our binaries and Go ones: the config is
//! base64 (Go's `[]byte`), `cniArgs` is a list of pairs, `result` is the raw result object. Writes
//! are atomic (temp file + rename) with dir 0700 and file 0600. Legacy files that hold a bare
//! result are read too.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::config::sorted_keys;
use super::error::Error;
use crate::files::{Durability, write_atomic};

pub const KIND_V1: &str = "cniCacheV1";

/// libcni's default cache directory.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni";

/// The on-disk document (libcni `cachedInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedInfo {
    pub kind: String,
    #[serde(rename = "containerId")]
    pub container_id: String,
    #[serde(with = "b64")]
    pub config: Vec<u8>,
    #[serde(rename = "ifName")]
    pub if_name: String,
    #[serde(rename = "networkName")]
    pub network_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub netns: String,
    #[serde(rename = "cniArgs", default, skip_serializing_if = "Vec::is_empty")]
    pub cni_args: Vec<[String; 2]>,
    #[serde(rename = "capabilityArgs", default, skip_serializing_if = "Map::is_empty")]
    pub capability_args: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        // Go encodes a nil []byte as null.
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        base64::engine::general_purpose::STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// What reading a cache file found.
#[derive(Debug, Clone, PartialEq)]
pub enum Cached {
    /// No file: nothing was cached (a plain state, not an error).
    Missing,
    /// A `cniCacheV1` document.
    V1(Box<CachedInfo>),
    /// A pre-cniCacheV1 file holding only the raw result.
    Legacy(Value),
}

impl Cached {
    /// The cached result object, if any.
    pub fn into_result(self) -> Option<Value> {
        match self {
            Cached::Missing => None,
            Cached::V1(info) => info.result,
            Cached::Legacy(v) => Some(v),
        }
    }
}

/// Where the cache for one attachment lives.
pub fn path(cache_dir: &Path, network: &str, container_id: &str, ifname: &str) -> PathBuf {
    cache_dir.join("results").join(format!("{network}-{container_id}-{ifname}"))
}

/// Reads an attachment's cache; unparsable content is an error the caller decides about.
pub fn read(file: &Path) -> Result<Cached, Error> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Cached::Missing),
        Err(e) => return Err(Error::io("failed to read cached result", file, e)),
    };
    if let Ok(info) = serde_json::from_slice::<CachedInfo>(&bytes) {
        if info.kind == KIND_V1 {
            return Ok(Cached::V1(Box::new(info)));
        }
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(Cached::Legacy(v)),
        _ => Err(Error::Decoding(format!("corrupt cached result {}", file.display()))),
    }
}

/// Writes `info` atomically to `file` (dir 0700, file 0600), encoded as Go's `json.Marshal` would.
pub fn write(file: &Path, info: &CachedInfo) -> Result<(), Error> {
    // No fsync: like libcni. After a power loss the namespaces are gone too, and a cache lost
    // with them reads as missing or corrupt, which DEL handles (it proceeds without prevResult).
    Ok(write_atomic(file, &encode(info)?, 0o600, 0o700, Durability::Rename)?)
}

/// The document as Go libcni writes it: struct field order, sorted map keys (see [`new_info`])
/// and Go's HTML-safe escaping of `<`, `>`, `&`, U+2028 and U+2029.
pub fn encode(info: &CachedInfo) -> Result<Vec<u8>, Error> {
    let text = serde_json::to_string(info).map_err(|e| Error::Internal(format!("encoding cache: {e}")))?;
    Ok(crate::golang::html_escape(&text).into_bytes())
}

/// Removes an attachment's cache; a missing file is fine.
pub fn remove(file: &Path) -> Result<(), Error> {
    match std::fs::remove_file(file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("failed to remove cached result", file, e)),
    }
}

/// Every `cniCacheV1` document under `<cache_dir>/results` (libcni `GetCachedAttachments`),
/// optionally only one container's. Unreadable or foreign files are skipped.
pub fn attachments(cache_dir: &Path, container_id: Option<&str>) -> Result<Vec<CachedInfo>, Error> {
    let dir = cache_dir.join("results");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("failed to read cache directory", &dir, e)),
    };
    let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    let mut out = Vec::new();
    for p in names {
        if let Ok(Cached::V1(info)) = read(&p) {
            if container_id.is_none_or(|c| c == info.container_id) {
                out.push(*info);
            }
        }
    }
    Ok(out)
}

/// Builds a cache document for a successful ADD.
#[allow(clippy::too_many_arguments)]
pub fn new_info(
    network: &str,
    config: &[u8],
    container_id: &str,
    ifname: &str,
    netns: &str,
    args: &[(String, String)],
    capability_args: &Map<String, Value>,
    result: Value,
) -> CachedInfo {
    CachedInfo {
        kind: KIND_V1.into(),
        container_id: container_id.into(),
        config: config.to_vec(),
        if_name: ifname.into(),
        network_name: network.into(),
        netns: netns.into(),
        cni_args: args.iter().map(|(k, v)| [k.clone(), v.clone()]).collect(),
        // Go stores both as generic maps, so its encoder sorts their keys; so do we.
        capability_args: match sorted_keys(Value::Object(capability_args.clone())) {
            Value::Object(m) => m,
            _ => unreachable!("an object stays an object"),
        },
        result: Some(sorted_keys(result)),
    }
}

/// Decodes base64 the way the cache stores configs (for tools and tests).
pub fn decode_config(s: &str) -> Result<Vec<u8>, Error> {
    base64::engine::general_purpose::STANDARD.decode(s).map_err(|e| Error::Decoding(format!("cache config: {e}")))
}
