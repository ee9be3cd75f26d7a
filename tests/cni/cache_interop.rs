//! The result cache against the real Go libcni (Debian's golang-github-appc-cni-dev 1.1.2,
//! driven by `tests/interop/libcni-judge`): files we write are read by libcni, files libcni
//! writes are read by us, and for the same attachment both write the same bytes (libcni 1.1.2
//! predates the `netns` field that 1.3.0 adds, so that one key is set aside in the comparison).

use std::path::{Path, PathBuf};
use std::process::Command;

use multus::cni::cache::{self, Cached};
use multus::cni::{CniConfig, CniResult, NetworkConfigList, RawExec, RuntimeConf};
use serde_json::{Value, json};

use crate::support::test_plugin_dir;

fn judge() -> PathBuf {
    crate::support::go_program("libcni-judge")
}

fn run_judge(args: &[&str]) -> Value {
    let out = Command::new(judge()).args(args).output().unwrap();
    assert!(out.status.success(), "libcni-judge {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cache").join(name)).unwrap()
}

/// A file captured from libcni 1.1.2 (see the fixture) reads back as what it holds.
#[test]
fn reads_a_file_libcni_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("judgenet-ctr-123-eth0");
    std::fs::write(&file, fixture("judgenet-ctr-123-eth0.libcni-1.1.2")).unwrap();
    let Cached::V1(info) = cache::read(&file).unwrap() else { panic!("not a cniCacheV1 document") };
    assert_eq!(
        (info.container_id.as_str(), info.if_name.as_str(), info.network_name.as_str()),
        ("ctr-123", "eth0", "judgenet")
    );
    assert_eq!(info.config, fixture("judgenet.conflist"), "config is the list file's bytes");
    assert_eq!(info.cni_args[1], ["K8S_POD_NAME".to_string(), "web-0".to_string()]);
    assert_eq!(info.capability_args["alpha"], json!({"a": "<x>", "b": 2}));
    let r = CniResult::from_value(info.result.clone().unwrap(), "").unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.1.0.5/24");
    // Re-encoded by us, the document is the same one (numbers compared as values).
    let ours: Value = serde_json::from_slice(&cache::encode(&info).unwrap()).unwrap();
    let theirs: Value = serde_json::from_slice(&fixture("judgenet-ctr-123-eth0.libcni-1.1.2")).unwrap();
    assert_eq!(ours, theirs);
}

struct Case {
    dir: tempfile::TempDir,
    conflist: PathBuf,
    list: NetworkConfigList,
    rt: RuntimeConf,
}

const ARGS: &str = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;IgnoreUnknown=1";

fn case() -> Case {
    let dir = tempfile::tempdir().unwrap();
    let conflist = dir.path().join("net.conflist");
    let record = dir.path().join("record.jsonl");
    let text = format!(
        "{{\n  \"cniVersion\": \"1.0.0\",\n  \"name\": \"judgenet\",\n  \"plugins\": [\n    {{\"type\": \"cni-recorder\", \"recordFile\": {:?}, \"ip\": \"10.1.0.5/24\", \"capabilities\": {{\"portMappings\": true, \"mac\": true}}, \"note\": \"tab\\there <&>\"}}\n  ]\n}}\n",
        record.display().to_string()
    );
    std::fs::write(&conflist, &text).unwrap();
    let list = NetworkConfigList::from_file(&conflist).unwrap();
    let mut rt = RuntimeConf {
        container_id: "ctr-123".into(),
        netns: "/run/netns/judge".into(),
        ifname: "eth0".into(),
        args: multus::cni::skel::parse_cni_args(ARGS),
        ..Default::default()
    };
    for (k, v) in caps().as_object().unwrap() {
        rt.capability_args.insert(k.clone(), v.clone());
    }
    Case { dir, conflist, list, rt }
}

fn caps() -> Value {
    json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}], "mac": "c2:11:22:33:44:55",
           "alpha": {"b": 2, "a": "<x>"}})
}

impl Case {
    fn ours(&self) -> CniConfig<RawExec> {
        CniConfig::new(vec![test_plugin_dir()], self.dir.path().join("ours"), RawExec::default())
    }

    fn judge_rt_args(&self, cmd: &'static str, cache: &str) -> Vec<String> {
        vec![
            cmd.into(),
            test_plugin_dir().display().to_string(),
            self.dir.path().join(cache).display().to_string(),
            self.conflist.display().to_string(),
            self.rt.container_id.clone(),
            self.rt.ifname.clone(),
            self.rt.netns.clone(),
            ARGS.into(),
            caps().to_string(),
        ]
    }

    fn judge(&self, cmd: &'static str, cache: &str) -> Value {
        let args = self.judge_rt_args(cmd, cache);
        run_judge(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn cache_bytes(&self, cache: &str) -> Vec<u8> {
        std::fs::read(cache::path(&self.dir.path().join(cache), "judgenet", "ctr-123", "eth0")).unwrap()
    }

    fn dels(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("record.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|c| c["command"] == "DEL")
            .collect()
    }
}

#[test]
fn we_and_libcni_write_the_same_bytes_and_libcni_reads_ours() {
    let c = case();
    let ours = c.ours().add_network_list(&c.list, &c.rt).unwrap();
    let theirs = c.judge("add", "theirs");
    assert_eq!(ours.to_value("1.0.0").unwrap(), theirs);

    let our_text = String::from_utf8(c.cache_bytes("ours")).unwrap();
    assert!(our_text.contains(r#","netns":"/run/netns/judge","#), "libcni 1.3.0 records the netns: {our_text}");
    let without_netns = our_text.replace(r#","netns":"/run/netns/judge""#, "");
    assert_eq!(without_netns, String::from_utf8(c.cache_bytes("theirs")).unwrap());

    let dir = c.dir.path().join("ours").display().to_string();
    let read = run_judge(&["read-cache", &dir, &c.conflist.display().to_string(), "ctr-123", "eth0"]);
    assert_eq!(read["result"], theirs);
    assert_eq!(read["config"].as_str().unwrap().as_bytes(), std::fs::read(&c.conflist).unwrap());
    assert_eq!(
        read["rt"]["Args"],
        json!([["K8S_POD_NAMESPACE", "default"], ["K8S_POD_NAME", "web-0"], ["IgnoreUnknown", "1"]])
    );
    assert_eq!(read["rt"]["CapabilityArgs"], caps());
}

#[test]
fn libcni_deletes_with_our_cache_and_we_delete_with_theirs() {
    let c = case();
    // Ours wrote, libcni deletes: its DEL hands the plugin our cached result.
    let added = c.ours().add_network_list(&c.list, &c.rt).unwrap();
    c.judge("del", "ours");
    // libcni wrote, we delete.
    c.judge("add", "theirs");
    let mut ours_on_theirs = c.ours();
    ours_on_theirs.cache_dir = c.dir.path().join("theirs");
    ours_on_theirs.del_network_list(&c.list, &c.rt).unwrap();

    let dels = c.dels();
    assert_eq!(dels.len(), 2);
    for d in &dels {
        assert_eq!(d["config"]["prevResult"], added.to_value("1.0.0").unwrap());
    }
    for cache in ["ours", "theirs"] {
        assert!(
            !cache::path(&c.dir.path().join(cache), "judgenet", "ctr-123", "eth0").exists(),
            "{cache} cache removed"
        );
    }
}
