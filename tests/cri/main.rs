//! A real Kubernetes runtime calls us: containerd 1.6's CRI plugin creates and removes pod
//! sandboxes the way the kubelet asks it to (`RunPodSandbox`, `PodSandboxStatus`,
//! `StopPodSandbox`, `RemovePodSandbox` over gRPC), and invokes multus from its CNI conf dir as it
//! does on a node. Thin mode: `install_multus -t thin` and `thin_entrypoint` writing
//! `00-multus.conf`; thick mode: `install_multus -t thick` and `multus-daemon` generating
//! `00-multus.conf` in auto mode in the same directory. The Kubernetes API server is the tests'
//! fake (`support::apiserver`; no real kube-apiserver can run here), in front of it TLS for the
//! thin plugin's kubeconfig as `thin_entrypoint` writes it.
//!
//! `cluster`: one node (namespaces, containerd, API server, multus in one mode), torn down in
//! order. `scenarios`: the pod lifecycles, each run in both modes. `bare`: containerd with only
//! the cluster network, the baseline the scenarios and the bench compare against.

#[path = "../support/mod.rs"]
mod support;

mod bare;
mod cluster;
mod scenarios;
