//! The thick `00-multus.conf`: the config the runtime hands to `multus-shim`, generated from the
//! daemon config and the primary CNI config (upstream `pkg/server/config/generator.go`).
//!
//! Byte-compatible with upstream's `json.Marshal` of its `MultusConf` struct: keys in the Go
//! struct's order, `omitempty` on everything but `cniVersion`, `name` and `type`, compact, HTML
//! characters escaped, `capabilities` sorted (a Go map):
//!
//! `binDir, capabilities, cniVersion, logFile, logLevel, logToStderr, logOptions, name,
//! clusterNetwork, namespaceIsolation, globalNamespaces, type, cniDir, auxiliaryCNIChainName,
//! daemonSocketDir, overrideNetworkName`
//!
//! The manager-only keys (`cniConfigDir`, `multusConfigFile`, `multusAutoconfigDir`,
//! `multusMasterCNI`, `forceCNIVersion`, `readinessindicatorfile`) are never written: the daemon
//! watches the readiness file itself. `name` is `multus-cni-network`, or the primary's name with
//! `overrideNetworkName`; `type` is `multus-shim` unless the daemon config sets one;
//! `clusterNetwork` is the primary's path as the daemon sees it (`<multusAutoconfigDir>/<file>`).
//!
//! Deviation: upstream accumulates capabilities in a long-lived struct, so one the primary stops
//! enabling stays in the file until the daemon restarts; we compute the file from the current
//! primary every time (configured capabilities plus what the primary enables now).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::confgen::Error;
use crate::confgen::primary;
use crate::golang::{self, Fields};

pub const CONF_NAME: &str = "00-multus.conf";
pub const DEFAULT_NETWORK_NAME: &str = "multus-cni-network";
pub const SHIM_TYPE: &str = "multus-shim";

/// The daemon config's `logOptions` (Go `*int`/`*bool` fields: a key that is present is written
/// back even when it is zero).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub max_age: Option<i64>,
    pub max_size: Option<i64>,
    pub max_backups: Option<i64>,
    pub compress: Option<bool>,
}

/// The keys of daemon-config.json that reach the generated file (upstream's `MultusConf` minus
/// the manager-only keys, which live in `manager::ManagerConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThickConf {
    pub bin_dir: String,
    /// Configured capabilities, with their values (a `false` is written as `false`).
    pub capabilities: BTreeMap<String, bool>,
    pub cni_version: String,
    pub log_file: String,
    pub log_level: String,
    pub log_to_stderr: bool,
    pub log_options: Option<LogOptions>,
    pub namespace_isolation: bool,
    pub global_namespaces: String,
    pub plugin_type: String,
    pub cni_dir: String,
    pub auxiliary_cni_chain_name: String,
    pub daemon_socket_dir: String,
    pub override_network_name: bool,
    /// Ours, for the shim (`shimReturnDelErrors`, `daemonReadinessTimeoutSeconds`): written after
    /// upstream's keys when the daemon config sets them, so auto mode can turn them on.
    pub shim_return_del_errors: bool,
    pub daemon_readiness_timeout_seconds: Option<i64>,
}

impl ThickConf {
    /// Reads the keys from a parsed daemon-config.json with Go's decoding rules (case-insensitive
    /// keys, the last one wins; `null` is absent; a wrong type is an error).
    pub fn from_daemon_config(m: &Map<String, Value>) -> Result<ThickConf, Error> {
        let f = Fields::new(m, "daemon config");
        let log_options = match f.object("logOptions")? {
            None => None,
            Some(o) => {
                let lo = Fields::new(o, "daemon config logOptions");
                let compress = match lo.get("compress") {
                    None => None,
                    Some(_) => Some(lo.boolean("compress")?),
                };
                Some(LogOptions {
                    max_age: lo.integer("maxAge")?,
                    max_size: lo.integer("maxSize")?,
                    max_backups: lo.integer("maxBackups")?,
                    compress,
                })
            }
        };
        Ok(ThickConf {
            bin_dir: f.string_or("binDir", "")?,
            capabilities: f.bool_map("capabilities")?.unwrap_or_default().into_iter().collect(),
            cni_version: f.string_or("cniVersion", "")?,
            log_file: f.string_or("logFile", "")?,
            log_level: f.string_or("logLevel", "")?,
            log_to_stderr: f.boolean("logToStderr")?,
            log_options,
            namespace_isolation: f.boolean("namespaceIsolation")?,
            global_namespaces: f.string_or("globalNamespaces", "")?,
            plugin_type: f.string_or("type", SHIM_TYPE)?,
            cni_dir: f.string_or("cniDir", "")?,
            auxiliary_cni_chain_name: f.string_or("auxiliaryCNIChainName", "")?,
            daemon_socket_dir: f.string_or("daemonSocketDir", "")?,
            override_network_name: f.boolean("overrideNetworkName")?,
            shim_return_del_errors: f.boolean("shimReturnDelErrors")?,
            daemon_readiness_timeout_seconds: f.integer("daemonReadinessTimeoutSeconds")?,
        })
    }
}

fn put_str(m: &mut Map<String, Value>, key: &str, v: &str) {
    if !v.is_empty() {
        m.insert(key.into(), Value::String(v.into()));
    }
}

fn put_true(m: &mut Map<String, Value>, key: &str, v: bool) {
    if v {
        m.insert(key.into(), Value::Bool(true));
    }
}

fn log_options_value(o: &LogOptions) -> Value {
    let mut m = Map::new();
    let nums = [("maxAge", o.max_age), ("maxSize", o.max_size), ("maxBackups", o.max_backups)];
    for (k, v) in nums {
        if let Some(v) = v {
            m.insert(k.into(), v.into());
        }
    }
    if let Some(c) = o.compress {
        m.insert("compress".into(), c.into());
    }
    Value::Object(m)
}

/// The whole `00-multus.conf` for a primary config whose path (as written into
/// `clusterNetwork`) is `cluster_network`. Fails when the primary is incompatible or malformed;
/// never returns an empty document.
pub fn generate(conf: &ThickConf, cluster_network: &str, primary: &Map<String, Value>) -> Result<String, Error> {
    primary::check_version_compatibility(&conf.cni_version, primary)?;
    let mut capabilities = conf.capabilities.clone();
    for c in primary::enabled_capabilities(primary)? {
        capabilities.insert(c, true);
    }
    let name = if conf.override_network_name {
        match primary.get("name") {
            Some(Value::String(n)) if !n.is_empty() => n.clone(),
            _ => {
                return Err(Error::Invalid(
                    "cannot override the network name: the primary CNI config has no name".into(),
                ));
            }
        }
    } else {
        DEFAULT_NETWORK_NAME.to_string()
    };

    let mut m = Map::new();
    put_str(&mut m, "binDir", &conf.bin_dir);
    if !capabilities.is_empty() {
        m.insert("capabilities".into(), Value::Object(capabilities.into_iter().map(|(k, v)| (k, v.into())).collect()));
    }
    m.insert("cniVersion".into(), conf.cni_version.clone().into());
    put_str(&mut m, "logFile", &conf.log_file);
    put_str(&mut m, "logLevel", &conf.log_level);
    put_true(&mut m, "logToStderr", conf.log_to_stderr);
    if let Some(o) = &conf.log_options {
        m.insert("logOptions".into(), log_options_value(o));
    }
    m.insert("name".into(), name.into());
    put_str(&mut m, "clusterNetwork", cluster_network);
    put_true(&mut m, "namespaceIsolation", conf.namespace_isolation);
    put_str(&mut m, "globalNamespaces", &conf.global_namespaces);
    m.insert("type".into(), conf.plugin_type.clone().into());
    put_str(&mut m, "cniDir", &conf.cni_dir);
    put_str(&mut m, "auxiliaryCNIChainName", &conf.auxiliary_cni_chain_name);
    put_str(&mut m, "daemonSocketDir", &conf.daemon_socket_dir);
    put_true(&mut m, "overrideNetworkName", conf.override_network_name);
    put_true(&mut m, "shimReturnDelErrors", conf.shim_return_del_errors);
    if let Some(t) = conf.daemon_readiness_timeout_seconds {
        m.insert("daemonReadinessTimeoutSeconds".into(), t.into());
    }
    Ok(golang::marshal(&Value::Object(m)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn our_shim_keys_follow_upstreams_when_set() {
        let c = ThickConf::from_daemon_config(&obj(
            json!({"cniVersion": "1.0.0", "shimReturnDelErrors": true, "daemonReadinessTimeoutSeconds": 5}),
        ))
        .unwrap();
        let primary = obj(json!({"cniVersion": "1.0.0", "name": "p", "type": "bridge"}));
        assert_eq!(
            generate(&c, "/d/10-p.conf", &primary).unwrap(),
            r#"{"cniVersion":"1.0.0","name":"multus-cni-network","clusterNetwork":"/d/10-p.conf","type":"multus-shim","shimReturnDelErrors":true,"daemonReadinessTimeoutSeconds":5}"#
        );
    }

    fn conf(v: Value) -> ThickConf {
        ThickConf::from_daemon_config(&obj(v)).unwrap()
    }

    /// Upstream's own expectation (pkg/server/config/manager_test.go).
    #[test]
    fn golden_minimal_matches_upstream_test() {
        let c = conf(json!({"name": "ignored", "cniVersion": "0.4.0"}));
        let primary = obj(json!({"cniVersion":"0.4.0","name":"mycni-name","type":"mycni","ipam":{},"dns":{}}));
        assert_eq!(
            generate(&c, "/tmp/multus-config/00-mycni.conf", &primary).unwrap(),
            r#"{"cniVersion":"0.4.0","name":"multus-cni-network","clusterNetwork":"/tmp/multus-config/00-mycni.conf","type":"multus-shim"}"#
        );
        let c = conf(json!({"cniVersion": "0.4.0", "overrideNetworkName": true}));
        assert_eq!(
            generate(&c, "/d/00-mycni.conf", &primary).unwrap(),
            r#"{"cniVersion":"0.4.0","name":"mycni-name","clusterNetwork":"/d/00-mycni.conf","type":"multus-shim","overrideNetworkName":true}"#
        );
    }

    /// The upstream thick deployment's daemon config: manager-only keys and daemon keys vanish.
    #[test]
    fn golden_deployment_daemon_config() {
        let c = conf(json!({"chrootDir":"/hostroot","cniVersion":"0.3.1","logLevel":"verbose","logToStderr":true,
            "cniConfigDir":"/host/etc/cni/net.d","multusAutoconfigDir":"/host/etc/cni/net.d","multusConfigFile":"auto",
            "socketDir":"/host/run/multus/"}));
        let primary = obj(json!({"cniVersion":"0.3.1","name":"cbr0","plugins":[
            {"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},
            {"type":"portmap","capabilities":{"portMappings":true}}]}));
        assert_eq!(
            generate(&c, "/host/etc/cni/net.d/10-flannel.conflist", &primary).unwrap(),
            r#"{"capabilities":{"portMappings":true},"cniVersion":"0.3.1","logLevel":"verbose","logToStderr":true,"name":"multus-cni-network","clusterNetwork":"/host/etc/cni/net.d/10-flannel.conflist","type":"multus-shim"}"#
        );
    }

    /// Every key the generator writes, in struct order; configured capabilities keep `false`.
    #[test]
    fn golden_every_key_in_struct_order() {
        let c = conf(json!({
            "overrideNetworkName": true, "daemonSocketDir": "/run/multus/", "auxiliaryCNIChainName": "aux",
            "cniDir": "/var/lib/cni/multus", "type": "multus-shim", "readinessindicatorfile": "/r/ready",
            "globalNamespaces": "default,kube-system", "namespaceIsolation": true, "clusterNetwork": "ignored",
            "logOptions": {"maxAge": 0, "maxSize": 10, "compress": false, "unknown": 1},
            "logToStderr": true, "logLevel": "debug", "logFile": "/var/log/multus.log", "cniVersion": "1.0.0",
            "capabilities": {"bandwidth": false, "ips": true}, "binDir": "/opt/cni/bin",
            "multusMasterCNI": "10-a.conf", "forceCNIVersion": true, "cniConfigDir": "/x", "multusConfigFile": "auto"}));
        let primary = obj(
            json!({"cniVersion":"1.0.0","name":"prim<&>","type":"bridge","capabilities":{"mac":true,"bandwidth":true}}),
        );
        assert_eq!(
            generate(&c, "/etc/cni/net.d/10-a.conf", &primary).unwrap(),
            concat!(
                r#"{"binDir":"/opt/cni/bin","capabilities":{"bandwidth":true,"ips":true,"mac":true},"cniVersion":"1.0.0","#,
                r#""logFile":"/var/log/multus.log","logLevel":"debug","logToStderr":true,"#,
                r#""logOptions":{"maxAge":0,"maxSize":10,"compress":false},"name":"prim\u003c\u0026\u003e","#,
                r#""clusterNetwork":"/etc/cni/net.d/10-a.conf","namespaceIsolation":true,"#,
                r#""globalNamespaces":"default,kube-system","type":"multus-shim","cniDir":"/var/lib/cni/multus","#,
                r#""auxiliaryCNIChainName":"aux","daemonSocketDir":"/run/multus/","overrideNetworkName":true}"#
            )
        );
    }

    #[test]
    fn keys_are_matched_like_go() {
        let c = conf(json!({"CNIVERSION": "0.3.1", "BinDir": "/b", "logoptions": {}}));
        assert_eq!(c.cni_version, "0.3.1");
        assert_eq!(c.bin_dir, "/b");
        assert_eq!(c.log_options, Some(LogOptions::default()));
        let primary = obj(json!({"cniVersion":"0.3.1","type":"x"}));
        assert_eq!(
            generate(&c, "/p.conf", &primary).unwrap(),
            r#"{"binDir":"/b","cniVersion":"0.3.1","logOptions":{},"name":"multus-cni-network","clusterNetwork":"/p.conf","type":"multus-shim"}"#
        );
    }

    #[test]
    fn bad_inputs_are_errors_not_empty_documents() {
        assert!(ThickConf::from_daemon_config(&obj(json!({"cniVersion": 4}))).is_err());
        assert!(ThickConf::from_daemon_config(&obj(json!({"capabilities": {"a": 1}}))).is_err());
        assert!(ThickConf::from_daemon_config(&obj(json!({"logOptions": {"maxAge": 1.5}}))).is_err());
        let c = conf(json!({"cniVersion": "0.4.0", "overrideNetworkName": true}));
        assert!(generate(&c, "/p", &obj(json!({"cniVersion":"0.3.1"}))).is_err());
        assert!(generate(&c, "/p", &obj(json!({"cniVersion":"0.4.0"}))).is_err(), "no name to override with");
        let c = conf(json!({}));
        assert!(generate(&c, "/p", &obj(json!({"cniVersion":"0.4.0"}))).is_err(), "no multus cniVersion");
    }
}
