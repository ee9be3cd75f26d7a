//! The seam between multus's semantics and Kubernetes. `ops` and `resolve` only talk to a
//! [`Cluster`]; `NoCluster` is what a node without a kubeconfig has. The API-server client
//! implements the same trait, so every rule here is testable without one.

use std::collections::BTreeMap;

use super::nad::NetworkAttachmentDefinition;
use super::status::NetworkStatus;
use crate::cni::error::Error;

/// The pod identity the runtime passes in CNI_ARGS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct K8sArgs {
    pub namespace: String,
    pub name: String,
    pub infra_container_id: String,
    pub uid: String,
}

impl K8sArgs {
    pub fn from_args(args: &[(String, String)]) -> K8sArgs {
        let get = |k: &str| args.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
        K8sArgs {
            namespace: get("K8S_POD_NAMESPACE"),
            name: get("K8S_POD_NAME"),
            infra_container_id: get("K8S_POD_INFRA_CONTAINER_ID"),
            uid: get("K8S_POD_UID"),
        }
    }

    /// `ns/name/uid` as upstream prefixes its errors.
    pub fn describe(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.name, self.uid)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub annotations: BTreeMap<String, String>,
}

/// The annotation a kubelet puts on pods it did not get from the API server (static pods).
pub const CONFIG_SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";

impl Pod {
    /// Static pods (from a manifest file or URL) have a mirror object whose UID differs.
    pub fn is_static(&self) -> bool {
        self.annotations.get(CONFIG_SOURCE_ANNOTATION).is_some_and(|s| s != "api")
    }

    /// Upstream's ADD rule: the pod the API returns must be the sandbox's pod (same UID), unless
    /// the runtime passed no UID or the pod is static.
    pub fn check_uid(&self, args: &K8sArgs) -> Result<(), Error> {
        if args.uid.is_empty() || self.uid == args.uid || self.is_static() {
            return Ok(());
        }
        Err(Error::InvalidConfig(format!(
            "expected pod UID {:?} but got {:?} from Kube API for pod {}/{}",
            args.uid, self.uid, self.namespace, self.name
        )))
    }
}

/// Device IDs per resource name, in the order the kubelet allocated them.
pub type ResourceMap = BTreeMap<String, Vec<String>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PodLookup {
    /// No Kubernetes client is configured: only static configuration applies.
    NoClient,
    /// The API server says the pod does not exist (deleted while its sandbox was being set up).
    NotFound,
    Found(Pod),
}

/// Everything multus asks of Kubernetes. Implementations: [`NoCluster`], the API-server client
/// (`crate::k8s::cluster::ApiCluster`) and the daemon's informer-backed one.
pub trait Cluster: Send + Sync {
    fn has_client(&self) -> bool;

    /// The sandbox's pod, with the implementation's retry policy applied.
    fn pod(&self, args: &K8sArgs) -> Result<PodLookup, Error>;

    /// The pod as DEL and CHECK need it. ADD waits for a pod the caches have not seen yet; a
    /// teardown does not, because a pod that is gone stays gone (upstream: NotFound is final on
    /// DEL), and DEL works from the scratch cache anyway.
    fn teardown_pod(&self, args: &K8sArgs) -> Result<PodLookup, Error> {
        self.pod(args)
    }

    /// A NetworkAttachmentDefinition; `Ok(None)` when it does not exist or there is no client.
    fn nad(&self, namespace: &str, name: &str) -> Result<Option<NetworkAttachmentDefinition>, Error>;

    /// Writes the `k8s.v1.cni.cncf.io/network-status` annotation. A pod that vanished meanwhile
    /// is not an error.
    fn set_network_status(&self, _pod: &Pod, _entries: &[NetworkStatus]) -> Result<(), Error> {
        Ok(())
    }

    /// Records an event on the pod; failures are only logged (events are best effort).
    fn event(&self, _pod: &Pod, _kind: EventType, _reason: &str, _message: &str) {}

    /// The devices the kubelet allocated to the pod, per resource name.
    fn resource_map(&self, _pod: &Pod) -> Result<ResourceMap, Error> {
        Ok(ResourceMap::new())
    }
}

/// A node without Kubernetes.
pub struct NoCluster;

impl Cluster for NoCluster {
    fn pod(&self, _: &K8sArgs) -> Result<PodLookup, Error> {
        Ok(PodLookup::NoClient)
    }

    fn nad(&self, _: &str, _: &str) -> Result<Option<NetworkAttachmentDefinition>, Error> {
        Ok(None)
    }

    fn has_client(&self) -> bool {
        false
    }
}
