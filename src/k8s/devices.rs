//! The device IDs a pod was given, by resource name (Multus 4.2.x `kubeletclient.GetResourceClient`
//! and `GetPodResourceMap`). Handing them out to the delegates whose NetworkAttachmentDefinition
//! carries `k8s.v1.cni.cncf.io/resourceName` is `multus::resolve`'s job.
//!
//! Where the map comes from (upstream's rule): if the PodResources socket exists (a plain
//! `stat`), the kubelet is asked and any failure of that call is the ADD's failure; only when the
//! socket does not exist is the device-plugin checkpoint read. From the kubelet answer, the pod
//! is matched by name and namespace: device-plugin devices by resource name, in order, and DRA
//! devices under the claim name with each CDI device's ID being the part after `=` (Multus
//! 4.2.3; 4.2.1 keyed them by the class name, which kubelets since 1.31 no longer fill in). From
//! the checkpoint, the pod is matched by UID.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Error;
use crate::k8s::checkpoint;
use crate::k8s::podresources::{self, ListPodResourcesResponse};
use crate::multus::kube::Pod;

/// Where a [`ResourceMap`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    PodResources,
    Checkpoint,
}

/// A pod's device IDs by resource name (a device-plugin resource, or a DRA claim name).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceMap {
    pub source: Source,
    pub resources: BTreeMap<String, Vec<String>>,
}

/// The device ID of a fully qualified CDI name `vendor.com/class=device`: what follows the `=`.
/// A name without exactly one `=` has none (upstream logs "Invalid CDI format" and skips it).
pub fn cdi_device_id(name: &str) -> Option<&str> {
    let mut parts = name.split('=');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(id), None) => Some(id),
        _ => None,
    }
}

/// The pod's devices in a PodResources `List` answer. Every container of the pod (matched by
/// name and namespace; both must be set) contributes, in order: its device-plugin devices under
/// their resource name, then each DRA claim's CDI device IDs under the claim name. A claim with
/// no usable CDI device still gets its (empty) entry, as upstream.
pub fn from_pod_resources(
    answer: &ListPodResourcesResponse,
    name: &str,
    namespace: &str,
) -> Result<BTreeMap<String, Vec<String>>, Error> {
    if name.is_empty() || namespace.is_empty() {
        return Err(Error::Devices(format!(
            "cannot look up pod resources: pod name ({name:?}) or namespace ({namespace:?}) is empty"
        )));
    }
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pod in answer.pod_resources.iter().filter(|p| p.name == name && p.namespace == namespace) {
        for c in &pod.containers {
            for d in &c.devices {
                out.entry(d.resource_name.clone()).or_default().extend(d.device_ids.iter().cloned());
            }
            for dr in &c.dynamic_resources {
                let ids = dr
                    .claim_resources
                    .iter()
                    .flat_map(|cr| &cr.cdi_devices)
                    .filter_map(|cdi| cdi_device_id(&cdi.name))
                    .map(str::to_string);
                out.entry(dr.claim_name.clone()).or_default().extend(ids);
            }
        }
    }
    Ok(out)
}

/// Where to look for a pod's devices.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSources {
    /// The PodResources socket ([`podresources::DEFAULT_SOCKET`]).
    pub socket: PathBuf,
    /// The device-plugin checkpoint ([`checkpoint::DEFAULT_PATH`]).
    pub checkpoint: PathBuf,
    /// For the whole `List` call ([`podresources::DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
}

impl Default for DeviceSources {
    fn default() -> Self {
        DeviceSources {
            socket: podresources::DEFAULT_SOCKET.into(),
            checkpoint: checkpoint::DEFAULT_PATH.into(),
            timeout: podresources::DEFAULT_TIMEOUT,
        }
    }
}

impl DeviceSources {
    pub fn new(socket: impl Into<PathBuf>, checkpoint: impl Into<PathBuf>) -> DeviceSources {
        DeviceSources { socket: socket.into(), checkpoint: checkpoint.into(), timeout: podresources::DEFAULT_TIMEOUT }
    }

    /// Upstream's rule: the socket when it exists, else the checkpoint.
    fn use_socket(&self) -> bool {
        std::fs::metadata(&self.socket).is_ok()
    }

    /// The pod's resource map (blocking: for the thin plugin, never inside an async task).
    pub fn resource_map(&self, pod: &Pod) -> Result<ResourceMap, Error> {
        if self.use_socket() {
            let answer = podresources::list_blocking(&self.socket, self.timeout)?;
            Self::map_answer(&answer, pod)
        } else {
            self.read_checkpoint(pod)
        }
    }

    /// The pod's resource map, for async callers (the daemon).
    pub async fn resource_map_async(&self, pod: &Pod) -> Result<ResourceMap, Error> {
        if self.use_socket() {
            let answer = podresources::list(&self.socket, self.timeout).await?;
            Self::map_answer(&answer, pod)
        } else {
            self.read_checkpoint(pod)
        }
    }

    fn map_answer(answer: &ListPodResourcesResponse, pod: &Pod) -> Result<ResourceMap, Error> {
        Ok(ResourceMap {
            source: Source::PodResources,
            resources: from_pod_resources(answer, &pod.name, &pod.namespace)?,
        })
    }

    fn read_checkpoint(&self, pod: &Pod) -> Result<ResourceMap, Error> {
        let cp = checkpoint::read(&self.checkpoint)?;
        Ok(ResourceMap { source: Source::Checkpoint, resources: cp.pod_resources(&pod.uid)? })
    }
}

/// [`DeviceSources::resource_map`] with upstream's 10 s timeout.
pub fn resource_map(socket: &Path, checkpoint: &Path, pod: &Pod) -> Result<ResourceMap, Error> {
    DeviceSources::new(socket, checkpoint).resource_map(pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    const GOLDEN: &[u8] = include_bytes!("../../tests/fixtures/podresources/list-response.bin");

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cdi_names() {
        assert_eq!(cdi_device_id("k8s.cni.cncf.io/vf=0000:05:00.3"), Some("0000:05:00.3"));
        assert_eq!(cdi_device_id("vendor.com/gpu="), Some(""));
        assert_eq!(cdi_device_id("no-equals"), None);
        assert_eq!(cdi_device_id("a=b=c"), None);
    }

    #[test]
    fn map_from_the_golden_answer() {
        let answer = ListPodResourcesResponse::decode(GOLDEN).unwrap();
        let m = from_pod_resources(&answer, "sriov-pod", "default").unwrap();
        assert_eq!(
            m,
            BTreeMap::from([
                ("intel.com/sriov_netdevice".to_string(), ids(&["0000:03:02.0", "0000:03:02.1", "0000:03:02.5"])),
                ("nvidia.com/gpu".to_string(), ids(&["GPU-6a1c"])),
                ("vf-claim".to_string(), ids(&["0000:05:00.3"])),
            ])
        );
        // The other pod: a claim served with a class name (kubelet ≤ 1.30) is still keyed by claim.
        let m = from_pod_resources(&answer, "other", "kube-system").unwrap();
        assert_eq!(m["gpu-claim"], ids(&["gpu1"]));
        assert!(!m.contains_key("gpu.example.com"));
        // Same name, other namespace: nothing.
        assert!(from_pod_resources(&answer, "sriov-pod", "kube-system").unwrap().is_empty());
        assert!(from_pod_resources(&answer, "", "default").is_err());
        assert!(from_pod_resources(&answer, "sriov-pod", "").is_err());
    }
}
