//! CNI specification versions: the supported list, ordering, negotiation and the VERSION reply.
//!
//! Owns nothing but version strings and their semantics; results and configs ask here whether a
//! version supports a command or which layout it uses.

use serde::{Deserialize, Serialize};

use super::error::{CniError, Error};
use crate::prelude::*;

/// Every version this implementation reads and writes, oldest first.
pub const ALL: &[&str] = &["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest version; what our own plugins answer with by default.
pub const CURRENT: &str = "1.1.0";

/// A parsed `major.minor.patch` version (the CNI spec uses nothing fancier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    pub const V0_1_0: Version = Version(0, 1, 0);
    pub const V0_2_0: Version = Version(0, 2, 0);
    pub const V0_3_0: Version = Version(0, 3, 0);
    pub const V0_4_0: Version = Version(0, 4, 0);
    pub const V1_0_0: Version = Version(1, 0, 0);
    pub const V1_1_0: Version = Version(1, 1, 0);

    /// Parses `a.b.c`. An empty string is 0.1.0 (configs without `cniVersion` predate the field).
    pub fn parse(s: &str) -> Result<Version, Error> {
        if s.is_empty() {
            return Ok(Version::V0_1_0);
        }
        let bad = || Error::Decoding(format!("invalid version {s:?}: must be of the form major.minor.patch"));
        let mut parts = s.split('.');
        let mut next = || -> Result<u32, Error> {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let v = Version(next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }

    /// True when this version is one of [`ALL`].
    pub fn is_supported(self) -> bool {
        ALL.iter().any(|s| Version::parse(s).ok() == Some(self))
    }

    /// Which result layout the version uses.
    pub fn layout(self) -> Layout {
        if self < Version::V0_3_0 {
            Layout::V02
        } else if self < Version::V1_0_0 {
            Layout::V04
        } else {
            Layout::V1
        }
    }

    /// CHECK exists from 0.4.0 on.
    pub fn supports_check(self) -> bool {
        self >= Version::V0_4_0
    }

    /// GC and STATUS exist from 1.1.0 on.
    pub fn supports_gc_status(self) -> bool {
        self >= Version::V1_1_0
    }
}

impl core::fmt::Display for Version {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The three result layouts of the spec's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// 0.1.0 and 0.2.0: `ip4` / `ip6` objects.
    V02,
    /// 0.3.0, 0.3.1, 0.4.0: `interfaces`, `ips` with a `version` field.
    V04,
    /// 1.0.0 and later: `ips` without `version`, richer interfaces and routes.
    V1,
}

/// The reply to `CNI_COMMAND=VERSION`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(rename = "supportedVersions", default)]
    pub supported_versions: Vec<String>,
}

impl VersionInfo {
    /// What our own plugins report: every version in [`ALL`].
    pub fn ours() -> VersionInfo {
        VersionInfo {
            cni_version: CURRENT.to_string(),
            supported_versions: ALL.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Decodes a VERSION reply. Plugins older than 0.3.0 print only `{"cniVersion":"0.2.0"}`,
    /// which means they speak 0.1.0 and 0.2.0 (as libcni interprets it).
    pub fn decode(bytes: &[u8]) -> Result<VersionInfo, Error> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| Error::Decoding(format!("decoding version info: {e}")))?;
        let cni_version = v.get("cniVersion").and_then(|v| v.as_str()).unwrap_or("").to_string();
        match v.get("supportedVersions") {
            Some(list) => {
                let supported_versions = serde_json::from_value(list.clone())
                    .map_err(|e| Error::Decoding(format!("decoding version info: {e}")))?;
                Ok(VersionInfo { cni_version, supported_versions })
            }
            None if cni_version.is_empty() || cni_version == "0.1.0" || cni_version == "0.2.0" => Ok(VersionInfo {
                cni_version: "0.2.0".into(),
                supported_versions: vec!["0.1.0".into(), "0.2.0".into()],
            }),
            None => Err(Error::Decoding(format!("version info from a {cni_version} plugin lacks supportedVersions"))),
        }
    }

    pub fn supports(&self, v: &str) -> bool {
        self.supported_versions.iter().any(|s| s == v)
    }
}

/// Picks the highest version of `list` that we support (libcni's `cniVersions` handling).
pub fn highest_supported<'a>(list: impl IntoIterator<Item = &'a str>) -> Option<String> {
    list.into_iter()
        .filter_map(|s| Version::parse(s).ok().filter(|v| v.is_supported()).map(|v| (v, s)))
        .max_by_key(|(v, _)| *v)
        .map(|(_, s)| s.to_string())
}

/// Plugin-side negotiation: the config's version must be one we support (spec: "incompatible CNI versions").
pub fn reconcile(config_version: &str, supported: &[&str]) -> Result<Version, CniError> {
    let v = if config_version.is_empty() { "0.1.0" } else { config_version };
    if supported.contains(&v) {
        return Version::parse(v).map_err(|e| e.to_cni());
    }
    Err(CniError::new(
        super::error::code::INCOMPATIBLE_VERSION,
        "incompatible CNI versions",
        format!("config is {v:?}, plugin supports {supported:?}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders() {
        assert_eq!(Version::parse("0.3.1").unwrap(), Version(0, 3, 1));
        assert_eq!(Version::parse("").unwrap(), Version::V0_1_0);
        assert!(Version::parse("1.0").is_err());
        assert!(Version::parse("1.0.0.0").is_err());
        assert!(Version::parse("a.b.c").is_err());
        assert!(Version::parse("1.+1.0").is_err());
        assert!(Version::parse("0.4.0").unwrap() < Version::parse("1.0.0").unwrap());
        assert!(Version::parse("0.10.0").unwrap() > Version::parse("0.4.0").unwrap());
    }

    #[test]
    fn layouts_and_commands() {
        assert_eq!(Version::parse("0.2.0").unwrap().layout(), Layout::V02);
        assert_eq!(Version::parse("0.3.1").unwrap().layout(), Layout::V04);
        assert_eq!(Version::parse("1.1.0").unwrap().layout(), Layout::V1);
        assert!(!Version::parse("0.3.1").unwrap().supports_check());
        assert!(Version::parse("0.4.0").unwrap().supports_check());
        assert!(!Version::parse("1.0.0").unwrap().supports_gc_status());
        assert!(Version::parse("1.1.0").unwrap().supports_gc_status());
    }

    #[test]
    fn highest_supported_skips_unknown() {
        assert_eq!(highest_supported(["0.4.0", "1.0.0", "9.9.9", "garbage"]), Some("1.0.0".into()));
        assert_eq!(highest_supported(["9.9.9"]), None);
    }

    #[test]
    fn decodes_legacy_version_reply() {
        let v = VersionInfo::decode(br#"{"cniVersion":"0.2.0"}"#).unwrap();
        assert_eq!(v.supported_versions, vec!["0.1.0", "0.2.0"]);
        let v = VersionInfo::decode(br#"{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}"#).unwrap();
        assert!(v.supports("0.4.0") && !v.supports("1.1.0"));
    }

    #[test]
    fn reconcile_refuses_unknown() {
        let e = reconcile("9.9.9", ALL).unwrap_err();
        assert_eq!(e.code, 1);
        assert_eq!(e.msg, "incompatible CNI versions");
        assert!(reconcile("", ALL).is_ok());
    }
}
