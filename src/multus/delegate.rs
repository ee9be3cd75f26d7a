//! A delegate: one network multus attaches, with its config kept lossless and the requests that
//! came with it (interface name, IPs, MAC, default route, ...). Owns how a delegate's config and
//! CNI_ARGS/runtimeConfig are derived from those requests; pure.

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::cni::error::Error;
use crate::cni::{NetworkConfigList, PluginConfig};

/// The config of a delegate: one plugin, or a chain.
#[derive(Debug, Clone, PartialEq)]
pub enum DelegateConfig {
    Single(PluginConfig),
    List(NetworkConfigList),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Requests {
    pub ifname: Option<String>,
    pub mac: Option<String>,
    pub ips: Vec<String>,
    pub infiniband_guid: Option<String>,
    /// `default-route`: `Some(vec![])` asks for no default route on this network.
    pub gateway: Option<Vec<IpAddr>>,
    pub port_mappings: Option<Value>,
    pub bandwidth: Option<Value>,
    pub cni_args: Option<Map<String, Value>>,
    pub device_id: Option<String>,
    pub resource_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Delegate {
    pub config: DelegateConfig,
    /// What users call it: the conf name, or `<namespace>/<nad>` for a NetworkAttachmentDefinition.
    pub name: String,
    pub master: bool,
    pub requests: Requests,
    /// Set by gateway planning: remove this family's default routes from the interface.
    pub filter_v4_gateway: bool,
    pub filter_v6_gateway: bool,
}

impl DelegateConfig {
    /// A config object: a list when it has `plugins`, else a single plugin. An empty
    /// `cniVersion` inherits `fallback_version` (the multus config's).
    pub fn from_value(mut v: Value, fallback_version: &str) -> Result<DelegateConfig, Error> {
        let obj = v.as_object_mut().ok_or_else(|| Error::Decoding("delegate config is not a JSON object".into()))?;
        if obj.get("cniVersion").and_then(Value::as_str).unwrap_or("").is_empty() && !fallback_version.is_empty() {
            obj.insert("cniVersion".into(), Value::String(fallback_version.into()));
        }
        if obj.contains_key("plugins") {
            Ok(DelegateConfig::List(NetworkConfigList::from_value(v)?))
        } else {
            Ok(DelegateConfig::Single(PluginConfig::from_value(v)?))
        }
    }

    /// The libcni network name (cache file names, `name` injected into plugins).
    pub fn network_name(&self) -> &str {
        match self {
            DelegateConfig::Single(p) => p.name(),
            DelegateConfig::List(l) => &l.name,
        }
    }

    pub fn cni_version(&self) -> &str {
        match self {
            DelegateConfig::Single(p) => p.cni_version(),
            DelegateConfig::List(l) => &l.cni_version,
        }
    }

    /// This config with top-level `deviceID` and `pciBusID` set to `device_id`, on the plugin or
    /// on every plugin of a list (upstream `delegateAddDeviceID` / `addDeviceIDInConfList`).
    pub fn with_device_id(&self, device_id: &str) -> DelegateConfig {
        let id = Value::String(device_id.to_string());
        self.with_keys(&[("deviceID", id.clone()), ("pciBusID", id)])
    }

    /// The config as a list (a single plugin becomes a one-plugin list, libcni's rule), for the
    /// operations libcni has only for lists (GC, STATUS).
    pub fn into_list(self) -> Result<crate::cni::NetworkConfigList, Error> {
        match self {
            DelegateConfig::List(l) => Ok(l),
            DelegateConfig::Single(p) => crate::cni::NetworkConfigList::from_single(p),
        }
    }

    /// The config as one JSON document (what the scratch cache stores as `Bytes`): a list keeps
    /// every plugin with every key, including plugins loaded from a subdirectory.
    pub fn to_value(&self) -> Value {
        match self {
            DelegateConfig::Single(p) => Value::Object(p.raw.clone()),
            DelegateConfig::List(l) => {
                let mut raw = l.raw.clone();
                raw.insert("cniVersion".into(), Value::String(l.cni_version.clone()));
                raw.insert(
                    "plugins".into(),
                    Value::Array(l.plugins.iter().map(|p| Value::Object(p.raw.clone())).collect()),
                );
                Value::Object(raw)
            }
        }
    }

    /// Merges `cni-args` into `args.cni` of every plugin (upstream: the conf, or each plugin of a list).
    pub fn with_cni_args(&self, cni_args: &Map<String, Value>) -> DelegateConfig {
        let merge = |raw: &mut Map<String, Value>| {
            let args = raw.entry("args").or_insert_with(|| Value::Object(Map::new()));
            if !args.is_object() {
                *args = Value::Object(Map::new());
            }
            let cni = args.as_object_mut().expect("object").entry("cni").or_insert_with(|| Value::Object(Map::new()));
            if !cni.is_object() {
                *cni = Value::Object(Map::new());
            }
            let cni = cni.as_object_mut().expect("object");
            for (k, v) in cni_args {
                cni.insert(k.clone(), v.clone());
            }
        };
        let mut out = self.clone();
        match &mut out {
            DelegateConfig::Single(p) => merge(&mut p.raw),
            DelegateConfig::List(l) => l.plugins.iter_mut().for_each(|p| merge(&mut p.raw)),
        }
        out
    }

    /// Sets top-level keys on every plugin (deviceID / pciBusID injection).
    pub fn with_keys(&self, keys: &[(&str, Value)]) -> DelegateConfig {
        let mut out = self.clone();
        let set = |raw: &mut Map<String, Value>| {
            for (k, v) in keys {
                raw.insert(k.to_string(), v.clone());
            }
        };
        match &mut out {
            DelegateConfig::Single(p) => set(&mut p.raw),
            DelegateConfig::List(l) => l.plugins.iter_mut().for_each(|p| set(&mut p.raw)),
        }
        out
    }
}

impl Delegate {
    pub fn new(config: DelegateConfig) -> Delegate {
        let name = config.network_name().to_string();
        Delegate {
            config,
            name,
            master: false,
            requests: Requests::default(),
            filter_v4_gateway: false,
            filter_v6_gateway: false,
        }
    }

    /// The interface name in the pod: an explicit request, else CNI_IFNAME for the master, else `net<idx>`.
    pub fn ifname(&self, idx: usize, cni_ifname: &str) -> String {
        if let Some(i) = self.requests.ifname.as_deref().filter(|i| !i.is_empty()) {
            return i.to_string();
        }
        if self.master { cni_ifname.to_string() } else { format!("net{idx}") }
    }

    /// The config the delegate runs with: `cni-args` merged, device ID injected.
    pub fn effective_config(&self) -> DelegateConfig {
        let mut c = match &self.requests.cni_args {
            Some(a) if !a.is_empty() => self.config.with_cni_args(a),
            _ => self.config.clone(),
        };
        if let Some(id) = &self.requests.device_id {
            c = c.with_device_id(id);
        }
        c
    }

    /// `runtimeConfig` capabilities for this delegate: the runtime's for the master, the
    /// delegate's own requests otherwise (upstream `mergeCNIRuntimeConfig`).
    pub fn capability_args(&self, runtime: &Map<String, Value>) -> Map<String, Value> {
        if self.master {
            return runtime.clone();
        }
        let mut m = Map::new();
        let r = &self.requests;
        if let Some(p) = &r.port_mappings {
            m.insert("portMappings".into(), p.clone());
        }
        if let Some(b) = &r.bandwidth {
            m.insert("bandwidth".into(), b.clone());
        }
        if !r.ips.is_empty() {
            m.insert("ips".into(), Value::from(r.ips.clone()));
        }
        if let Some(mac) = &r.mac {
            m.insert("mac".into(), Value::String(mac.clone()));
        }
        if let Some(g) = &r.infiniband_guid {
            m.insert("infinibandGUID".into(), Value::String(g.clone()));
        }
        if let Some(d) = &r.device_id {
            m.insert("deviceID".into(), Value::String(d.clone()));
        }
        m
    }

    /// CNI_ARGS for the delegate: the runtime's, plus the legacy `IP=` and `MAC=` when requested,
    /// always with `IgnoreUnknown` (as upstream sends it) so plugins accept keys they do not know.
    pub fn cni_args(&self, runtime: &[(String, String)]) -> Vec<(String, String)> {
        let mut args = runtime.to_vec();
        if !args.iter().any(|(k, _)| k == "IgnoreUnknown") {
            args.insert(0, ("IgnoreUnknown".into(), "1".into()));
        }
        if !self.requests.ips.is_empty() {
            args.push(("IP".into(), self.requests.ips.join(",")));
        }
        if let Some(mac) = &self.requests.mac {
            args.push(("MAC".into(), mac.clone()));
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_and_singles_keep_every_key() {
        let c = DelegateConfig::from_value(
            json!({"name":"k8s-pod-network","plugins":[{"type":"calico","datastore_type":"kubernetes","kubernetes":{"kubeconfig":"/k"}}]}),
            "0.3.1",
        )
        .unwrap();
        assert_eq!(c.cni_version(), "0.3.1", "an empty cniVersion inherits multus's");
        assert_eq!(
            c.to_value(),
            json!({"name":"k8s-pod-network","plugins":[{"type":"calico","datastore_type":"kubernetes","kubernetes":{"kubeconfig":"/k"}}],"cniVersion":"0.3.1"})
        );
        let s = DelegateConfig::from_value(
            json!({"cniVersion":"1.0.0","name":"m","type":"macvlan","master":"eth1"}),
            "0.3.1",
        )
        .unwrap();
        assert!(matches!(s, DelegateConfig::Single(_)));
        assert_eq!(s.cni_version(), "1.0.0");
        assert!(DelegateConfig::from_value(json!({"name":"x"}), "1.0.0").is_err());
    }

    #[test]
    fn interface_names() {
        let mut d = Delegate::new(DelegateConfig::from_value(json!({"name":"a","type":"bridge"}), "1.0.0").unwrap());
        assert_eq!(d.ifname(2, "eth0"), "net2");
        d.master = true;
        assert_eq!(d.ifname(0, "eth0"), "eth0");
        d.requests.ifname = Some("data0".into());
        assert_eq!(d.ifname(0, "eth0"), "data0");
    }

    #[test]
    fn requests_become_args_runtime_config_and_keys() {
        let mut d = Delegate::new(
            DelegateConfig::from_value(
                json!({"name":"l","plugins":[{"type":"a"},{"type":"b","args":{"cni":{"x":1}}}]}),
                "1.0.0",
            )
            .unwrap(),
        );
        d.requests.ips = vec!["10.1.1.11/24".into()];
        d.requests.mac = Some("c2:11:22:33:44:55".into());
        d.requests.cni_args = Some(json!({"y": "2"}).as_object().unwrap().clone());
        d.requests.device_id = Some("0000:00:1f.6".into());
        let rt = vec![("K8S_POD_NAME".to_string(), "p".to_string())];
        assert_eq!(
            d.cni_args(&rt),
            vec![
                ("IgnoreUnknown".to_string(), "1".to_string()),
                ("K8S_POD_NAME".to_string(), "p".to_string()),
                ("IP".to_string(), "10.1.1.11/24".to_string()),
                ("MAC".to_string(), "c2:11:22:33:44:55".to_string())
            ]
        );
        assert_eq!(
            Value::Object(d.capability_args(&Map::new())),
            json!({"ips":["10.1.1.11/24"],"mac":"c2:11:22:33:44:55","deviceID":"0000:00:1f.6"})
        );
        let eff = d.effective_config().to_value();
        assert_eq!(eff["plugins"][0]["args"], json!({"cni":{"y":"2"}}));
        assert_eq!(eff["plugins"][1]["args"], json!({"cni":{"x":1,"y":"2"}}));
        assert_eq!(eff["plugins"][1]["pciBusID"], "0000:00:1f.6");
        d.master = true;
        let runtime = json!({"portMappings":[{"hostPort":80}]}).as_object().unwrap().clone();
        assert_eq!(d.capability_args(&runtime), runtime, "the master gets the runtime's runtimeConfig");
    }

    #[test]
    fn device_id_reaches_every_plugin() {
        let single =
            DelegateConfig::from_value(json!({"cniVersion":"1.0.0","name":"s","type":"sriov","vlan":5}), "").unwrap();
        assert_eq!(
            single.with_device_id("0000:03:02.0").to_value(),
            json!({"cniVersion":"1.0.0","name":"s","type":"sriov","vlan":5,"deviceID":"0000:03:02.0","pciBusID":"0000:03:02.0"})
        );
        let list = DelegateConfig::from_value(
            json!({"cniVersion":"1.0.0","name":"l","plugins":[{"type":"sriov","deviceID":"old"},{"type":"tuning"}]}),
            "",
        )
        .unwrap();
        assert_eq!(
            list.with_device_id("0000:03:02.1").to_value(),
            json!({"cniVersion":"1.0.0","name":"l","plugins":[
                {"type":"sriov","deviceID":"0000:03:02.1","pciBusID":"0000:03:02.1"},
                {"type":"tuning","deviceID":"0000:03:02.1","pciBusID":"0000:03:02.1"}]})
        );
    }
}
