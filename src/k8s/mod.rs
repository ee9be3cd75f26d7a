//! Everything that talks to Kubernetes components: the API-server client (`client`: where its
//! settings come from) and the [`Cluster`](crate::multus::kube::Cluster) implementation on top of it
//! (`cluster`). The rules (what to look up, what to write) stay in `crate::multus`; this module only
//! moves data to and from the API server.

pub mod client;
pub mod cluster;
pub mod informer;
