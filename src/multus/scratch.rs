//! The scratch cache `<cniDir>/<containerID>`: the delegates of a pod, written before any delegate
//! runs so DEL can undo exactly what ADD did. Upstream's JSON shape (an array of `DelegateNetConf`:
//! `Conf`, `ConfList`, `Name`, `ifnameRequest`, ..., `Bytes` in base64), so a node upgraded from Go
//! multus can DEL pods created before the upgrade and the other way round.
//!
//! Fix of upstream #1449: `Bytes` of a list is the whole list with every plugin-specific key (and
//! the plugins loaded from a subdirectory), not a lossy re-marshal, so DEL reaches e.g. Calico with
//! its `datastore_type` and `kubeconfig`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{Map, Value, json};

use super::delegate::{Delegate, DelegateConfig, Requests};
use crate::cni::error::Error;
use crate::files::{Durability, write_atomic};

pub fn path(cni_dir: &Path, container_id: &str) -> PathBuf {
    cni_dir.join(container_id)
}

/// Go's `types.NetConf` view of a plugin config (standard keys only).
fn go_netconf(raw: &Map<String, Value>) -> Value {
    let mut m = Map::new();
    for k in ["cniVersion", "name", "type", "capabilities"] {
        if let Some(v) = raw.get(k).filter(|v| !v.is_null() && v.as_str() != Some("")) {
            m.insert(k.into(), v.clone());
        }
    }
    let ipam_type = raw.get("ipam").and_then(|i| i.get("type")).cloned();
    m.insert("ipam".into(), ipam_type.map(|t| json!({"type": t})).unwrap_or_else(|| json!({})));
    m.insert("dns".into(), raw.get("dns").cloned().unwrap_or_else(|| json!({})));
    Value::Object(m)
}

fn entry(d: &Delegate) -> Value {
    let doc = d.config.to_value();
    let (conf, conf_list) = match &d.config {
        DelegateConfig::Single(p) => (go_netconf(&p.raw), json!({})),
        DelegateConfig::List(l) => {
            let mut cl = Map::new();
            cl.insert("cniVersion".into(), Value::String(l.cni_version.clone()));
            cl.insert("name".into(), Value::String(l.name.clone()));
            if l.disable_check {
                cl.insert("disableCheck".into(), Value::Bool(true));
            }
            cl.insert("plugins".into(), Value::Array(l.plugins.iter().map(|p| go_netconf(&p.raw)).collect()));
            (json!({"dns": {}, "ipam": {}}), Value::Object(cl))
        }
    };
    let r = &d.requests;
    let mut m = Map::new();
    m.insert("Conf".into(), conf);
    m.insert("ConfList".into(), conf_list);
    m.insert("Name".into(), Value::String(d.name.clone()));
    let mut opt = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    };
    opt("ifnameRequest", r.ifname.clone().map(Value::String));
    opt("macRequest", r.mac.clone().map(Value::String));
    opt("infinibandGUIDRequest", r.infiniband_guid.clone().map(Value::String));
    opt("ipRequest", (!r.ips.is_empty()).then(|| Value::from(r.ips.clone())));
    opt(
        "default-route",
        r.gateway.as_ref().map(|g| Value::from(g.iter().map(|ip| ip.to_string()).collect::<Vec<_>>())),
    );
    m.insert("IsFilterV4Gateway".into(), Value::Bool(d.filter_v4_gateway));
    m.insert("IsFilterV6Gateway".into(), Value::Bool(d.filter_v6_gateway));
    let mut opt = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    };
    opt("deviceID", r.device_id.clone().map(Value::String));
    opt("resourceName", r.resource_name.clone().map(Value::String));
    let bytes = serde_json::to_vec(&doc).expect("config serializes");
    m.insert("Bytes".into(), Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)));
    Value::Object(m)
}

/// The document for a pod's delegates (first = master).
pub fn encode(delegates: &[Delegate]) -> Vec<u8> {
    serde_json::to_vec(&Value::Array(delegates.iter().map(entry).collect())).expect("scratch serializes")
}

/// Writes the scratch cache atomically (temp + rename). No fsync, like upstream: it cost ~6 ms per
/// ADD here, and a scratch cache lost to a power cut reads as missing or corrupt, which DEL handles
/// (it rebuilds the delegates from the configuration where that is possible).
pub fn save(cni_dir: &Path, container_id: &str, delegates: &[Delegate]) -> Result<(), Error> {
    Ok(write_atomic(&path(cni_dir, container_id), &encode(delegates), 0o600, 0o700, Durability::Rename)?)
}

/// Parses a scratch document, ours or Go multus's.
pub fn decode(bytes: &[u8], fallback_version: &str) -> Result<Vec<Delegate>, Error> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| Error::Decoding(format!("corrupt scratch cache: {e}")))?;
    let items = doc.as_array().ok_or_else(|| Error::Decoding("corrupt scratch cache: not a list".into()))?;
    if items.is_empty() {
        return Err(Error::Decoding("corrupt scratch cache: no delegates".into()));
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let bad = |what: &str| Error::Decoding(format!("corrupt scratch cache: delegate {i}: {what}"));
        let b64 = item.get("Bytes").and_then(Value::as_str).ok_or_else(|| bad("no Bytes"))?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| bad("Bytes is not base64"))?;
        let mut conf: Value = serde_json::from_slice(&bytes).map_err(|_| bad("Bytes is not JSON"))?;
        // Go marks a list by ConfList.plugins; its Bytes then hold the list document.
        let is_list = item
            .get("ConfList")
            .and_then(|c| c.get("plugins"))
            .and_then(Value::as_array)
            .is_some_and(|p| !p.is_empty());
        if is_list && conf.get("plugins").is_none() {
            return Err(bad("a list without plugins"));
        }
        if !is_list {
            if let Some(o) = conf.as_object_mut() {
                o.remove("plugins");
            }
        }
        let config = DelegateConfig::from_value(conf, fallback_version).map_err(|e| bad(&e.to_string()))?;
        let s = |k: &str| item.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let gateway = match item.get("default-route") {
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|v| v.as_str().and_then(|s| s.parse::<IpAddr>().ok()).ok_or_else(|| bad("bad default-route")))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => None,
        };
        let requests = Requests {
            ifname: s("ifnameRequest"),
            mac: s("macRequest"),
            ips: item
                .get("ipRequest")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            infiniband_guid: s("infinibandGUIDRequest"),
            gateway,
            device_id: s("deviceID"),
            resource_name: s("resourceName"),
            ..Requests::default()
        };
        let mut d = Delegate::new(config);
        d.name = s("Name").unwrap_or_else(|| d.config.network_name().to_string());
        d.master = i == 0;
        d.requests = requests;
        d.filter_v4_gateway = item.get("IsFilterV4Gateway").and_then(Value::as_bool).unwrap_or(false);
        d.filter_v6_gateway = item.get("IsFilterV6Gateway").and_then(Value::as_bool).unwrap_or(false);
        out.push(d);
    }
    Ok(out)
}

/// What reading the scratch cache found.
#[derive(Debug)]
pub enum Loaded {
    Missing,
    Delegates(Vec<Delegate>),
    Corrupt(Error),
}

pub fn load(cni_dir: &Path, container_id: &str, fallback_version: &str) -> Loaded {
    match std::fs::read(path(cni_dir, container_id)) {
        Ok(b) => match decode(&b, fallback_version) {
            Ok(d) => Loaded::Delegates(d),
            Err(e) => Loaded::Corrupt(e),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Loaded::Missing,
        Err(e) => Loaded::Corrupt(Error::io("failed to read scratch cache", path(cni_dir, container_id), e)),
    }
}

pub fn remove(cni_dir: &Path, container_id: &str) -> Result<(), Error> {
    match std::fs::remove_file(path(cni_dir, container_id)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("failed to remove scratch cache", path(cni_dir, container_id), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delegate(v: Value) -> Delegate {
        Delegate::new(DelegateConfig::from_value(v, "1.0.0").unwrap())
    }

    #[test]
    fn round_trips_lists_losslessly() {
        let mut master = delegate(json!({"cniVersion":"0.3.1","name":"k8s-pod-network","plugins":[
            {"type":"calico","datastore_type":"kubernetes","ipam":{"type":"calico-ipam"}},{"type":"portmap","capabilities":{"portMappings":true}}]}));
        master.master = true;
        let mut second = delegate(json!({"cniVersion":"1.0.0","name":"macvlan-conf","type":"macvlan","master":"eth1"}));
        second.name = "default/macvlan-conf".into();
        second.requests.ifname = Some("data0".into());
        second.requests.ips = vec!["10.1.1.11/24".into()];
        second.requests.gateway = Some(vec!["10.1.1.1".parse().unwrap()]);
        second.filter_v6_gateway = true;
        let back = decode(&encode(&[master.clone(), second.clone()]), "1.0.0").unwrap();
        assert_eq!(back, vec![master, second]);
    }

    /// A scratch entry as Go multus 4.2.1 writes it for a conflist cluster network (lossy Bytes).
    #[test]
    fn reads_upstream_entries() {
        let bytes = base64::engine::general_purpose::STANDARD
            .encode(br#"{"cniVersion":"0.3.1","name":"kindnet","plugins":[{"type":"ptp","ipam":{"type":"host-local"}},{"type":"portmap","capabilities":{"portMappings":true}}]}"#);
        let doc = format!(
            r#"[{{"Conf":{{"ipam":{{}},"dns":{{}}}},"ConfList":{{"cniVersion":"0.3.1","name":"kindnet","plugins":[{{"type":"ptp","ipam":{{"type":"host-local"}},"dns":{{}}}},{{"type":"portmap","capabilities":{{"portMappings":true}},"ipam":{{}},"dns":{{}}}}]}},"Name":"kindnet","IsFilterV4Gateway":false,"IsFilterV6Gateway":false,"Bytes":"{bytes}"}}]"#
        );
        let d = decode(doc.as_bytes(), "0.3.1").unwrap();
        assert_eq!(d.len(), 1);
        assert!(d[0].master);
        let DelegateConfig::List(l) = &d[0].config else { panic!("a list") };
        assert_eq!(l.plugins.len(), 2);
        assert_eq!(l.name, "kindnet");
    }

    #[test]
    fn corrupt_documents_are_errors_not_panics() {
        for doc in ["", "{", "[]", "{}", r#"[{"Name":"x"}]"#, r#"[{"Bytes":"!!"}]"#, r#"[{"Bytes":"e30="}]"#] {
            assert!(decode(doc.as_bytes(), "1.0.0").is_err(), "{doc}");
        }
    }
}
