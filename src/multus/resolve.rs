//! Which delegates a pod gets: the `delegates` key, or `clusterNetwork` + `defaultNetworks`
//! (a network name, a directory or a file path), and the auxiliary chain. Reads config files and
//! asks the [`Cluster`] seam; runs nothing.
//!
//! Extension over upstream: without a Kubernetes client upstream ignores `clusterNetwork`; when
//! there are no inline `delegates` we use it anyway (as a path, or a conf `name` in `confDir`), so
//! a node-local setup works without an API server.

use std::path::Path;

use serde_json::{Value, json};

use super::conf::NetConf;
use super::delegate::{Delegate, DelegateConfig};
use super::kube::{Cluster, K8sArgs};
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
    } else if let Some(doc) = cluster.network(&conf.multus_namespace, reference)? {
        DelegateConfig::from_value(doc, &conf.cni_version)?
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

/// The delegates of a pod, master first.
pub fn delegates(conf: &NetConf, k8s: &K8sArgs, cluster: &dyn Cluster) -> Result<Vec<Delegate>, Error> {
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
    if let Some(aux) = auxiliary_chain(conf)? {
        out.push(aux);
    }
    Ok(out)
}
