//! CNI 1.1.0 GC and STATUS, and what a chain's plugins receive, against `cni-recorder` (our
//! test plugin on our skel, which records every invocation). Debian's plugins predate 1.1.0.

use multus::cni::cache;
use multus::cni::{CniConfig, GcAttachment, NetworkConfigList, RawExec, RuntimeConf};
use serde_json::{Value, json};

use crate::support::test_plugin_dir;

struct Rig {
    dir: tempfile::TempDir,
    cni: CniConfig<RawExec>,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let cni = CniConfig::new(vec![test_plugin_dir()], dir.path().join("cache"), RawExec::default());
        Rig { dir, cni }
    }

    fn record(&self) -> String {
        self.dir.path().join("record.jsonl").display().to_string()
    }

    fn list(&self, version: &str, extra: Value) -> NetworkConfigList {
        let mut doc = json!({"cniVersion": version, "name": "rec", "plugins": [
            {"type": "cni-recorder", "recordFile": self.record(), "ip": "10.1.0.5/24"},
            {"type": "cni-recorder", "recordFile": self.record(), "capabilities": {"mac": true}}
        ]});
        for (k, v) in extra.as_object().unwrap() {
            doc[k] = v.clone();
        }
        NetworkConfigList::from_value(doc).unwrap()
    }

    /// Every invocation so far, and forget them.
    fn take(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.record()).unwrap_or_default();
        let _ = std::fs::remove_file(self.record());
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn cached(&self, container: &str) -> bool {
        cache::path(&self.dir.path().join("cache"), "rec", container, "eth0").exists()
    }
}

fn rt(container: &str) -> RuntimeConf {
    let mut rt = RuntimeConf {
        container_id: container.into(),
        netns: format!("/run/netns/{container}"),
        ifname: "eth0".into(),
        args: vec![("K8S_POD_NAME".into(), container.into())],
        ..Default::default()
    };
    rt.capability_args.insert("mac".into(), json!("0a:00:00:00:00:01"));
    rt.capability_args.insert("ips".into(), json!(["10.1.0.9/24"]));
    rt
}

#[test]
fn add_chains_prev_result_and_filters_runtime_config() {
    let rig = Rig::new();
    let list = rig.list("1.1.0", json!({}));
    let r = rig.cni.add_network_list(&list, &rt("c1")).unwrap();
    assert_eq!(
        r.to_json("1.1.0").unwrap(),
        r#"{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/c1"}],"ips":[{"interface":0,"address":"10.1.0.5/24"}],"dns":{}}"#
    );
    let calls = rig.take();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["command"], "ADD");
    assert_eq!(calls[0]["args"], "K8S_POD_NAME=c1");
    assert_eq!(calls[0]["config"]["name"], "rec");
    assert!(calls[0]["config"].get("prevResult").is_none());
    assert!(calls[0]["config"].get("runtimeConfig").is_none(), "first plugin declares no capability");
    assert_eq!(calls[1]["config"]["prevResult"]["ips"][0]["address"], "10.1.0.5/24");
    assert_eq!(calls[1]["config"]["runtimeConfig"], json!({"mac": "0a:00:00:00:00:01"}));
}

#[test]
fn del_runs_in_reverse_with_the_cached_result_and_removes_the_cache() {
    let rig = Rig::new();
    let list = rig.list("1.0.0", json!({}));
    rig.cni.add_network_list(&list, &rt("c1")).unwrap();
    rig.take();
    assert!(rig.cached("c1"));
    rig.cni.del_network_list(&list, &rt("c1")).unwrap();
    let calls = rig.take();
    assert_eq!(calls.iter().map(|c| c["command"].as_str().unwrap()).collect::<Vec<_>>(), ["DEL", "DEL"]);
    assert!(calls[0]["config"].get("capabilities").is_some(), "reverse order: the second plugin first");
    for c in &calls {
        assert_eq!(c["config"]["prevResult"]["ips"][0]["address"], "10.1.0.5/24");
    }
    assert!(!rig.cached("c1"));
}

#[test]
fn del_keeps_going_after_a_failure_and_keeps_the_cache_for_a_retry() {
    let rig = Rig::new();
    let good = rig.list("1.0.0", json!({}));
    rig.cni.add_network_list(&good, &rt("c1")).unwrap();
    rig.take();
    let mut failing = good.clone();
    failing.plugins[1].raw.insert("fail".into(), json!("DEL"));
    let e = rig.cni.del_network_list(&failing, &rt("c1")).unwrap_err();
    assert_eq!(e.code(), 111);
    assert!(e.to_string().contains("failed (delete)"), "{e}");
    assert_eq!(rig.take().len(), 2, "the first plugin's DEL still ran");
    assert!(rig.cached("c1"));
}

#[test]
fn a_corrupt_cache_is_dropped_and_del_proceeds_without_prev_result() {
    let rig = Rig::new();
    let list = rig.list("1.0.0", json!({}));
    rig.cni.add_network_list(&list, &rt("c1")).unwrap();
    rig.take();
    std::fs::write(cache::path(&rig.dir.path().join("cache"), "rec", "c1", "eth0"), "{not json").unwrap();
    rig.cni.del_network_list(&list, &rt("c1")).unwrap();
    let calls = rig.take();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c["config"].get("prevResult").is_none()));
    assert!(!rig.cached("c1"));
}

#[test]
fn check_gets_the_cached_result_and_respects_disable_check() {
    let rig = Rig::new();
    let list = rig.list("1.0.0", json!({}));
    rig.cni.add_network_list(&list, &rt("c1")).unwrap();
    rig.take();
    rig.cni.check_network_list(&list, &rt("c1")).unwrap();
    let calls = rig.take();
    assert_eq!(calls.len(), 2);
    assert!(
        calls
            .iter()
            .all(|c| c["command"] == "CHECK" && c["config"]["prevResult"]["ips"][0]["address"] == "10.1.0.5/24")
    );
    rig.cni.check_network_list(&rig.list("1.0.0", json!({"disableCheck": true})), &rt("c1")).unwrap();
    assert!(rig.take().is_empty());
}

#[test]
fn gc_deletes_stale_attachments_then_sends_gc_with_both_keys() {
    let rig = Rig::new();
    let list = rig.list("1.1.0", json!({}));
    for c in ["c1", "c2"] {
        rig.cni.add_network_list(&list, &rt(c)).unwrap();
    }
    rig.take();
    let valid = vec![GcAttachment { container_id: "c1".into(), ifname: "eth0".into() }];
    rig.cni.gc_network_list(&list, Some(&valid)).unwrap();
    let calls = rig.take();
    let commands: Vec<(&str, &str)> =
        calls.iter().map(|c| (c["command"].as_str().unwrap(), c["containerID"].as_str().unwrap())).collect();
    assert_eq!(commands, [("DEL", "c2"), ("DEL", "c2"), ("GC", ""), ("GC", "")]);
    assert_eq!(calls[0]["args"], "K8S_POD_NAME=c2", "the stale attachment's cached CNI_ARGS");
    assert_eq!(calls[0]["netns"], "/run/netns/c2");
    for gc in &calls[2..] {
        assert_eq!(gc["config"]["cni.dev/valid-attachments"], json!([{"containerID": "c1", "ifname": "eth0"}]));
        assert_eq!(gc["config"]["cni.dev/attachments"], gc["config"]["cni.dev/valid-attachments"]);
    }
    assert!(rig.cached("c1") && !rig.cached("c2"));
}

#[test]
fn gc_before_1_1_0_only_deletes_and_disable_gc_does_nothing() {
    let rig = Rig::new();
    let list = rig.list("1.0.0", json!({}));
    rig.cni.add_network_list(&list, &rt("c1")).unwrap();
    rig.take();
    rig.cni.gc_network_list(&rig.list("1.0.0", json!({"disableGC": "true"})), Some(&[])).unwrap();
    assert!(rig.take().is_empty());
    rig.cni.gc_network_list(&list, Some(&[])).unwrap();
    let calls = rig.take();
    assert_eq!(calls.iter().map(|c| c["command"].as_str().unwrap()).collect::<Vec<_>>(), ["DEL", "DEL"]);
    assert!(!rig.cached("c1"));
}

#[test]
fn status_passes_the_plugins_code_through() {
    let rig = Rig::new();
    rig.cni.status_network_list(&rig.list("1.1.0", json!({}))).unwrap();
    assert_eq!(rig.take().iter().filter(|c| c["command"] == "STATUS").count(), 2);
    rig.cni.status_network_list(&rig.list("1.0.0", json!({}))).unwrap();
    assert!(rig.take().is_empty(), "STATUS is a no-op before 1.1.0");
    let mut list = rig.list("1.1.0", json!({}));
    list.plugins[1].raw.insert("status".into(), json!("unavailable"));
    let e = rig.cni.status_network_list(&list).unwrap_err();
    assert_eq!(e.to_cni().code, 50);
    assert_eq!(e.to_cni().msg, "recorder is unavailable");
}

#[test]
fn version_info_of_a_plugin() {
    let rig = Rig::new();
    let info = rig.cni.version_info("cni-recorder").unwrap();
    assert!(info.supports("1.1.0") && info.supports("0.1.0"));
}
