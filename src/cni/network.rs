//! Network operations of a CNI runtime (libcni v1.3.0's `CNIConfig`): ADD/DEL/CHECK/GC/STATUS on a
//! network config list or a single config, chaining `prevResult`, caching results, filtering
//! `runtimeConfig` by declared capabilities, and validating the runtime's identifiers.
//!
//! Differences from libcni, on purpose: a list DEL runs every plugin even after one fails and
//! returns all errors (libcni stops at the first, leaving the rest of the chain's state behind);
//! cache writes are atomic.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::cache;
use super::config::{NetworkConfigList, PluginConfig, valid_name};
use super::error::{CniError, Error, code};
use super::exec::Exec;
use super::result::CniResult;
pub use super::validate::{MAX_IFNAME_LEN, validate_interface_name};
use super::version::{Version, VersionInfo};

/// What the runtime knows about one attachment (libcni `RuntimeConf`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConf {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    /// CNI_ARGS as ordered pairs.
    pub args: Vec<(String, String)>,
    /// Offered to plugins as `runtimeConfig`, per declared capability.
    pub capability_args: Map<String, Value>,
    /// Overrides the runtime's cache directory for this attachment.
    pub cache_dir: Option<PathBuf>,
}

/// One attachment named in GC's valid list (`{"containerID","ifname"}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GcAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    #[serde(rename = "ifname")]
    pub ifname: String,
}

/// The runtime: where plugins are, where results are cached, how processes run.
pub struct CniConfig<E: Exec> {
    pub path: Vec<PathBuf>,
    pub cache_dir: PathBuf,
    pub exec: E,
}

fn plugin_description(p: &PluginConfig) -> String {
    if p.name().is_empty() {
        format!("type={:?}", p.plugin_type())
    } else {
        format!("type={:?} name={:?}", p.plugin_type(), p.name())
    }
}

fn invalid(code: u32, msg: &str, details: &str) -> Error {
    Error::Cni(CniError::new(code, msg, details))
}

/// libcni `ValidateContainerID`.
pub fn validate_container_id(id: &str) -> Result<(), Error> {
    if id.is_empty() {
        return Err(invalid(code::UNKNOWN_CONTAINER, "missing containerID", ""));
    }
    if !valid_name(id) {
        return Err(invalid(code::INVALID_ENV, "invalid characters in containerID", id));
    }
    Ok(())
}

/// libcni `ValidateNetworkName`.
pub fn validate_network_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(invalid(code::INVALID_NETWORK_CONFIG, "missing network name:", ""));
    }
    if !valid_name(name) {
        return Err(invalid(code::INVALID_NETWORK_CONFIG, "invalid characters found in network name", name));
    }
    Ok(())
}

/// The config one plugin gets: its own keys plus the list's `name` and `cniVersion`, the previous
/// result, and `runtimeConfig` for the capabilities it declares (libcni `buildOneConfig`).
pub fn build_one_config(
    name: &str,
    cni_version: &str,
    plugin: &PluginConfig,
    prev_result: Option<&Value>,
    capability_args: &Map<String, Value>,
) -> Vec<u8> {
    let mut raw = plugin.raw.clone();
    raw.insert("name".into(), Value::String(name.into()));
    raw.insert("cniVersion".into(), Value::String(cni_version.into()));
    if let Some(prev) = prev_result {
        raw.insert("prevResult".into(), prev.clone());
    }
    let runtime_config: Map<String, Value> = capability_args
        .iter()
        .filter(|(cap, _)| plugin.capability_enabled(cap))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !runtime_config.is_empty() {
        raw.insert("runtimeConfig".into(), Value::Object(runtime_config));
    }
    serde_json::to_vec(&raw).expect("JSON object serializes")
}

/// `k=v;k=v` as CNI_ARGS carries it.
pub fn args_to_string(args: &[(String, String)]) -> String {
    args.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";")
}

impl<E: Exec> CniConfig<E> {
    pub fn new(path: Vec<PathBuf>, cache_dir: impl Into<PathBuf>, exec: E) -> Self {
        CniConfig { path, cache_dir: cache_dir.into(), exec }
    }

    fn env(&self, command: &str, rt: &RuntimeConf) -> Vec<(String, String)> {
        let path = self.path.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
        vec![
            ("CNI_COMMAND".into(), command.into()),
            ("CNI_CONTAINERID".into(), rt.container_id.clone()),
            ("CNI_NETNS".into(), rt.netns.clone()),
            ("CNI_ARGS".into(), args_to_string(&rt.args)),
            ("CNI_IFNAME".into(), rt.ifname.clone()),
            ("CNI_PATH".into(), path),
        ]
    }

    fn cache_file(&self, network: &str, rt: &RuntimeConf) -> PathBuf {
        let dir = rt.cache_dir.as_deref().unwrap_or(&self.cache_dir);
        cache::path(dir, network, &rt.container_id, &rt.ifname)
    }

    fn run(&self, command: &str, plugin: &PluginConfig, stdin: &[u8], rt: &RuntimeConf) -> Result<Vec<u8>, Error> {
        let path = self.exec.find_in_path(plugin.plugin_type(), &self.path)?;
        self.exec.exec_plugin(&path, stdin, &self.env(command, rt))
    }

    fn add_one(
        &self,
        name: &str,
        version: &str,
        plugin: &PluginConfig,
        prev: Option<&CniResult>,
        rt: &RuntimeConf,
    ) -> Result<CniResult, Error> {
        validate_container_id(&rt.container_id)?;
        validate_network_name(name)?;
        validate_interface_name(&rt.ifname)?;
        let prev_value = prev.map(|p| p.to_value(&p.cni_version)).transpose()?;
        let stdin = build_one_config(name, version, plugin, prev_value.as_ref(), &rt.capability_args);
        let out = self.run("ADD", plugin, &stdin, rt)?;
        CniResult::parse(&out, version)
    }

    fn write_cache(
        &self,
        list: &NetworkConfigList,
        config: &[u8],
        result: &CniResult,
        rt: &RuntimeConf,
    ) -> Result<(), Error> {
        let info = cache::new_info(
            &list.name,
            config,
            &rt.container_id,
            &rt.ifname,
            &rt.netns,
            &rt.args,
            &rt.capability_args,
            result.to_value(&result.cni_version)?,
        );
        cache::write(&self.cache_file(&list.name, rt), &info)
            .map_err(|e| e.context(format!("failed to set network {:?} cached result", list.name)))
    }

    /// The cached result converted to `version`; `Ok(None)` when nothing is cached.
    fn cached_result(&self, network: &str, version: &str, rt: &RuntimeConf) -> Result<Option<CniResult>, Error> {
        let Some(raw) = cache::read(&self.cache_file(network, rt))?.into_result() else {
            return Ok(None);
        };
        let parsed = CniResult::from_value(raw, "")?;
        // Plugins get prevResult in the config's version.
        let converted = CniResult::from_value(parsed.to_value(version)?, version)?;
        Ok(Some(converted))
    }

    /// ADD every plugin of the list in order, each getting the previous result; caches the last.
    pub fn add_network_list(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> Result<CniResult, Error> {
        let mut result: Option<CniResult> = None;
        for plugin in &list.plugins {
            let r = self
                .add_one(&list.name, &list.cni_version, plugin, result.as_ref(), rt)
                .map_err(|e| e.context(format!("plugin {} failed (add)", plugin_description(plugin))))?;
            result = Some(r);
        }
        let result = result.ok_or_else(|| Error::InvalidConfig(format!("network {:?} has no plugins", list.name)))?;
        self.write_cache(list, &list.bytes, &result, rt)?;
        Ok(result)
    }

    /// DEL every plugin in reverse with the cached result (≥0.4.0). Every plugin runs even when one
    /// fails; the errors are joined and the cache is kept so the runtime can retry.
    pub fn del_network_list(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> Result<(), Error> {
        let version = list.version()?;
        let file = self.cache_file(&list.name, rt);
        let cached = if version.supports_check() {
            match self.cached_result(&list.name, &list.cni_version, rt) {
                Ok(r) => r,
                Err(_) => {
                    // libcni: an unusable cache is dropped and DEL proceeds without prevResult.
                    let _ = cache::remove(&file);
                    None
                }
            }
        } else {
            None
        };
        let prev = cached.map(|r| r.to_value(&list.cni_version)).transpose()?;
        let mut errors = Vec::new();
        for plugin in list.plugins.iter().rev() {
            let stdin = build_one_config(&list.name, &list.cni_version, plugin, prev.as_ref(), &rt.capability_args);
            if let Err(e) = self.run("DEL", plugin, &stdin, rt) {
                errors.push(e.context(format!("plugin {} failed (delete)", plugin_description(plugin))));
            }
        }
        if errors.is_empty() {
            cache::remove(&file)?;
        }
        Error::join(errors)
    }

    /// CHECK every plugin with the cached result; needs ≥0.4.0; skipped when `disableCheck`.
    pub fn check_network_list(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> Result<(), Error> {
        if !list.version()?.supports_check() {
            return Err(Error::IncompatibleVersion(format!(
                "configuration version {:?} does not support the CHECK command",
                list.cni_version
            )));
        }
        if list.disable_check {
            return Ok(());
        }
        let cached = self
            .cached_result(&list.name, &list.cni_version, rt)
            .map_err(|e| e.context(format!("failed to get network {:?} cached result", list.name)))?;
        let prev = cached.map(|r| r.to_value(&list.cni_version)).transpose()?;
        for plugin in &list.plugins {
            validate_container_id(&rt.container_id)?;
            validate_network_name(&list.name)?;
            validate_interface_name(&rt.ifname)?;
            let stdin = build_one_config(&list.name, &list.cni_version, plugin, prev.as_ref(), &rt.capability_args);
            self.run("CHECK", plugin, &stdin, rt)
                .map_err(|e| e.context(format!("plugin {} failed (check)", plugin_description(plugin))))?;
        }
        Ok(())
    }

    /// GC: DEL every cached attachment of this list that is not in `valid`, then (≥1.1.0) send GC
    /// to every plugin with both `cni.dev/valid-attachments` and `cni.dev/attachments`.
    pub fn gc_network_list(&self, list: &NetworkConfigList, valid: Option<&[GcAttachment]>) -> Result<(), Error> {
        if list.disable_gc {
            return Ok(());
        }
        let mut errors = Vec::new();
        let cached = cache::attachments(&self.cache_dir, None).unwrap_or_default();
        for att in cached.into_iter().filter(|a| a.network_name == list.name) {
            let key = GcAttachment { container_id: att.container_id.clone(), ifname: att.if_name.clone() };
            if valid.is_some_and(|v| v.contains(&key)) {
                continue;
            }
            let rt = RuntimeConf {
                container_id: att.container_id,
                netns: att.netns,
                ifname: att.if_name,
                args: att.cni_args.into_iter().map(|[k, v]| (k, v)).collect(),
                capability_args: att.capability_args,
                cache_dir: None,
            };
            if let Err(e) = self.del_network_list(list, &rt) {
                errors.push(e.context(format!("failed to delete stale attachment {} {}", rt.container_id, rt.ifname)));
            }
        }
        if list.version()?.supports_gc_status() {
            let valid_json = valid.map(|v| serde_json::to_value(v).expect("attachments serialize"));
            for plugin in &list.plugins {
                let mut raw = plugin.raw.clone();
                raw.insert("name".into(), Value::String(list.name.clone()));
                raw.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
                if let Some(v) = &valid_json {
                    raw.insert("cni.dev/valid-attachments".into(), v.clone());
                    raw.insert("cni.dev/attachments".into(), v.clone());
                }
                let stdin = serde_json::to_vec(&raw).expect("JSON object serializes");
                if let Err(e) = self.run("GC", plugin, &stdin, &RuntimeConf::default()) {
                    errors.push(e.context(format!("plugin {} failed (gc)", plugin_description(plugin))));
                }
            }
        }
        Error::join(errors)
    }

    /// STATUS of every plugin (≥1.1.0; a no-op before); the first failure is returned as is so
    /// its code (50, 51, ...) reaches the runtime.
    pub fn status_network_list(&self, list: &NetworkConfigList) -> Result<(), Error> {
        if !list.version()?.supports_gc_status() {
            return Ok(());
        }
        for plugin in &list.plugins {
            let mut raw = plugin.raw.clone();
            raw.insert("name".into(), Value::String(list.name.clone()));
            raw.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
            let stdin = serde_json::to_vec(&raw).expect("JSON object serializes");
            self.run("STATUS", plugin, &stdin, &RuntimeConf::default())?;
        }
        Ok(())
    }

    /// ADD of a single config (libcni `AddNetwork`), cached under the config's name.
    pub fn add_network(&self, conf: &PluginConfig, rt: &RuntimeConf) -> Result<CniResult, Error> {
        let result = self.add_one(conf.name(), conf.cni_version(), conf, None, rt)?;
        let list = NetworkConfigList::from_single(conf.clone())?;
        self.write_cache(&list, &conf.to_bytes(), &result, rt)?;
        Ok(result)
    }

    /// DEL of a single config; an unreadable cache is an error here, as in libcni.
    pub fn del_network(&self, conf: &PluginConfig, rt: &RuntimeConf) -> Result<(), Error> {
        let version = Version::parse(conf.cni_version())?;
        let prev = if version.supports_check() {
            self.cached_result(conf.name(), conf.cni_version(), rt)
                .map_err(|e| e.context(format!("failed to get network {:?} cached result", conf.name())))?
                .map(|r| r.to_value(conf.cni_version()))
                .transpose()?
        } else {
            None
        };
        let stdin = build_one_config(conf.name(), conf.cni_version(), conf, prev.as_ref(), &rt.capability_args);
        self.run("DEL", conf, &stdin, rt)?;
        cache::remove(&self.cache_file(conf.name(), rt))
    }

    /// CHECK of a single config (≥0.4.0) with its cached result.
    pub fn check_network(&self, conf: &PluginConfig, rt: &RuntimeConf) -> Result<(), Error> {
        let list = NetworkConfigList::from_single(conf.clone())?;
        self.check_network_list(&list, rt)
    }

    /// Asks a plugin which versions it speaks (libcni `GetVersionInfo`).
    pub fn version_info(&self, plugin_type: &str) -> Result<VersionInfo, Error> {
        let path = self.exec.find_in_path(plugin_type, &self.path)?;
        let stdin = format!("{{\"cniVersion\":{:?}}}", super::version::CURRENT);
        // Older skel versions insist on these variables even for VERSION.
        let env = vec![
            ("CNI_COMMAND".to_string(), "VERSION".to_string()),
            ("CNI_NETNS".to_string(), "dummy".to_string()),
            ("CNI_IFNAME".to_string(), "dummy".to_string()),
            ("CNI_PATH".to_string(), "dummy".to_string()),
        ];
        VersionInfo::decode(&self.exec.exec_plugin(&path, stdin.as_bytes(), &env)?)
    }

    /// The cached result of an attachment in its own version (for callers that need it raw).
    pub fn get_cached_result(&self, network: &str, rt: &RuntimeConf) -> Result<Option<CniResult>, Error> {
        cache::read(&self.cache_file(network, rt))?.into_result().map(|r| CniResult::from_value(r, "")).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_codes_match_libcni() {
        assert_eq!(validate_container_id("").unwrap_err().code(), 3);
        assert_eq!(validate_container_id("a b").unwrap_err().code(), 4);
        assert_eq!(validate_network_name("../x").unwrap_err().code(), 7);
        assert_eq!(validate_interface_name("averyveryverylongname").unwrap_err().code(), 4);
        assert!(validate_interface_name("eth0").is_ok());
        assert!(validate_interface_name("e:0").is_err());
        assert!(validate_interface_name("..").is_err());
    }

    #[test]
    fn runtime_config_only_for_declared_capabilities() {
        let p =
            PluginConfig::from_bytes(br#"{"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}}"#)
                .unwrap();
        let mut caps = Map::new();
        caps.insert("portMappings".into(), serde_json::json!([{"hostPort":8080}]));
        caps.insert("bandwidth".into(), serde_json::json!({"ingressRate":1}));
        caps.insert("ips".into(), serde_json::json!(["10.0.0.1/24"]));
        let out: Value = serde_json::from_slice(&build_one_config("n", "1.0.0", &p, None, &caps)).unwrap();
        assert_eq!(
            out,
            serde_json::json!({"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false},
                "name":"n","cniVersion":"1.0.0","runtimeConfig":{"portMappings":[{"hostPort":8080}]}})
        );
    }
}
