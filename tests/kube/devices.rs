//! Device IDs end to end through the library: the real `ApiCluster` against the fake API server
//! (pod and NADs), the fake kubelet (PodResources over gRPC; both are fakes because neither an API
//! server nor a kubelet can run here), and the `cni-recorder` test plugin as the delegate, which
//! records exactly the config and runtimeConfig multus handed it.

use std::path::Path;

use multus::cni::RawExec;
use multus::k8s::cluster::ApiCluster;
use multus::k8s::devices::DeviceSources;
use multus::k8s::podresources::{ContainerDevices, ContainerResources, ListPodResourcesResponse, PodResources};
use multus::multus::conf::NetConf;
use multus::multus::ops::{self, Invocation};
use serde_json::{Value, json};

use crate::support::apiserver::FakeApiServer;
use crate::support::kubelet::{Behaviour, FakeKubelet};
use crate::support::{Netns, test_plugin_dir};

const RESOURCE: &str = "example.com/vf";

fn kubelet_answer() -> ListPodResourcesResponse {
    ListPodResourcesResponse {
        pod_resources: vec![PodResources {
            name: "p".into(),
            namespace: "default".into(),
            containers: vec![ContainerResources {
                name: "c".into(),
                devices: vec![ContainerDevices {
                    resource_name: RESOURCE.into(),
                    device_ids: vec!["0000:03:02.0".into(), "0000:03:02.1".into()],
                    topology: None,
                }],
                ..Default::default()
            }],
        }],
    }
}

fn records(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn delegates_of_a_resource_get_successive_devices_and_device_info() {
    let pod_ns = Netns::new("d");
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let api = FakeApiServer::start();
    let kubelet = FakeKubelet::start(dir.path(), Behaviour::Answer(kubelet_answer()));
    let devinfo = dir.path().join("devinfo");
    let dp = devinfo.join("dp/example.com-vf-0000:03:02.0-device.json");
    std::fs::create_dir_all(dp.parent().unwrap()).unwrap();
    let info = json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:03:02.0"}});
    std::fs::write(&dp, info.to_string()).unwrap();

    let vf = json!({"cniVersion": "1.0.0", "name": "vfnet", "type": "cni-recorder", "recordFile": record,
        "ip": "10.6.0.5/24", "capabilities": {"deviceID": true, "CNIDeviceInfoFile": true}});
    api.create_nad("default", "vfnet", Some(&vf.to_string()), &[("k8s.v1.cni.cncf.io/resourceName", RESOURCE)]);
    api.create_pod(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "uid-p",
                     "annotations": {"k8s.v1.cni.cncf.io/networks": "vfnet, vfnet@vf1"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]}}));
    let kubeconfig = api.write_kubeconfig(dir.path());
    let cluster = ApiCluster::from_kubeconfig(kubeconfig.to_str().unwrap())
        .unwrap()
        .unwrap()
        .with_devices(DeviceSources::new(&kubelet.socket, dir.path().join("no-checkpoint")));
    let master = json!({"cniVersion": "1.0.0", "name": "master", "type": "cni-recorder", "recordFile": record, "ip": "10.5.0.5/24"});
    let conf = NetConf::parse(
        json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus", "delegates": [master],
            "cniDir": dir.path().join("multus"), "binDir": test_plugin_dir(), "deviceInfoDir": devinfo})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let inv = Invocation {
        container_id: "cid".into(),
        netns: pod_ns.path(),
        ifname: "eth0".into(),
        args: vec![
            ("K8S_POD_NAMESPACE".into(), "default".into()),
            ("K8S_POD_NAME".into(), "p".into()),
            ("K8S_POD_UID".into(), "uid-p".into()),
        ],
        path: String::new(),
    };

    ops::add(&conf, &inv, &cluster, &multus::multus::sandbox::Netns, RawExec::default()).unwrap();
    let cni_file = |ifname: &str| devinfo.join(format!("cni/default-vfnet-cid_{ifname}"));
    let adds: Vec<Value> = records(&record).into_iter().filter(|r| r["command"] == "ADD").collect();
    let seen: Vec<(Value, Value, Value, Value, Value)> = adds
        .iter()
        .map(|r| {
            let c = &r["config"];
            (
                r["ifname"].clone(),
                c["deviceID"].clone(),
                c["pciBusID"].clone(),
                c["runtimeConfig"]["deviceID"].clone(),
                c["runtimeConfig"]["CNIDeviceInfoFile"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (json!("eth0"), Value::Null, Value::Null, Value::Null, Value::Null),
            (
                json!("net1"),
                json!("0000:03:02.0"),
                json!("0000:03:02.0"),
                json!("0000:03:02.0"),
                json!(cni_file("net1").display().to_string())
            ),
            (
                json!("vf1"),
                json!("0000:03:02.1"),
                json!("0000:03:02.1"),
                json!("0000:03:02.1"),
                json!(cni_file("vf1").display().to_string())
            ),
        ],
        "devices handed out in the kubelet's order, injected as upstream does"
    );
    assert_eq!(kubelet.requests().len(), 1, "the kubelet is asked once per ADD");
    let copied: Value = serde_json::from_slice(&std::fs::read(cni_file("net1")).unwrap()).unwrap();
    assert_eq!(copied, info, "the device plugin's file was copied for the delegate");
    assert!(!cni_file("vf1").exists(), "no device-info for a device whose plugin left none");
    let pod = api.pod("default", "p").unwrap();
    let status: Value =
        serde_json::from_str(pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"].as_str().unwrap())
            .unwrap();
    assert_eq!(status[1]["device-info"], info, "network-status carries the device-info");
    assert_eq!(status[2].get("device-info"), None);

    ops::del(&conf, &inv, &cluster, RawExec::default()).unwrap();
    assert!(!cni_file("net1").exists(), "DEL removes the device-info file");
    assert!(dp.exists(), "the device plugin's own file stays");
}
