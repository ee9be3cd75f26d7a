//! CNI results of every spec version and the conversions between them, as libcni v1.3.0 does them.
//!
//! One canonical model ([`CniResult`], the 1.x shape) is parsed from any layout and emitted in any
//! layout. The conversion rules are libcni's: 0.2.0 keeps the first IPv4 and first IPv6 address and
//! sorts routes by family (and fails with "cannot convert: no valid IP addresses" when there are
//! none), 0.3.x/0.4.0 carry `"version":"4"|"6"` on each IP and only name/mac/sandbox on interfaces.

use core::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::error::Error;
use super::version::{Layout, Version};
use crate::prelude::*;

/// An address with its prefix length, host bits kept (`10.99.0.2/24`), like Go's `types.IPNet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, Error> {
        let bad = || Error::Decoding(format!("invalid CIDR address {s:?}"));
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }
}

impl core::fmt::Display for Cidr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        Cidr::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// An interface of a 1.x result (0.3.x/0.4.0 carry only name, mac and sandbox).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mtu: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    #[serde(rename = "socketPath", default, skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    #[serde(rename = "pciID", default, skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

/// An address assigned to an interface (index into `interfaces`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    pub address: Cidr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// A route (the fields after `gw` exist from 1.1.0 on; older layouts pass them through as libcni does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: Cidr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mtu: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub advmss: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<i32>,
}

impl Route {
    pub fn new(dst: Cidr, gw: Option<IpAddr>) -> Route {
        Route { dst, gw, mtu: 0, advmss: 0, priority: 0, table: None, scope: None }
    }
}

/// DNS settings; always present in a result (as `{}` when empty), like Go's encoding.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// A result in canonical (1.x) form, with the version it was produced in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CniResult {
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

// ---- wire shapes of the three layouts ------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Wire1 {
    #[serde(rename = "cniVersion", default, skip_serializing_if = "String::is_empty")]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Dns,
}

#[derive(Serialize, Deserialize)]
struct Interface04 {
    name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    mac: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sandbox: String,
}

#[derive(Serialize, Deserialize)]
struct IpConfig04 {
    #[serde(default)]
    version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
    address: Cidr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
}

#[derive(Serialize, Deserialize)]
struct Wire04 {
    #[serde(rename = "cniVersion", default, skip_serializing_if = "String::is_empty")]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<Interface04>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ips: Vec<IpConfig04>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Dns,
}

#[derive(Serialize, Deserialize)]
struct Route02 {
    dst: Cidr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gw: Option<IpAddr>,
}

#[derive(Serialize, Deserialize)]
struct IpConfig02 {
    ip: Cidr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route02>,
}

#[derive(Serialize, Deserialize)]
struct Wire02 {
    #[serde(rename = "cniVersion", default, skip_serializing_if = "String::is_empty")]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip4: Option<IpConfig02>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip6: Option<IpConfig02>,
    #[serde(default)]
    dns: Dns,
}

fn decode_err(e: serde_json::Error) -> Error {
    Error::Decoding(format!("decoding result: {e}"))
}

impl CniResult {
    /// Parses a result of any layout. The result's own `cniVersion` wins; `fallback_version`
    /// (the config's) is used when it has none, as libcni's `fixupResultVersion` does.
    pub fn parse(bytes: &[u8], fallback_version: &str) -> Result<CniResult, Error> {
        let value: Value = serde_json::from_slice(bytes).map_err(decode_err)?;
        Self::from_value(value, fallback_version)
    }

    pub fn from_value(value: Value, fallback_version: &str) -> Result<CniResult, Error> {
        let own = value.get("cniVersion").and_then(Value::as_str).unwrap_or("");
        let version = if own.is_empty() { fallback_version } else { own }.to_string();
        let v = Version::parse(&version)?;
        if !v.is_supported() {
            return Err(Error::IncompatibleVersion(format!("unsupported result version {version:?}")));
        }
        let mut r = match v.layout() {
            Layout::V1 => {
                let w: Wire1 = serde_json::from_value(value).map_err(decode_err)?;
                CniResult {
                    cni_version: String::new(),
                    interfaces: w.interfaces,
                    ips: w.ips,
                    routes: w.routes,
                    dns: w.dns,
                }
            }
            Layout::V04 => {
                let w: Wire04 = serde_json::from_value(value).map_err(decode_err)?;
                CniResult {
                    cni_version: String::new(),
                    interfaces: w
                        .interfaces
                        .into_iter()
                        .map(|i| Interface { name: i.name, mac: i.mac, sandbox: i.sandbox, ..Default::default() })
                        .collect(),
                    ips: w
                        .ips
                        .into_iter()
                        .map(|ip| IpConfig { interface: ip.interface, address: ip.address, gateway: ip.gateway })
                        .collect(),
                    routes: w.routes,
                    dns: w.dns,
                }
            }
            Layout::V02 => {
                let w: Wire02 = serde_json::from_value(value).map_err(decode_err)?;
                let mut r = CniResult { dns: w.dns, ..Default::default() };
                for ipc in [w.ip4, w.ip6].into_iter().flatten() {
                    r.ips.push(IpConfig { interface: None, address: ipc.ip, gateway: ipc.gateway });
                    r.routes.extend(ipc.routes.into_iter().map(|rt| Route::new(rt.dst, rt.gw)));
                }
                r
            }
        };
        r.cni_version = version;
        Ok(r)
    }

    /// The result as a JSON value in `version`'s layout.
    pub fn to_value(&self, version: &str) -> Result<Value, Error> {
        let v = Version::parse(version)?;
        if !v.is_supported() {
            return Err(Error::IncompatibleVersion(format!(
                "cannot convert a result to unsupported version {version:?}"
            )));
        }
        let cni_version = version.to_string();
        let value = match v.layout() {
            Layout::V1 => serde_json::to_value(Wire1 {
                cni_version,
                interfaces: self.interfaces.clone(),
                ips: self.ips.clone(),
                routes: self.routes.clone(),
                dns: self.dns.clone(),
            }),
            Layout::V04 => serde_json::to_value(Wire04 {
                cni_version,
                interfaces: self
                    .interfaces
                    .iter()
                    .map(|i| Interface04 { name: i.name.clone(), mac: i.mac.clone(), sandbox: i.sandbox.clone() })
                    .collect(),
                ips: self
                    .ips
                    .iter()
                    .map(|ip| IpConfig04 {
                        version: if ip.address.is_ipv4() { "4" } else { "6" }.to_string(),
                        interface: ip.interface,
                        address: ip.address,
                        gateway: ip.gateway,
                    })
                    .collect(),
                routes: self.routes.clone(),
                dns: self.dns.clone(),
            }),
            Layout::V02 => {
                let first = |v4: bool| {
                    self.ips.iter().find(|ip| ip.address.is_ipv4() == v4).map(|ip| IpConfig02 {
                        ip: ip.address,
                        gateway: ip.gateway,
                        routes: self
                            .routes
                            .iter()
                            .filter(|r| r.dst.is_ipv4() == v4)
                            .map(|r| Route02 { dst: r.dst, gw: r.gw })
                            .collect(),
                    })
                };
                let (ip4, ip6) = (first(true), first(false));
                if ip4.is_none() && ip6.is_none() {
                    return Err(Error::Decoding(format!("cannot convert result to {version}: no valid IP addresses")));
                }
                serde_json::to_value(Wire02 { cni_version, ip4, ip6, dns: self.dns.clone() })
            }
        };
        value.map_err(|e| Error::Internal(format!("encoding result: {e}")))
    }

    /// The result as JSON text in `version`'s layout.
    pub fn to_json(&self, version: &str) -> Result<String, Error> {
        Ok(self.to_value(version)?.to_string())
    }

    /// Re-expresses a raw result in another version (libcni's `Convert`).
    pub fn convert(bytes: &[u8], fallback_version: &str, to: &str) -> Result<Value, Error> {
        Self::parse(bytes, fallback_version)?.to_value(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_keeps_host_bits_and_canonicalises() {
        assert_eq!(Cidr::parse("10.99.0.2/24").unwrap().to_string(), "10.99.0.2/24");
        assert_eq!(Cidr::parse("2001:DB8::0001/64").unwrap().to_string(), "2001:db8::1/64");
        assert!(Cidr::parse("10.0.0.1/33").is_err());
        assert!(Cidr::parse("10.0.0.1").is_err());
    }

    #[test]
    fn no_ip_cannot_go_to_020() {
        let r = CniResult { cni_version: "1.0.0".into(), ..Default::default() };
        assert!(r.to_value("0.2.0").unwrap_err().to_string().contains("no valid IP addresses"));
        assert_eq!(r.to_json("1.0.0").unwrap(), r#"{"cniVersion":"1.0.0","dns":{}}"#);
    }

    #[test]
    fn result_version_falls_back_to_config() {
        let r = CniResult::parse(br#"{"ip4":{"ip":"10.0.0.2/24"}}"#, "0.2.0").unwrap();
        assert_eq!(r.cni_version, "0.2.0");
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.2/24");
        assert!(CniResult::parse(br#"{"cniVersion":"7.0.0"}"#, "").is_err());
    }
}
