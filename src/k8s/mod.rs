//! Everything that talks to Kubernetes components. The API server: where the client's settings
//! come from (`client`), the [`Cluster`](crate::multus::kube::Cluster) implementation on top of it
//! (`cluster`) and the daemon's watch-fed variant (`informer`). The kubelet: its PodResources API and
//! device-plugin checkpoint (`podresources`, `checkpoint`), and the device IDs a pod was given
//! (`devices`). The per-node client certificate (`pernode`, with the X.509 it needs in `x509`).
//! The rules (what to look up, what to write) stay in `crate::multus`, which reaches all of this
//! only through `multus::kube::Cluster`, where this layer's [`Error`] becomes a `cni::Error`.

pub mod approver;
pub mod checkpoint;
pub mod client;
pub mod cluster;
pub mod conns;
pub mod devices;
pub mod error;
pub mod generator;
pub mod informer;
pub mod pernode;
pub mod podresources;
pub mod transport;
pub mod x509;

pub use error::Error;
