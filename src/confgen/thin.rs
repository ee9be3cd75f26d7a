//! The thin `00-multus.conf` / `00-multus.conflist` that thin_entrypoint writes for the `multus`
//! plugin (upstream `cmd/thin_entrypoint/main.go`, its two text templates).
//!
//! Layout is upstream's template text byte for byte (indentation, key order, trailing newline):
//! `cniVersion, name, type: "multus"`, then the optional keys in this order — `capabilities`
//! (every capability the master declares, with its value; sorted like a Go map),
//! `namespaceIsolation`, `globalNamespaces`, `logToStderr` (only `false` is written), `logLevel`,
//! `logFile`, `binDir`, `readinessindicatorfile` — then `kubeconfig` and `delegates`.
//!
//! Decisions, each a deviation from v4.2.1:
//! * The conflist form is used for every `cniVersion` >= 1.0.0, as v4.2.4 does (v4.2.1 only for
//!   exactly `"1.0.0"`): the plugin object moves into `plugins[0]` and `cniVersion`/`name` stay
//!   at the top.
//! * The unused `cniConf` key (from `--multus-cni-conf-dir`; the plugin reads `confDir`) is not
//!   written (spec §9.10). The directory is still created by the entrypoint.
//! * `delegates[0]` is the master config as read: its keys in the file's order, compact.
//!   Upstream re-marshals it through a Go map, which sorts the keys; the content is the same.
//! * Strings are JSON-escaped; upstream pastes `cniVersion`, `name` and `kubeconfig` into the
//!   template raw, so a quote in them produced invalid JSON.

use serde_json::{Map, Value};

use super::Error;
use super::primary;
use crate::cni::version::Version;

pub const CONF_NAME: &str = "00-multus.conf";
pub const CONFLIST_NAME: &str = "00-multus.conflist";
pub const DEFAULT_NETWORK_NAME: &str = "multus-cni-network";

/// The entrypoint flags that shape the generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinOptions {
    /// `--cni-version`: empty means "the master's".
    pub cni_version: String,
    pub force_cni_version: bool,
    pub override_network_name: bool,
    pub namespace_isolation: bool,
    pub global_namespaces: String,
    pub log_to_stderr: bool,
    pub log_level: String,
    pub log_file: String,
    pub additional_bin_dir: String,
    pub readiness_indicator_file: String,
    /// `--multus-kubeconfig-file-host`: the kubeconfig path as the plugin (on the host) sees it.
    pub kubeconfig: String,
}

impl Default for ThinOptions {
    fn default() -> Self {
        ThinOptions {
            cni_version: String::new(),
            force_cni_version: false,
            override_network_name: false,
            namespace_isolation: false,
            global_namespaces: String::new(),
            log_to_stderr: true,
            log_level: String::new(),
            log_file: String::new(),
            additional_bin_dir: String::new(),
            readiness_indicator_file: String::new(),
            kubeconfig: "/etc/cni/net.d/multus.d/multus.kubeconfig".into(),
        }
    }
}

/// A generated file: its name in the conf dir and its whole text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub file_name: &'static str,
    pub text: String,
}

impl Generated {
    /// The file of the other form, which must not linger beside this one (the runtime would
    /// pick `00-multus.conf` over `00-multus.conflist` by name).
    pub fn other_name(&self) -> &'static str {
        if self.file_name == CONF_NAME { CONFLIST_NAME } else { CONF_NAME }
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn invalid(msg: String) -> Error {
    Error::Invalid(msg)
}

/// The `cniVersion` the file gets and the master as it is embedded.
fn version_and_master(o: &ThinOptions, master: &Map<String, Value>) -> Result<(String, Map<String, Value>), Error> {
    let Some(master_version) = master.get("cniVersion") else {
        return Err(invalid("cannot get cniVersion in the master CNI config".into()));
    };
    let mut master = master.clone();
    if o.force_cni_version {
        if o.cni_version.is_empty() {
            return Err(invalid("--force-cni-version needs --cni-version".into()));
        }
        master.insert("cniVersion".into(), Value::String(o.cni_version.clone()));
        return Ok((o.cni_version.clone(), master));
    }
    let Some(master_version) = master_version.as_str() else {
        return Err(invalid("cniVersion of the master CNI config must be a string".into()));
    };
    if !o.cni_version.is_empty() && o.cni_version != master_version {
        return Err(invalid(format!(
            "multus cni version is {:?} while master plugin cni version is {master_version:?}",
            o.cni_version
        )));
    }
    Ok((master_version.to_string(), master))
}

/// The optional keys, each as upstream's template fragment `\n        "key": value,`.
fn optional_keys(o: &ThinOptions, master: &Map<String, Value>) -> Result<String, Error> {
    let mut out = String::new();
    let mut add = |key: &str, value: String| out.push_str(&format!("\n        \"{key}\": {value},"));
    let caps = primary::declared_capabilities(master)?;
    if !caps.is_empty() {
        let m: Map<String, Value> = caps.into_iter().map(|(k, v)| (k, Value::Bool(v))).collect();
        add("capabilities", serde_json::to_string(&m).expect("a map serializes"));
    }
    if o.namespace_isolation {
        add("namespaceIsolation", "true".into());
    }
    if !o.global_namespaces.is_empty() {
        add("globalNamespaces", quote(&o.global_namespaces));
    }
    if !o.log_to_stderr {
        add("logToStderr", "false".into());
    }
    let level = o.log_level.to_lowercase();
    match level.as_str() {
        "" => {}
        "debug" | "error" | "panic" | "verbose" => add("logLevel", quote(&level)),
        _ => {
            return Err(invalid(format!(
                "log levels should be one of: debug/verbose/error/panic, did not understand: {:?}",
                o.log_level
            )));
        }
    }
    if !o.log_file.is_empty() {
        add("logFile", quote(&o.log_file));
    }
    if !o.additional_bin_dir.is_empty() {
        add("binDir", quote(&o.additional_bin_dir));
    }
    if !o.readiness_indicator_file.is_empty() {
        add("readinessindicatorfile", quote(&o.readiness_indicator_file));
    }
    Ok(out)
}

/// The whole generated file for a master config.
pub fn generate(o: &ThinOptions, master: &Map<String, Value>) -> Result<Generated, Error> {
    let (version, master) = version_and_master(o, master)?;
    let name = if o.override_network_name {
        match master.get("name") {
            Some(Value::String(n)) => n.clone(),
            _ => return Err(invalid("cannot get name in the master CNI config".into())),
        }
    } else {
        DEFAULT_NETWORK_NAME.to_string()
    };
    let opts = optional_keys(o, &master)?;
    let master_json = serde_json::to_string(&master).expect("a map serializes");
    let conflist = Version::parse(&version).is_ok_and(|v| v >= Version::V1_0_0);
    let (version, name, kubeconfig) = (quote(&version), quote(&name), quote(&o.kubeconfig));
    let text = if conflist {
        format!(
            "{{\n    \"cniVersion\": {version},\n    \"name\": {name},\n    \"plugins\": [ {{\n        \"type\": \"multus\",{opts}\n        \"kubeconfig\": {kubeconfig},\n        \"delegates\": [\n            {master_json}\n        ]\n    }}]\n}}\n"
        )
    } else {
        format!(
            "{{\n        \"cniVersion\": {version},\n        \"name\": {name},\n        \"type\": \"multus\",{opts}\n        \"kubeconfig\": {kubeconfig},\n        \"delegates\": [\n                {master_json}\n        ]\n}}\n"
        )
    };
    Ok(Generated { file_name: if conflist { CONFLIST_NAME } else { CONF_NAME }, text })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    const FLANNEL: &str = r#"{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},{"type":"portmap","capabilities":{"portMappings":true}}]}"#;

    #[test]
    fn golden_default_flags_conf() {
        let master = obj(serde_json::from_str(FLANNEL).unwrap());
        let g = generate(&ThinOptions::default(), &master).unwrap();
        assert_eq!(g.file_name, "00-multus.conf");
        assert_eq!(g.other_name(), "00-multus.conflist");
        assert_eq!(
            g.text,
            r#"{
        "cniVersion": "0.3.1",
        "name": "multus-cni-network",
        "type": "multus",
        "capabilities": {"portMappings":true},
        "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
        "delegates": [
                {"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},{"type":"portmap","capabilities":{"portMappings":true}}]}
        ]
}
"#
        );
        assert!(serde_json::from_str::<Value>(&g.text).is_ok());
    }

    #[test]
    fn golden_every_option_conflist_from_1_0_0() {
        let master = obj(
            json!({"cniVersion":"1.1.0","name":"k8s-pod-network","type":"calico","capabilities":{"bandwidth":false,"ips":true}}),
        );
        let o = ThinOptions {
            override_network_name: true,
            namespace_isolation: true,
            global_namespaces: "default,kube-system".into(),
            log_to_stderr: false,
            log_level: "DEBUG".into(),
            log_file: "/var/log/multus.log".into(),
            additional_bin_dir: "/opt/multus/bin".into(),
            readiness_indicator_file: "/run/ready".into(),
            kubeconfig: "/k/multus.kubeconfig".into(),
            ..ThinOptions::default()
        };
        let g = generate(&o, &master).unwrap();
        assert_eq!(g.file_name, "00-multus.conflist");
        assert_eq!(
            g.text,
            r#"{
    "cniVersion": "1.1.0",
    "name": "k8s-pod-network",
    "plugins": [ {
        "type": "multus",
        "capabilities": {"bandwidth":false,"ips":true},
        "namespaceIsolation": true,
        "globalNamespaces": "default,kube-system",
        "logToStderr": false,
        "logLevel": "debug",
        "logFile": "/var/log/multus.log",
        "binDir": "/opt/multus/bin",
        "readinessindicatorfile": "/run/ready",
        "kubeconfig": "/k/multus.kubeconfig",
        "delegates": [
            {"cniVersion":"1.1.0","name":"k8s-pod-network","type":"calico","capabilities":{"bandwidth":false,"ips":true}}
        ]
    }]
}
"#
        );
        assert!(serde_json::from_str::<Value>(&g.text).is_ok());
    }

    #[test]
    fn versions_must_agree_unless_forced() {
        let master = obj(json!({"cniVersion":"0.4.0","name":"n","type":"bridge"}));
        let o = ThinOptions { cni_version: "0.3.1".into(), ..ThinOptions::default() };
        assert!(
            generate(&o, &master)
                .unwrap_err()
                .to_string()
                .contains("\"0.3.1\" while master plugin cni version is \"0.4.0\"")
        );
        let o = ThinOptions { cni_version: "1.0.0".into(), force_cni_version: true, ..ThinOptions::default() };
        let g = generate(&o, &master).unwrap();
        assert_eq!(g.file_name, "00-multus.conflist");
        assert!(g.text.contains(r#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#), "{}", g.text);
        assert!(generate(&ThinOptions::default(), &obj(json!({"type":"bridge"}))).is_err());
        let o = ThinOptions { log_level: "info".into(), ..ThinOptions::default() };
        assert!(generate(&o, &master).unwrap_err().to_string().contains("did not understand: \"info\""));
    }

    #[test]
    fn strings_are_escaped() {
        let master = obj(json!({"cniVersion":"0.4.0","name":"a\"b","type":"bridge"}));
        let o = ThinOptions { override_network_name: true, kubeconfig: "/k\\\"".into(), ..ThinOptions::default() };
        let doc: Value = serde_json::from_str(&generate(&o, &master).unwrap().text).unwrap();
        assert_eq!(doc["name"], "a\"b");
        assert_eq!(doc["kubeconfig"], "/k\\\"");
    }
}
