//! The kubelet PodResources client against the fake kubelet and against a real gRPC
//! implementation (Python grpcio, both as server and as client of our fake), the fallback rule to
//! the device-plugin checkpoint, and the device-info files.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use multus::k8s::checkpoint;
use multus::k8s::devices::{DeviceSources, Source, resource_map};
use multus::k8s::podresources::{
    self, ContainerDevices, ContainerResources, ListError, ListPodResourcesResponse, PodResources, code, list,
    list_blocking,
};
use multus::multus::devinfo;
use multus::multus::kube::Pod;
use prost::Message;
use serde_json::{Value, json};

use crate::support::kubelet::{Behaviour, FakeKubelet};

const GOLDEN_BIN: &[u8] = include_bytes!("../fixtures/podresources/list-response.bin");
const CHECKPOINT: &str = "tests/fixtures/checkpoint/kubelet_internal_checkpoint-1.21.json";
const CHECKPOINT_POD_UID: &str = "9d3c7b1e-0f4a-4c55-8a7e-1b2f3c4d5e6f";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The golden answer (encoded by Python protobuf from list-response.json).
fn golden() -> ListPodResourcesResponse {
    ListPodResourcesResponse::decode(GOLDEN_BIN).unwrap()
}

fn sriov_pod() -> Pod {
    Pod { name: "sriov-pod".into(), namespace: "default".into(), uid: CHECKPOINT_POD_UID.into(), ..Default::default() }
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

// ------------------------------------------------------------------------------------------------
// Our client against the fake kubelet.
// ------------------------------------------------------------------------------------------------

#[test]
fn client_lists_from_the_fake_kubelet_with_the_grpc_wire_format() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = FakeKubelet::start(dir.path(), Behaviour::Answer(golden()));
    let answer = rt().block_on(list(&kubelet.socket, podresources::DEFAULT_TIMEOUT)).unwrap();
    assert_eq!(answer, golden());
    let blocking = list_blocking(&kubelet.socket, podresources::DEFAULT_TIMEOUT).unwrap();
    assert_eq!(blocking, golden());

    let reqs = kubelet.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v1.PodResourcesLister/List");
        assert_eq!(r.content_type, "application/grpc");
        assert_eq!(r.te, "trailers");
        assert_eq!(r.body, [0, 0, 0, 0, 0], "one uncompressed, empty ListPodResourcesRequest");
    }
}

#[test]
fn grpc_failure_is_an_error_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = FakeKubelet::start(
        dir.path(),
        Behaviour::Fail { code: code::UNAVAILABLE, message: "kubelet is shutting down: 100% — bye".into() },
    );
    let e = list_blocking(&kubelet.socket, podresources::DEFAULT_TIMEOUT).unwrap_err();
    match &e {
        ListError::Status { code, message, socket } => {
            assert_eq!(*code, 14);
            assert_eq!(message, "kubelet is shutting down: 100% — bye");
            assert_eq!(socket, &kubelet.socket);
        }
        other => panic!("expected a grpc status, got {other:?}"),
    }
    let text = e.to_string();
    assert!(text.contains("UNAVAILABLE") && text.contains(&kubelet.socket.display().to_string()), "{text}");
}

#[test]
fn stalled_kubelet_times_out_and_the_fake_still_stops() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = FakeKubelet::start(dir.path(), Behaviour::Stall);
    let e = list_blocking(&kubelet.socket, Duration::from_millis(300)).unwrap_err();
    assert!(matches!(e, ListError::Timeout { .. }), "{e:?}");
    assert_eq!(e.grpc_code(), Some(code::DEADLINE_EXCEEDED));
    assert_eq!(kubelet.requests().len(), 1, "the call reached the kubelet before it stalled");
    // The next call gets an answer on a fresh connection.
    kubelet.set(Behaviour::Answer(ListPodResourcesResponse::default()));
    assert_eq!(list_blocking(&kubelet.socket, podresources::DEFAULT_TIMEOUT).unwrap(), Default::default());
    let socket = kubelet.socket.clone();
    drop(kubelet);
    assert!(!socket.exists(), "the fake removes its socket");
}

#[test]
fn message_over_16_mib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let huge = ListPodResourcesResponse {
        pod_resources: vec![PodResources {
            name: "p".into(),
            namespace: "n".into(),
            containers: vec![ContainerResources {
                devices: vec![ContainerDevices {
                    resource_name: "r".into(),
                    device_ids: vec!["x".repeat(podresources::MAX_MESSAGE_SIZE)],
                    topology: None,
                }],
                ..Default::default()
            }],
        }],
    };
    let kubelet = FakeKubelet::start(dir.path(), Behaviour::Answer(huge));
    let e = list_blocking(&kubelet.socket, podresources::DEFAULT_TIMEOUT).unwrap_err();
    assert_eq!(e.grpc_code(), Some(code::RESOURCE_EXHAUSTED), "{e}");
    assert!(e.to_string().contains("vs. 16777216"), "{e}");
}

// ------------------------------------------------------------------------------------------------
// The resource map: which source, and what the delegates get.
// ------------------------------------------------------------------------------------------------

#[test]
fn resource_map_from_the_kubelet_when_the_socket_exists() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = FakeKubelet::start(dir.path(), Behaviour::Answer(golden()));
    let map = resource_map(&kubelet.socket, &root().join(CHECKPOINT), &sriov_pod()).unwrap();
    assert_eq!(map.source, Source::PodResources);
    assert_eq!(
        map.resources,
        BTreeMap::from([
            ("intel.com/sriov_netdevice".to_string(), ids(&["0000:03:02.0", "0000:03:02.1", "0000:03:02.5"])),
            ("nvidia.com/gpu".to_string(), ids(&["GPU-6a1c"])),
            ("vf-claim".to_string(), ids(&["0000:05:00.3"])),
        ])
    );
}

#[test]
fn checkpoint_is_read_only_when_the_socket_is_absent() {
    let dir = tempfile::tempdir().unwrap();
    let sources = DeviceSources::new(dir.path().join("kubelet.sock"), root().join(CHECKPOINT));
    let pod = sriov_pod();
    let map = sources.resource_map(&pod).unwrap();
    assert_eq!(map.source, Source::Checkpoint);
    assert_eq!(
        map.resources["intel.com/sriov_netdevice"],
        ids(&["0000:03:02.0", "0000:03:02.1", "0000:81:02.3", "0000:03:02.5"])
    );
    assert_eq!(map.resources["nvidia.com/gpu"], ids(&["GPU-6a1c"]));
    // Same through the async entry point.
    assert_eq!(rt().block_on(sources.resource_map_async(&pod)).unwrap(), map);
}

#[test]
fn a_failing_kubelet_is_an_error_not_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = root().join(CHECKPOINT);
    let kubelet =
        FakeKubelet::start(dir.path(), Behaviour::Fail { code: code::UNAVAILABLE, message: "not ready".into() });
    let e = resource_map(&kubelet.socket, &checkpoint, &sriov_pod()).unwrap_err();
    assert!(e.to_string().contains("not ready"), "{e}");
    assert!(matches!(e, multus::k8s::Error::Devices(_)), "{e:?}");
    let cni = multus::cni::Error::from(e);
    assert_eq!(cni.code(), 999, "upstream's plain error reaches the runtime as CNI code 999");
    drop(kubelet);

    // A stale socket file (nobody listening) exists too: upstream's stat says "use the kubelet".
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let e = resource_map(&stale, &checkpoint, &sriov_pod()).unwrap_err();
    assert!(e.to_string().contains("failed to connect") && e.to_string().contains("stale.sock"), "{e}");

    // Neither source: the checkpoint's absence is the error, naming the file.
    let e = resource_map(&dir.path().join("none.sock"), &dir.path().join("none"), &sriov_pod()).unwrap_err();
    assert!(e.to_string().contains(&dir.path().join("none").display().to_string()), "{e}");
    assert!(checkpoint::read(&checkpoint).is_ok());
}

// ------------------------------------------------------------------------------------------------
// The independent judge: Python grpcio on the other side.
// ------------------------------------------------------------------------------------------------

fn python() -> PathBuf {
    let py = root().join("target/tools/grpc-venv/bin/python");
    assert!(py.exists(), "{} missing: run scripts/install-test-deps.sh (installs grpcio from PyPI)", py.display());
    py
}

fn judge(stubs: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(python());
    c.arg(root().join("tests/support/podresources_judge.py")).arg(stubs).args(args);
    c
}

fn judge_output(stubs: &Path, args: &[&str]) -> Value {
    let out = judge(stubs, args).output().unwrap();
    assert!(out.status.success(), "judge {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("judge {args:?} printed no JSON: {e}"))
}

/// A grpcio PodResources server; killed and reaped on drop (it also exits when our end of its
/// stdin closes).
struct PythonServer {
    child: Child,
    socket: PathBuf,
}

impl PythonServer {
    fn start(stubs: &Path, socket: &Path, args: &[&str]) -> PythonServer {
        let mut full = vec![args[0], socket.to_str().unwrap()];
        full.extend_from_slice(&args[1..]);
        let mut child =
            judge(stubs, &full).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let server = PythonServer { child, socket: socket.to_path_buf() };
        assert_eq!(line.trim(), "ready", "python server did not start");
        server
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[test]
fn judge_our_client_against_a_grpcio_server() {
    let dir = tempfile::tempdir().unwrap();
    let stubs = dir.path().join("stubs");
    let fixture = root().join("tests/fixtures/podresources/list-response.json");
    let socket = dir.path().join("py.sock");
    {
        let _server = PythonServer::start(&stubs, &socket, &["serve", fixture.to_str().unwrap()]);
        let answer = list_blocking(&socket, podresources::DEFAULT_TIMEOUT).unwrap();
        assert_eq!(answer, golden());
        // The whole document: what we decoded, encoded again, is what grpcio makes of the JSON.
        let ours = dir.path().join("ours.bin");
        std::fs::write(&ours, answer.encode_to_vec()).unwrap();
        assert_eq!(
            judge_output(&stubs, &["decode", ours.to_str().unwrap()]),
            judge_output(&stubs, &["normalize", fixture.to_str().unwrap()])
        );
        // Spot checks against the JSON document itself, not only the golden bytes.
        let pod = &answer.pod_resources[0];
        assert_eq!((pod.name.as_str(), pod.namespace.as_str()), ("sriov-pod", "default"));
        assert_eq!(pod.containers[0].cpu_ids, [2, 3, 10]);
        assert_eq!(pod.containers[0].memory[0].size, 2147483648);
        assert_eq!(pod.containers[0].dynamic_resources[0].claim_resources[0].device_name, "vf-3");
        assert_eq!(answer.pod_resources[1].containers[0].dynamic_resources[0].class_name, "gpu.example.com");
        let map = resource_map(&socket, Path::new("/nonexistent"), &sriov_pod()).unwrap();
        assert_eq!(map.source, Source::PodResources);
        assert_eq!(
            map.resources,
            BTreeMap::from([
                ("intel.com/sriov_netdevice".to_string(), ids(&["0000:03:02.0", "0000:03:02.1", "0000:03:02.5"])),
                ("nvidia.com/gpu".to_string(), ids(&["GPU-6a1c"])),
                ("vf-claim".to_string(), ids(&["0000:05:00.3"])),
            ])
        );
    }
    {
        let _server = PythonServer::start(&stubs, &socket, &["fail", "UNAVAILABLE", "kubelet is shutting down — né"]);
        let e = list_blocking(&socket, podresources::DEFAULT_TIMEOUT).unwrap_err();
        match e {
            ListError::Status { code, message, .. } => {
                assert_eq!((code, message.as_str()), (14, "kubelet is shutting down — né"))
            }
            other => panic!("expected a grpc status, got {other:?}"),
        }
    }
}

#[test]
fn judge_our_fake_kubelet_with_a_grpcio_client() {
    let dir = tempfile::tempdir().unwrap();
    let stubs = dir.path().join("stubs");
    let fixture = root().join("tests/fixtures/podresources/list-response.json");
    let kubelet = FakeKubelet::start(dir.path(), Behaviour::Answer(golden()));
    let socket = kubelet.socket.to_str().unwrap().to_string();

    // What grpcio read from our fake equals what it makes of the JSON document itself.
    let got = judge_output(&stubs, &["list", &socket]);
    let expected = judge_output(&stubs, &["normalize", fixture.to_str().unwrap()]);
    assert_eq!(got, expected);
    assert_eq!(
        got["pod_resources"][0]["containers"][0]["devices"][0]["device_ids"],
        json!(["0000:03:02.0", "0000:03:02.1"])
    );

    kubelet.set(Behaviour::Fail { code: code::UNAVAILABLE, message: "kubelet is shutting down — né".into() });
    assert_eq!(
        judge_output(&stubs, &["list", &socket]),
        json!({"error": "UNAVAILABLE", "details": "kubelet is shutting down — né"})
    );
}

// ------------------------------------------------------------------------------------------------
// Device-info files.
// ------------------------------------------------------------------------------------------------

#[test]
fn device_info_copied_on_add_read_for_status_removed_on_del() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("devinfo");
    let dp = devinfo::dp_path(&base, "intel.com/sriov_netdevice", "0000:03:02.0");
    assert_eq!(dp, base.join("dp/intel.com-sriov_netdevice-0000:03:02.0-device.json"));
    std::fs::create_dir_all(dp.parent().unwrap()).unwrap();
    // As a device plugin writes it (indented, with a key the spec does not know).
    std::fs::write(
        &dp,
        "{\n  \"type\": \"pci\",\n  \"version\": \"1.1.0\",\n  \"pci\": {\"pci-address\": \"0000:03:02.0\", \"pf-pci-address\": \"0000:03:00.0\"},\n  \"vendor-extra\": 1\n}\n",
    )
    .unwrap();

    let cni = devinfo::cni_path_for(&base, "default/sriov-net", "3f2a9c0d", "net1");
    assert_eq!(cni, base.join("cni/default-sriov-net-3f2a9c0d_net1"));
    assert_eq!(devinfo::read(&cni).unwrap(), None, "nothing before ADD");
    devinfo::copy_dp_to_cni(&base, "intel.com/sriov_netdevice", "0000:03:02.0", &cni).unwrap();
    assert_eq!(
        std::fs::read_to_string(&cni).unwrap(),
        r#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:02.0","pf-pci-address":"0000:03:00.0"}}"#
    );
    assert_eq!(std::fs::metadata(&cni).unwrap().permissions().mode() & 0o777, 0o444);
    let names: Vec<String> = std::fs::read_dir(cni.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["default-sriov-net-3f2a9c0d_net1"], "no temp file left behind");

    let status = devinfo::read(&cni).unwrap().unwrap().to_value();
    assert_eq!(
        status,
        json!({"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:02.0","pf-pci-address":"0000:03:00.0"}})
    );

    let again = devinfo::copy_dp_to_cni(&base, "intel.com/sriov_netdevice", "0000:03:02.0", &cni).unwrap_err();
    assert!(again.to_string().contains("already exists"), "{again}");
    let missing =
        devinfo::copy_dp_to_cni(&base, "intel.com/sriov_netdevice", "0000:03:02.9", &base.join("cni/x")).unwrap_err();
    assert!(missing.to_string().contains("0000:03:02.9-device.json"), "{missing}");
    assert!(!base.join("cni/x").exists());

    devinfo::remove(&cni).unwrap();
    assert!(!cni.exists());
    devinfo::remove(&cni).unwrap();
    assert!(dp.exists(), "the device plugin's file is not ours to remove");
}
