//! The thin `multus` plugin end to end: the real binary, invoked the way a runtime invokes it
//! (CNI_* environment, config on stdin, from inside a fake node namespace), delegating to Debian's
//! reference plugins in a pod namespace the test creates. Assertions read the namespaces, the
//! IPAM state and the caches. `entrypoint`: `thin_entrypoint`, the thin DaemonSet's container,
//! on temporary host trees. `interop`: the scratch cache against Go multus's definition of it.

#[path = "../support/mod.rs"]
mod support;

mod entrypoint;
mod errors;
mod flows;
mod interop;
mod podman;
mod routes;
