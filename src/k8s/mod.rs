//! Everything that talks to Kubernetes node/cluster components: the kubelet's PodResources API and
//! its device-plugin checkpoint (`podresources`, `checkpoint`), the device IDs a pod was given
//! (`devices`), and the device-info files shared with device plugins and CNI plugins (`devinfo`).
//! `multus::` stays free of these: it reaches Kubernetes through `multus::kube::Cluster`.

pub mod checkpoint;
pub mod devices;
pub mod devinfo;
pub mod podresources;
