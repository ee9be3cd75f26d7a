//! The Kubernetes side end to end: the fake API server (checked against the real `kubectl`), the
//! fake kubelet PodResources server, and the thin `multus` plugin resolving networks from
//! NetworkAttachmentDefinitions and pod annotations, delegating to Debian's reference plugins in
//! namespaces the tests create.

#[path = "../support/mod.rs"]
mod support;

mod apiserver;
mod auth;
mod devices;
mod networks;
mod pernode;
mod podresources;
mod tls;
