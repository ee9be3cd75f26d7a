//! NetworkAttachmentDefinitions (`k8s.cni.cncf.io/v1`): the object's wire shape, how it becomes a
//! delegate's config (upstream `GetCNIConfig`: `spec.config`, with the NAD's name injected when
//! the config has none; an empty spec means the file in `confDir` whose `name` is the NAD's), and
//! the namespace-isolation rule for annotation networks. Pure apart from reading `confDir`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::conf::NetConf;
use super::delegate::DelegateConfig;
use crate::cni::config::conf_files;
use crate::cni::error::Error;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NadSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkAttachmentDefinition {
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: NadSpec,
}

/// The annotation naming the device-plugin resource a NAD's interfaces come from.
pub const RESOURCE_NAME_ANNOTATION: &str = "k8s.v1.cni.cncf.io/resourceName";

impl NetworkAttachmentDefinition {
    /// The delegate config this NAD stands for.
    pub fn delegate_config(&self, conf_dir: &Path, fallback_version: &str) -> Result<DelegateConfig, Error> {
        let who = format!("{}/{}", self.metadata.namespace, self.metadata.name);
        let mut doc: Value = if self.spec.config.trim().is_empty() {
            config_from_dir(conf_dir, &self.metadata.name)
                .map_err(|e| e.context(format!("NetworkAttachmentDefinition {who} has an empty spec")))?
        } else {
            serde_json::from_str(&self.spec.config).map_err(|e| {
                Error::Decoding(format!("NetworkAttachmentDefinition {who}: spec.config is not JSON: {e}"))
            })?
        };
        let obj = doc.as_object_mut().ok_or_else(|| {
            Error::InvalidConfig(format!("NetworkAttachmentDefinition {who}: spec.config is not an object"))
        })?;
        if obj.get("name").and_then(Value::as_str).unwrap_or("").is_empty() {
            obj.insert("name".into(), Value::String(self.metadata.name.clone()));
        }
        DelegateConfig::from_value(doc, fallback_version)
            .map_err(|e| e.context(format!("NetworkAttachmentDefinition {who}")))
    }

    pub fn resource_name(&self) -> Option<&str> {
        self.metadata.annotations.get(RESOURCE_NAME_ANNOTATION).map(String::as_str).filter(|s| !s.is_empty())
    }
}

/// The config in `conf_dir` whose `name` is `name` (`.conf`, `.json`, `.conflist`, lexical order).
fn config_from_dir(conf_dir: &Path, name: &str) -> Result<Value, Error> {
    for file in conf_files(conf_dir, &["conf", "json", "conflist"])? {
        let bytes = std::fs::read(&file).map_err(|e| Error::io("failed to read", &file, e))?;
        let doc: Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::Decoding(format!("{}: {e}", file.display())))?;
        if doc.get("name").and_then(Value::as_str) == Some(name) {
            return Ok(doc);
        }
    }
    Err(Error::InvalidConfig(format!("no config named {name:?} in {}", conf_dir.display())))
}

/// Namespace isolation: an annotation may only name networks in the pod's own namespace or in
/// `globalNamespaces`.
pub fn check_isolation(conf: &NetConf, pod_namespace: &str, target_namespace: &str) -> Result<(), Error> {
    if !conf.namespace_isolation
        || target_namespace == pod_namespace
        || conf.global_namespaces.iter().any(|g| g == target_namespace)
    {
        return Ok(());
    }
    Err(Error::InvalidConfig(format!(
        "namespace isolation enabled, annotation violates permission, pod is in namespace {pod_namespace} but refers to target namespace {target_namespace}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nad(name: &str, config: &str) -> NetworkAttachmentDefinition {
        serde_json::from_value(json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": "default", "annotations": {RESOURCE_NAME_ANNOTATION: "intel.com/sriov"}},
            "spec": {"config": config}}))
        .unwrap()
    }

    #[test]
    fn spec_config_with_the_name_injected() {
        let d = nad("macvlan-conf", r#"{"cniVersion":"0.3.1","type":"macvlan","master":"eth1"}"#)
            .delegate_config(Path::new("/nonexistent"), "1.0.0")
            .unwrap();
        assert_eq!(d.network_name(), "macvlan-conf");
        assert_eq!(d.cni_version(), "0.3.1");
        let l = nad("chain", r#"{"name":"own","plugins":[{"type":"bridge"},{"type":"tuning"}]}"#)
            .delegate_config(Path::new("/nonexistent"), "1.0.0")
            .unwrap();
        assert!(
            matches!(&l, DelegateConfig::List(list) if list.plugins.len() == 2 && list.name == "own" && list.cni_version == "1.0.0")
        );
        assert_eq!(nad("x", "").resource_name(), Some("intel.com/sriov"));
    }

    #[test]
    fn an_empty_spec_comes_from_conf_dir() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("10-other.conf"), r#"{"cniVersion":"1.0.0","name":"other","type":"bridge"}"#)
            .unwrap();
        std::fs::write(
            d.path().join("20-disk.conflist"),
            r#"{"cniVersion":"1.0.0","name":"disk-net","plugins":[{"type":"macvlan"}]}"#,
        )
        .unwrap();
        let c = nad("disk-net", "").delegate_config(d.path(), "1.0.0").unwrap();
        assert!(matches!(&c, DelegateConfig::List(l) if l.name == "disk-net"));
        let e = nad("missing", "").delegate_config(d.path(), "1.0.0").unwrap_err().to_string();
        assert!(e.contains("default/missing has an empty spec") && e.contains("no config named \"missing\""), "{e}");
        let e = nad("bad", "{nope").delegate_config(d.path(), "1.0.0").unwrap_err();
        assert_eq!(e.code(), 6);
    }

    #[test]
    fn isolation() {
        let mut conf = NetConf::parse(br#"{"cniVersion":"1.0.0","type":"multus","clusterNetwork":"/x.conf","namespaceIsolation":true,"globalNamespaces":"shared"}"#).unwrap();
        assert!(check_isolation(&conf, "team-a", "team-a").is_ok());
        assert!(check_isolation(&conf, "team-a", "shared").is_ok());
        let e = check_isolation(&conf, "team-a", "team-b").unwrap_err().to_string();
        assert_eq!(
            e,
            "namespace isolation enabled, annotation violates permission, pod is in namespace team-a but refers to target namespace team-b"
        );
        conf.namespace_isolation = false;
        assert!(check_isolation(&conf, "team-a", "team-b").is_ok());
    }
}
