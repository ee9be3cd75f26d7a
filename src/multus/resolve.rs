//! Which delegates a pod gets: the `delegates` key, or `clusterNetwork` + `defaultNetworks`
//! (a network name, a directory or a file path); then the pod's annotations
//! (`v1.multus-cni.io/default-network` replaces the master, `k8s.v1.cni.cncf.io/networks` appends
//! NetworkAttachmentDefinitions, with device IDs for NADs that name a device-plugin resource);
//! then the auxiliary chain. Reads config files and asks the [`Cluster`] seam; runs nothing.
//!
//! Extension over upstream: without a Kubernetes client upstream ignores `clusterNetwork`; when
//! there are no inline `delegates` we use it anyway (as a path, or a conf `name` in `confDir`), so
//! a node-local setup works without an API server.

use std::path::Path;

use serde_json::{Value, json};

use super::annotation::{self, NetworkSelection};
use super::conf::NetConf;
use super::delegate::{Delegate, DelegateConfig};
use super::kube::{Cluster, EventType, K8sArgs, Pod, ResourceMap};
use super::nad;
use crate::cni::config::{conf_files, subdirectory_plugins, valid_name};
use crate::cni::error::Error;
use crate::cni::{NetworkConfigList, PluginConfig};

/// True when the cluster network (not the inline delegates) drives this pod.
pub fn uses_cluster_network(conf: &NetConf, cluster: &dyn Cluster) -> bool {
    !conf.cluster_network.is_empty() && (cluster.has_client() || conf.delegates.is_empty())
}

fn read_json(path: &Path) -> Result<Value, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("failed to read network config", path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Decoding(format!("{}: {e}", path.display())))
}

/// A network given by name, directory or file path (upstream `getNetDelegate`).
pub fn network(conf: &NetConf, cluster: &dyn Cluster, reference: &str) -> Result<Delegate, Error> {
    let config = if reference.contains('/') {
        let path = Path::new(reference);
        if path.is_dir() {
            let first = conf_files(path, &["conf", "json", "conflist"])?
                .into_iter()
                .next()
                .ok_or_else(|| Error::InvalidConfig(format!("no network config found in directory {reference}")))?;
            DelegateConfig::from_value(read_json(&first)?, &conf.cni_version)?
        } else if !path.exists() {
            return Err(Error::InvalidConfig(format!("network config file {reference} does not exist")));
        } else if path.extension().and_then(|e| e.to_str()) == Some("conflist") {
            // Subdirectory chain loading (form a): <dir>/<list name>/*.conf are appended.
            DelegateConfig::List(NetworkConfigList::from_file(path)?)
        } else {
            DelegateConfig::Single(PluginConfig::from_file(path)?)
        }
    } else if let Some(nad) = cluster.nad(&conf.multus_namespace, reference)? {
        let mut d = Delegate::new(nad.delegate_config(&conf.conf_dir, &conf.cni_version)?);
        d.name = format!("{}/{}", conf.multus_namespace, reference);
        return Ok(d);
    } else {
        let mut found = None;
        for file in conf_files(&conf.conf_dir, &["conf", "json", "conflist"])? {
            let doc = read_json(&file)?;
            if doc.get("name").and_then(Value::as_str) == Some(reference) {
                found = Some(doc);
                break;
            }
        }
        let doc = found.ok_or_else(|| {
            Error::InvalidConfig(format!(
                "could not find network {reference:?} (no config with that name in {})",
                conf.conf_dir.display()
            ))
        })?;
        DelegateConfig::from_value(doc, &conf.cni_version)?
    };
    Ok(Delegate::new(config))
}

/// The auxiliary chain (form b): `passthru` + `<dir of clusterNetwork>/<name>/*.conf`, or none
/// when that subdirectory has no plugins.
pub fn auxiliary_chain(conf: &NetConf) -> Result<Option<Delegate>, Error> {
    let name = &conf.auxiliary_cni_chain_name;
    if name.is_empty() {
        return Ok(None);
    }
    validate_auxiliary_chain(conf)?;
    let cn = Path::new(&conf.cluster_network);
    let dir = if cn.is_dir() { cn } else { cn.parent().unwrap_or(Path::new("/")) };
    let plugins = subdirectory_plugins(dir, name)?;
    if plugins.is_empty() {
        return Ok(None);
    }
    let mut all = vec![json!({"type": "passthru", "name": "passthru-cni"})];
    all.extend(plugins.into_iter().map(|p| Value::Object(p.raw)));
    let list = NetworkConfigList::from_value(json!({"cniVersion": conf.cni_version, "name": name, "plugins": all}))?;
    Ok(Some(Delegate::new(DelegateConfig::List(list))))
}

/// The auxiliary chain needs a clusterNetwork path and a name that is one safe path component.
fn validate_auxiliary_chain(conf: &NetConf) -> Result<(), Error> {
    let name = &conf.auxiliary_cni_chain_name;
    if name.is_empty() {
        return Ok(());
    }
    if !conf.cluster_network.contains('/') {
        return Err(Error::InvalidConfig(format!(
            "auxiliary chain {name:?} used but clusterNetwork must be a path to a CNI config, not {:?}",
            conf.cluster_network
        )));
    }
    if !valid_name(name) {
        return Err(Error::InvalidConfig(format!(
            "invalid auxiliaryCNIChainName {name:?}: must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"
        )));
    }
    Ok(())
}

/// The pod annotation that replaces the cluster network for one pod.
pub const DEFAULT_NETWORK_ANNOTATION: &str = "v1.multus-cni.io/default-network";
/// The pod annotation that selects additional networks.
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";

/// Hands out the pod's devices: the kubelet is asked once per ADD, and successive delegates with
/// the same resource name get successive device IDs.
struct Devices<'a> {
    cluster: &'a dyn Cluster,
    pod: &'a Pod,
    map: Option<ResourceMap>,
    used: std::collections::BTreeMap<String, usize>,
}

impl Devices<'_> {
    fn next(&mut self, resource: &str) -> Result<Option<String>, Error> {
        if self.map.is_none() {
            self.map = Some(self.cluster.resource_map(self.pod)?);
        }
        let ids = self.map.as_ref().and_then(|m| m.get(resource));
        let n = self.used.entry(resource.to_string()).or_insert(0);
        let id = ids.and_then(|ids| ids.get(*n)).cloned();
        *n += 1;
        Ok(id)
    }
}

/// The delegate for one selected NetworkAttachmentDefinition (upstream `getKubernetesDelegate`).
fn nad_delegate(
    conf: &NetConf,
    pod: &Pod,
    cluster: &dyn Cluster,
    devices: &mut Devices,
    sel: &NetworkSelection,
) -> Result<Delegate, Error> {
    let Some(nad) = cluster.nad(&sel.namespace, &sel.name)? else {
        let msg = format!(
            "cannot find a network-attachment-definition ({}) in namespace ({}): network-attachment-definitions.k8s.cni.cncf.io {:?} not found",
            sel.name, sel.namespace, sel.name
        );
        cluster.event(pod, EventType::Warning, "NoNetworkFound", &msg);
        return Err(Error::InvalidConfig(msg));
    };
    let mut d = Delegate::new(nad.delegate_config(&conf.conf_dir, &conf.cni_version)?);
    d.name = format!("{}/{}", sel.namespace, sel.name);
    d.requests = sel.requests.clone();
    if let Some(resource) = nad.resource_name() {
        d.requests.resource_name = Some(resource.to_string());
        match devices.next(resource)? {
            Some(id) => d.requests.device_id = Some(id),
            None => {
                crate::logging::verbose(&format!("no device of resource {resource} allocated to pod for {}", d.name))
            }
        }
    }
    Ok(d)
}

/// Applies the pod's annotations to the delegate list (upstream `TryLoadPodDelegates`).
fn pod_delegates(conf: &NetConf, pod: &Pod, cluster: &dyn Cluster, out: &mut Vec<Delegate>) -> Result<(), Error> {
    let mut devices = Devices { cluster, pod, map: None, used: Default::default() };
    if let Some(value) = pod.annotations.get(DEFAULT_NETWORK_ANNOTATION).filter(|v| !v.trim().is_empty()) {
        let sels = annotation::parse_networks(value, &conf.multus_namespace)
            .map_err(|e| e.context(format!("invalid {DEFAULT_NETWORK_ANNOTATION} annotation")))?;
        let [sel] = sels.as_slice() else {
            return Err(Error::InvalidConfig(format!(
                "{DEFAULT_NETWORK_ANNOTATION} annotation must name exactly one network, not {value:?}"
            )));
        };
        let mut master = nad_delegate(conf, pod, cluster, &mut devices, sel)?;
        master.master = true;
        match out.first_mut() {
            Some(first) => *first = master,
            None => out.push(master),
        }
    }
    if let Some(value) = pod.annotations.get(NETWORKS_ANNOTATION) {
        for sel in annotation::parse_networks(value, &pod.namespace)? {
            nad::check_isolation(conf, &pod.namespace, &sel.namespace)?;
            out.push(nad_delegate(conf, pod, cluster, &mut devices, &sel)?);
        }
    }
    Ok(())
}

/// The delegates of a pod, master first. `pod` is the pod object when Kubernetes knows it.
pub fn delegates(
    conf: &NetConf,
    k8s: &K8sArgs,
    pod: Option<&Pod>,
    cluster: &dyn Cluster,
) -> Result<Vec<Delegate>, Error> {
    validate_auxiliary_chain(conf)?;
    let mut out = Vec::new();
    if uses_cluster_network(conf, cluster) {
        let mut master = network(conf, cluster, &conf.cluster_network)
            .map_err(|e| e.context(format!("failed to load clusterNetwork {:?}", conf.cluster_network)))?;
        master.master = true;
        out.push(master);
        if !conf.system_namespaces.contains(&k8s.namespace) {
            for n in &conf.default_networks {
                out.push(
                    network(conf, cluster, n).map_err(|e| e.context(format!("failed to load defaultNetwork {n:?}")))?,
                );
            }
        }
    } else {
        for (i, v) in conf.delegates.iter().enumerate() {
            let mut d = Delegate::new(
                DelegateConfig::from_value(v.clone(), &conf.cni_version)
                    .map_err(|e| e.context(format!("delegates[{i}]")))?,
            );
            d.master = i == 0;
            out.push(d);
        }
    }
    if let Some(pod) = pod {
        pod_delegates(conf, pod, cluster, &mut out)?;
    }
    if let Some(aux) = auxiliary_chain(conf)? {
        out.push(aux);
    }
    Ok(out)
}
