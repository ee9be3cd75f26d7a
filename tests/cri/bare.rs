//! containerd with only the cluster network (no multus): the harness itself works — a sandbox
//! gets `eth0` with the IP CRI reports, StopPodSandbox frees it, RemovePodSandbox removes the
//! sandbox, and teardown leaves no process, mount or cgroup behind.

use crate::cluster::{CLUSTER_SUBNET, Cluster, Mode};
use crate::support::containerd::{interfaces_at, sandbox_netns};
use crate::support::cri::{SANDBOX_NOTREADY, SANDBOX_READY};

#[test]
fn bare_cluster_network_sandbox_lifecycle_and_clean_teardown() {
    let mut c = Cluster::new(Mode::Bare);
    let cri = c.cri();
    let version = cri.version().unwrap();
    assert_eq!((version.runtime_name.as_str(), version.runtime_api_version.as_str()), ("containerd", "v1"));

    let id = c.run("default", "bare").unwrap();
    let status = cri.pod_sandbox_status(&id).unwrap().status.unwrap();
    assert_eq!(status.state, SANDBOX_READY);
    let ip = status.network.unwrap().ip;
    let netns = sandbox_netns(&cri, &id);
    let ifs = interfaces_at(&netns);
    assert_eq!(ifs.get("eth0"), Some(&vec![format!("{ip}/24")]), "{ifs:?}");
    assert!(ip.starts_with(&CLUSTER_SUBNET[..7]), "{ip}");
    assert_eq!(c.ipam_ips("cbr"), std::slice::from_ref(&ip));

    cri.stop_pod_sandbox(&id).unwrap();
    assert_eq!(cri.pod_sandbox_status(&id).unwrap().status.unwrap().state, SANDBOX_NOTREADY);
    assert!(c.ipam_ips("cbr").is_empty(), "StopPodSandbox left {:?}", c.ipam_ips("cbr"));
    cri.remove_pod_sandbox(&id).unwrap();
    assert!(cri.list_pod_sandbox().unwrap().is_empty());

    let mut containerd = c.containerd.take().unwrap();
    let forced = containerd.shutdown();
    assert!(forced.is_empty(), "CRI left things to force: {forced:?}");
    assert!(containerd.leftover_pids().is_empty() && containerd.mounts().is_empty());
    assert!(containerd.cgroup_dirs().is_empty(), "cgroups left: {:?}", containerd.cgroup_dirs());
}
