//! CNI core benchmarks (`cargo xtask bench`). Each benchmark measures its baseline in the same
//! run, interleaved with the measured side, and prints medians and their ratio. Nothing asserts
//! on time.
//!
//! `conflist_add_del`: bridge → tuning → portmap (CNI 1.0.0) ADD then DEL through
//! `CniConfig::{add,del}_network_list`, against invoking the same three plugins by hand with
//! the same stdin a runtime would build (prevResult, runtimeConfig), in the same namespaces.
//! `noop_chain_add_del`: the same with three `passthru`s, isolating the library's own cost.
//! `thin_multus_vs_bridge`: the `multus` binary with one bridge delegate against bare bridge.
//! `thin_multus_vs_passthru`: the same with a no-op delegate, isolating multus's own cost.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use multus::cni::{CniConfig, NetworkConfigList, RawExec, RuntimeConf};
use serde_json::{Value, json};
use support::{CNI_BIN, Node};

const WARMUP: usize = 2;
/// Paired rounds per benchmark; `MULTUS_BENCH_ROUNDS` overrides. One bridge ADD+DEL varies by
/// tens of percent from round to round (the kernel tears veths down asynchronously), so a
/// ratio needs a few hundred rounds before its 95% interval is narrower than a few percent.
const ROUNDS: usize = 201;
const SETTLE: Duration = Duration::from_millis(100);

fn chain(node: &Node) -> Value {
    json!({"cniVersion": "1.0.0", "name": "bench", "plugins": [
        {"type": "bridge", "bridge": "bbr0", "isGateway": true, "ipMasq": false,
         "ipam": {"type": "host-local", "dataDir": node.path("ipam"), "ranges": [[{"subnet": "10.93.0.0/24"}]]}},
        {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1"}},
        {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
    ]})
}

fn port_mappings() -> Value {
    json!([{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}])
}

/// The baseline: exactly what a shell runtime does, with no library in between.
fn by_hand(node: &Node, bin_dir: &str, doc: &Value, container: &str) {
    let plugins = doc["plugins"].as_array().unwrap();
    let invoke = |cmd: &str, plugin: &Value, prev: Option<&Value>| -> Vec<u8> {
        let mut conf = plugin.clone();
        conf["name"] = doc["name"].clone();
        conf["cniVersion"] = doc["cniVersion"].clone();
        if let Some(p) = prev {
            conf["prevResult"] = p.clone();
        }
        if plugin["capabilities"]["portMappings"] == true {
            conf["runtimeConfig"] = json!({"portMappings": port_mappings()});
        }
        let mut child = Command::new(format!("{bin_dir}/{}", plugin["type"].as_str().unwrap()))
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", container)
            .env("CNI_NETNS", node.pod.path())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", bin_dir)
            .env("CNI_ARGS", "")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&serde_json::to_vec(&conf).unwrap()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{cmd} {}: {}", plugin["type"], String::from_utf8_lossy(&out.stdout));
        out.stdout
    };
    let mut prev: Option<Value> = None;
    for p in plugins {
        prev = Some(serde_json::from_slice(&invoke("ADD", p, prev.as_ref())).unwrap());
    }
    for p in plugins.iter().rev() {
        invoke("DEL", p, prev.as_ref());
    }
}

fn through_library(cni: &CniConfig<RawExec>, list: &NetworkConfigList, rt: &RuntimeConf) {
    cni.add_network_list(list, rt).unwrap();
    cni.del_network_list(list, rt).unwrap();
}

fn conflist_add_del() {
    let node = Node::new();
    let doc = chain(&node);
    paired("conflist_add_del (bridge+tuning+portmap, CNI 1.0.0)", &node, CNI_BIN, &doc, 1.05);
}

/// Three plugins that return at once: what is left is the runtime's own cost per chain.
fn noop_chain_add_del() {
    let node = Node::new();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_passthru")).parent().unwrap().display().to_string();
    let doc = json!({"cniVersion": "1.0.0", "name": "noop", "plugins": [
        {"type": "passthru"}, {"type": "passthru"}, {"type": "passthru", "capabilities": {"portMappings": true}}]});
    paired("noop_chain_add_del (3x passthru, CNI 1.0.0)", &node, &bin, &doc, f64::NAN);
}

fn paired(title: &str, node: &Node, bin_dir: &str, doc: &Value, goal: f64) {
    let list = NetworkConfigList::from_value(doc.clone()).unwrap();
    let cni = CniConfig::new(vec![bin_dir.into()], node.path("cache"), RawExec::default());
    let mut rt =
        RuntimeConf { container_id: "lib".into(), netns: node.pod.path(), ifname: "eth0".into(), ..Default::default() };
    rt.capability_args.insert("portMappings".into(), port_mappings());
    compare(title, node, bin_dir, doc, goal, "multus::cni library", || through_library(&cni, &list, &rt));
}

/// The thin `multus` binary with one bridge delegate against the bare bridge plugin, both
/// invoked as a runtime does (ADD then DEL).
fn thin_multus_vs_bridge() {
    let node = Node::new();
    let bridge = chain(&node)["plugins"][0].clone();
    let title = "thin_multus_vs_bridge (multus + 1 bridge delegate vs bare bridge, CNI 1.0.0)";
    thin_multus(title, &node, CNI_BIN, bridge, 1.10);
}

/// The same with a delegate that does nothing: what is left is multus's own cost per ADD+DEL
/// (one more process, the config, the caches), free of the bridge's round-to-round noise.
fn thin_multus_vs_passthru() {
    let node = Node::new();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_passthru")).parent().unwrap().display().to_string();
    let title = "thin_multus_vs_passthru (multus + 1 passthru delegate vs bare passthru, CNI 1.0.0)";
    thin_multus(title, &node, &bin, json!({"type": "passthru"}), f64::NAN);
}

fn thin_multus(title: &str, node: &Node, bin_dir: &str, mut delegate: Value, goal: f64) {
    delegate["cniVersion"] = json!("1.0.0");
    delegate["name"] = json!("bench");
    let conf = json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
        "cniDir": node.path("multus"), "delegates": [delegate.clone()]});
    let doc = json!({"cniVersion": "1.0.0", "name": "bench", "plugins": [delegate]});
    // `cargo xtask bench cni` points this at the shipped (static) build.
    let bin = std::env::var("MULTUS_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_multus").to_string());
    println!("  (multus binary: {bin})");
    let multus = |cmd: &str| {
        let mut child = Command::new(&bin)
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", "thin")
            .env("CNI_NETNS", node.pod.path())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", bin_dir)
            .env("CNI_ARGS", "IgnoreUnknown=1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "multus {cmd}: {}", String::from_utf8_lossy(&out.stdout));
    };
    compare(title, node, bin_dir, &doc, goal, "multus binary", || {
        multus("ADD");
        multus("DEL");
    });
}

/// Paired rounds of `measured` against the same plugins invoked by hand.
fn compare(title: &str, node: &Node, bin_dir: &str, doc: &Value, goal: f64, label: &str, measured: impl Fn() + Sync) {
    let rounds = std::env::var("MULTUS_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(ROUNDS);
    let (mut lib, mut hand) = (Vec::new(), Vec::new());
    node.node.enter(|| {
        for i in 0..WARMUP + rounds {
            // Alternate which side goes first so drift hits both equally.
            // The kernel finishes a deleted veth's teardown asynchronously (RCU grace periods);
            // a pause keeps one side's deferred work out of the other side's measurement.
            let run_lib = || {
                std::thread::sleep(SETTLE);
                let t = Instant::now();
                measured();
                t.elapsed()
            };
            let run_hand = || {
                std::thread::sleep(SETTLE);
                let t = Instant::now();
                by_hand(node, bin_dir, doc, "hand");
                t.elapsed()
            };
            let (l, h) = if i % 2 == 0 {
                let l = run_lib();
                (l, run_hand())
            } else {
                let h = run_hand();
                (run_lib(), h)
            };
            if i >= WARMUP {
                lib.push(l);
                hand.push(h);
            }
        }
    });
    let s = Summary::new(&lib, &hand);
    println!("bench {title}, {rounds} paired rounds:");
    println!("  by hand (baseline)      {:>8.2} ms mean {:>8.2} ms median", s.hand_mean * 1e3, s.hand_median * 1e3);
    println!("  {label:<23} {:>8.2} ms mean {:>8.2} ms median", s.mean * 1e3, s.median * 1e3);
    let goal = if goal.is_nan() { String::new() } else { format!(" (goal < {goal})") };
    println!(
        "  ratio measured/by-hand  {:>8.3}   of the means, 95% interval {:.3}..{:.3}{goal}",
        s.ratio, s.low, s.high
    );
    println!("  per-round ratios        {:>8.3}   median (quartiles {:.3}..{:.3})", s.q[1], s.q[0], s.q[2]);
}

/// What a comparison reports. The headline is the ratio of the means (what a node pays in
/// total); its interval comes from the paired differences (each round runs both sides back to
/// back, so drift cancels), and the quartiles of the per-round ratios show how noisy a single
/// run is.
#[derive(Debug)]
struct Summary {
    mean: f64,
    median: f64,
    hand_mean: f64,
    hand_median: f64,
    ratio: f64,
    low: f64,
    high: f64,
    q: [f64; 3],
}

impl Summary {
    fn new(measured: &[Duration], hand: &[Duration]) -> Summary {
        let secs = |v: &[Duration]| v.iter().map(Duration::as_secs_f64).collect::<Vec<_>>();
        let (m, h) = (secs(measured), secs(hand));
        let n = m.len() as f64;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let diffs: Vec<f64> = m.iter().zip(&h).map(|(a, b)| a - b).collect();
        let d = mean(&diffs);
        let sd = (diffs.iter().map(|x| (x - d).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
        let half = 1.96 * sd / n.sqrt();
        let hm = mean(&h);
        let mut ratios: Vec<f64> = m.iter().zip(&h).map(|(a, b)| a / b).collect();
        ratios.sort_by(f64::total_cmp);
        let q = |f: f64| ratios[((ratios.len() - 1) as f64 * f).round() as usize];
        Summary {
            mean: mean(&m),
            median: median(&m),
            hand_mean: hm,
            hand_median: median(&h),
            ratio: 1.0 + d / hm,
            low: 1.0 + (d - half) / hm,
            high: 1.0 + (d + half) / hm,
            q: [q(0.25), q(0.5), q(0.75)],
        }
    }
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let benches: [(&str, fn()); 4] = [
        ("conflist_add_del", conflist_add_del),
        ("noop_chain_add_del", noop_chain_add_del),
        ("thin_multus_vs_bridge", thin_multus_vs_bridge),
        ("thin_multus_vs_passthru", thin_multus_vs_passthru),
    ];
    for (name, f) in benches {
        if filter.as_deref().is_none_or(|flt| name.contains(flt)) {
            f();
        }
    }
}
