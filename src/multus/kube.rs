//! The seam between multus's semantics and Kubernetes. `ops` and `resolve` only talk to a
//! [`Cluster`]; `NoCluster` is what a node without a kubeconfig has. The API-server client
//! implements the same trait, so every rule here is testable without one.

use std::collections::BTreeMap;

use serde_json::Value;

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

#[derive(Debug, Clone, PartialEq)]
pub enum PodLookup {
    /// No Kubernetes client is configured: only static configuration applies.
    NoClient,
    /// The API server says the pod does not exist (deleted while its sandbox was being set up).
    NotFound,
    Found(Pod),
}

pub trait Cluster: Sync {
    fn pod(&self, args: &K8sArgs) -> Result<PodLookup, Error>;

    /// A network's config document by name in `namespace` (a NetworkAttachmentDefinition);
    /// `Ok(None)` when there is no client.
    fn network(&self, namespace: &str, name: &str) -> Result<Option<Value>, Error>;

    fn has_client(&self) -> bool;
}

/// A node without Kubernetes.
pub struct NoCluster;

impl Cluster for NoCluster {
    fn pod(&self, _: &K8sArgs) -> Result<PodLookup, Error> {
        Ok(PodLookup::NoClient)
    }

    fn network(&self, _: &str, _: &str) -> Result<Option<Value>, Error> {
        Ok(None)
    }

    fn has_client(&self) -> bool {
        false
    }
}
