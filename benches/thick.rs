//! Thick-mode benchmarks (`cargo xtask bench thick`). The baseline of each is the thin `multus`
//! binary doing the same work, measured in the same run, interleaved with the measured side;
//! medians, means and their ratio are printed. Nothing asserts on time.
//!
//! `shim_vs_thin`: `multus-shim` → `multus-daemon` with one bridge delegate against the thin
//! `multus` binary with the same delegate, both invoked as a runtime does, ADD then DEL, in
//! paired rounds that alternate which side goes first.
//! `burst`: two hundred pods ADDed at once, then DELed at once, through the shim and through the
//! thin plugin, in alternating rounds: pods per second of each, their ratio, and the daemon's
//! resident memory when idle (fresh, and after the bursts) and at its peak (`VmHWM`).
//! `idle`: the daemon's CPU-seconds per second while nothing happens, in the default deployment's
//! auto mode (the config manager watching the directory it writes into).
//! `kube`: the Kubernetes path. The bare primary (the bridge plugin called directly), the thin
//! `multus` with a kubeconfig and the shim + daemon with the same API server (the fake of
//! `support::apiserver`, in the node namespace; no real kube-apiserver runs here), a pod with the
//! cluster network only, ADD then DEL, in rotating rounds: each path's mean and multus's own
//! overhead over the bare plugin in ms (pod lookup, network-status write, event). Then the DEL
//! through shim and daemon of pods deleted from the API server after their ADD.
//!
//! The binaries are cargo's release builds unless `MULTUS_BENCH_BIN` (thin `multus`),
//! `MULTUS_BENCH_SHIM` and `MULTUS_BENCH_DAEMON` point elsewhere (`cargo xtask bench thick` points
//! them at the shipped static builds). The daemon runs with its default concurrency limit.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use multus::thick::daemon_config::DEFAULT_MAX_CONCURRENT_REQUESTS;
use serde_json::{Value, json};
use support::apiserver::FakeApiServer;
use support::thick::{
    DAEMON_BIN, Daemon, Outcome, auto_mode_config, bridge, daemon_config, finish, rss_by_kind_kib, shim_bin, shim_conf,
    spawn_cni,
};
use support::{CNI_BIN, Netns, Node};

const WARMUP: usize = 2;
/// Paired rounds of `shim_vs_thin` and `kube`; `MULTUS_BENCH_ROUNDS` overrides (41 rounds cannot tell
/// a ratio of 1.00 from 1.04 when single rounds spread by ±15 %).
const ROUNDS: usize = 41;

fn rounds() -> usize {
    std::env::var("MULTUS_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(ROUNDS)
}
/// The kernel finishes a deleted veth's teardown asynchronously (RCU grace periods); a pause
/// keeps one side's deferred work out of the other side's measurement.
const SETTLE: Duration = Duration::from_millis(100);

const PODS: usize = 200;
const BURST_WARMUP: usize = 1;
const BURST_ROUNDS: usize = 5;
/// Two hundred veths take longer to go away than one.
const BURST_SETTLE: Duration = Duration::from_secs(1);

/// The binaries under test.
struct Bins {
    thin: PathBuf,
    shim: PathBuf,
    daemon: PathBuf,
}

impl Bins {
    fn from_env() -> Bins {
        let pick = |var: &str, cargo: &str| PathBuf::from(std::env::var(var).unwrap_or_else(|_| cargo.to_string()));
        let b = Bins {
            thin: pick("MULTUS_BENCH_BIN", env!("CARGO_BIN_EXE_multus")),
            shim: std::env::var("MULTUS_BENCH_SHIM").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(shim_bin())),
            daemon: pick("MULTUS_BENCH_DAEMON", DAEMON_BIN),
        };
        println!(
            "  (multus: {}, multus-shim: {}, multus-daemon: {})",
            b.thin.display(),
            b.shim.display(),
            b.daemon.display()
        );
        b
    }
}

/// A daemon in `node` with the test harness's config, quiet (as the thin side is).
fn start_daemon(node: &Node, bins: &Bins) -> Daemon {
    Daemon::start_bin(node, &daemon_config(node, json!({"logLevel": "error"})), &bins.daemon)
}

/// The multus configs of both sides: the same keys and one bridge delegate; only `type` differs
/// (the thin plugin ignores `daemonSocketDir`).
fn confs(node: &Node) -> (Value, Value) {
    let delegate = bridge(node, "cbr", "tbr0", "10.99.0.0/24");
    let shim = shim_conf(node, "1.0.0", json!({"binDir": CNI_BIN, "delegates": [delegate]}));
    let mut thin = shim.clone();
    thin["type"] = json!("multus");
    (shim, thin)
}

/// Plugin processes started together; those not yet collected are killed and reaped on drop,
/// so a panic mid-burst leaves no process behind.
struct Calls(VecDeque<Child>);

impl Calls {
    /// Waits for every call in start order; each must have succeeded.
    fn finish(mut self, what: &str) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(self.0.len());
        while let Some(child) = self.0.pop_front() {
            let o = finish(child);
            assert_eq!(o.code, 0, "{what}: {o:?}");
            out.push(o);
        }
        out
    }
}

impl Drop for Calls {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One call of `bin` as a runtime makes it, in the calling thread's namespace; it must succeed.
fn call(bin: &Path, node: &Node, cmd: &str, conf: &Value, container: &str) {
    Calls(VecDeque::from([spawn_cni(bin, node, cmd, conf, container, "eth0", &[])])).finish(cmd);
}

/// One ADD then DEL of `container` after a settling pause; the time of the two calls.
fn timed_add_del(bin: &Path, node: &Node, conf: &Value, container: &str) -> Duration {
    std::thread::sleep(SETTLE);
    let t = Instant::now();
    call(bin, node, "ADD", conf, container);
    call(bin, node, "DEL", conf, container);
    t.elapsed()
}

/// `cmd` for every pod at once (container `<prefix><i>` in `pods[i]`); returns when all are done.
fn burst(bin: &Path, node: &Node, cmd: &str, conf: &Value, prefix: &str, pods: &[Netns]) -> Duration {
    let start = Instant::now();
    let mut calls = Calls(VecDeque::with_capacity(pods.len()));
    for (i, p) in pods.iter().enumerate() {
        let netns = p.path();
        calls.0.push_back(spawn_cni(bin, node, cmd, conf, &format!("{prefix}{i}"), "eth0", &[("CNI_NETNS", &netns)]));
    }
    let outcomes = calls.finish(&format!("{} {cmd}", bin.display()));
    let elapsed = start.elapsed();
    if cmd == "ADD" {
        for (i, o) in outcomes.iter().enumerate() {
            assert!(o.json()["ips"][0]["address"].is_string(), "pod {i} got no address: {o:?}");
        }
    }
    elapsed
}

fn secs(d: &Duration) -> f64 {
    d.as_secs_f64()
}

fn mean(v: &[Duration]) -> f64 {
    v.iter().map(secs).sum::<f64>() / v.len() as f64
}

fn median(v: &[Duration]) -> f64 {
    let mut s: Vec<f64> = v.iter().map(secs).collect();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// Sorted per-round ratios `measured / baseline`.
fn ratios(measured: &[Duration], baseline: &[Duration]) -> Vec<f64> {
    let mut r: Vec<f64> = measured.iter().zip(baseline).map(|(m, b)| secs(m) / secs(b)).collect();
    r.sort_by(f64::total_cmp);
    r
}

fn quantile(sorted: &[f64], f: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * f).round() as usize]
}

/// Runs `a` and `b` once per round, alternating which goes first so drift hits both equally;
/// returns their durations after the warmup rounds.
fn alternate<T>(warmup: usize, rounds: usize, mut a: impl FnMut() -> T, mut b: impl FnMut() -> T) -> (Vec<T>, Vec<T>) {
    let (mut va, mut vb) = (Vec::new(), Vec::new());
    for i in 0..warmup + rounds {
        let (x, y) = if i % 2 == 0 {
            let x = a();
            (x, b())
        } else {
            let y = b();
            (a(), y)
        };
        if i >= warmup {
            va.push(x);
            vb.push(y);
        }
    }
    (va, vb)
}

/// One pod's ADD then DEL through the shim and daemon against the thin plugin.
fn shim_vs_thin() {
    let bins = Bins::from_env();
    let node = Node::new();
    let daemon = start_daemon(&node, &bins);
    let (shim, thin) = confs(&node);
    let add_del = |bin: &Path, conf: &Value, container: &str| timed_add_del(bin, &node, conf, container);
    let (measured, baseline) = node.node.enter(|| {
        alternate(WARMUP, rounds(), || add_del(&bins.shim, &shim, "shim"), || add_del(&bins.thin, &thin, "thin"))
    });
    drop(daemon);

    // The headline is the ratio of the means over all rounds (what a node pays in total); the
    // quartiles of the per-round ratios show how noisy a single ADD+DEL is.
    let r = ratios(&measured, &baseline);
    let (mm, bm) = (mean(&measured), mean(&baseline));
    println!(
        "bench shim_vs_thin (multus-shim + multus-daemon vs thin multus, 1 bridge delegate, CNI 1.0.0), {} paired rounds:",
        rounds()
    );
    println!("  thin multus (baseline)  {:>8.2} ms mean {:>8.2} ms median", bm * 1e3, median(&baseline) * 1e3);
    println!("  shim + daemon           {:>8.2} ms mean {:>8.2} ms median", mm * 1e3, median(&measured) * 1e3);
    println!("  ratio measured/baseline {:>8.3}   of the means", mm / bm);
    println!(
        "  per-round ratios        {:>8.3}   median (quartiles {:.3}..{:.3})",
        quantile(&r, 0.5),
        quantile(&r, 0.25),
        quantile(&r, 0.75)
    );
}

/// The time one side takes to ADD every pod at once and then to DEL every pod at once.
struct BurstTimes {
    add: Duration,
    del: Duration,
}

/// Two hundred pods at once through the shim and daemon against the same through the thin plugin;
/// the daemon's memory.
fn burst_pods() {
    let bins = Bins::from_env();
    let node = Node::new();
    let pods: Vec<Netns> = (0..PODS).map(|_| Netns::new("q")).collect();
    let daemon = start_daemon(&node, &bins);
    let idle_kib = daemon.status_kib("VmRSS");
    let idle_kinds = daemon.rss_by_kind_kib();
    let (shim, thin) = confs(&node);
    // The daemon's memory by holder at its largest sample (every 20 ms) during the bursts: what
    // the peak is made of, beside the kernel's own high-water mark.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (pid, sampling) = (daemon.pid(), sampling.clone());
        std::thread::spawn(move || {
            let mut largest: Vec<(&'static str, u64)> = Vec::new();
            let total = |v: &[(&str, u64)]| v.iter().map(|(_, k)| k).sum::<u64>();
            while sampling.load(Ordering::Relaxed) {
                match rss_by_kind_kib(pid) {
                    Ok(now) if total(&now) > total(&largest) => largest = now,
                    Ok(_) => {}
                    Err(_) => break,
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            largest
        })
    };
    let side = |bin: &Path, conf: &Value, prefix: &str| {
        std::thread::sleep(BURST_SETTLE);
        let add = burst(bin, &node, "ADD", conf, prefix, &pods);
        std::thread::sleep(BURST_SETTLE);
        let del = burst(bin, &node, "DEL", conf, prefix, &pods);
        BurstTimes { add, del }
    };
    let (measured, baseline) = node.node.enter(|| {
        alternate(BURST_WARMUP, BURST_ROUNDS, || side(&bins.shim, &shim, "shim"), || side(&bins.thin, &thin, "thin"))
    });
    sampling.store(false, Ordering::Relaxed);
    let peak_kinds = sampler.join().expect("the memory sampler");
    std::thread::sleep(BURST_SETTLE);
    let (after_kib, peak_kib) = (daemon.status_kib("VmRSS"), daemon.status_kib("VmHWM"));
    // What a node keeps paying once the burst is over (goal: 10 MB a minute later).
    std::thread::sleep(Duration::from_secs(60) - BURST_SETTLE);
    let later_kib = daemon.status_kib("VmRSS");
    let later_kinds = daemon.rss_by_kind_kib();
    drop(daemon);
    drop(pods);

    let times = |v: &[BurstTimes], f: fn(&BurstTimes) -> Duration| v.iter().map(f).collect::<Vec<_>>();
    let (m_add, m_del) = (times(&measured, |t| t.add), times(&measured, |t| t.del));
    let (b_add, b_del) = (times(&baseline, |t| t.add), times(&baseline, |t| t.del));
    let pods = PODS as f64;
    let rate = |v: &[Duration]| pods / mean(v);
    let (ra, rd) = (ratios(&b_add, &m_add), ratios(&b_del, &m_del));
    println!(
        "bench burst ({PODS} pods ADDed at once, then DELed at once; 1 bridge delegate; daemon at its default \
         maxConcurrentRequests {DEFAULT_MAX_CONCURRENT_REQUESTS}), {BURST_ROUNDS} alternating rounds:"
    );
    println!("  {:<23} {:>10} {:>10}   (pods/s from the mean burst time)", "", "ADD pods/s", "DEL pods/s");
    println!("  {:<23} {:>10.1} {:>10.1}", "thin multus (baseline)", rate(&b_add), rate(&b_del));
    println!("  {:<23} {:>10.1} {:>10.1}", "shim + daemon", rate(&m_add), rate(&m_del));
    println!(
        "  {:<23} {:>10.3} {:>10.3}   of the pods/s",
        "ratio measured/baseline",
        rate(&m_add) / rate(&b_add),
        rate(&m_del) / rate(&b_del)
    );
    println!(
        "  {:<23} {:>10.3} {:>10.3}   median (range {:.3}..{:.3} ADD, {:.3}..{:.3} DEL)",
        "per-round ratios",
        quantile(&ra, 0.5),
        quantile(&rd, 0.5),
        ra[0],
        ra[ra.len() - 1],
        rd[0],
        rd[rd.len() - 1]
    );
    // In MB (10^6 bytes), the unit of the goals.
    let mb = |kib: u64| kib as f64 * 1024.0 / 1e6;
    println!(
        "  daemon RSS              {:>8.1} MB idle (fresh) {:>8.1} MB 1 s after the bursts {:>8.1} MB 60 s after \
         {:>8.1} MB peak (VmHWM; goals 15 MB peak, 10 MB 60 s after)",
        mb(idle_kib),
        mb(after_kib),
        mb(later_kib),
        mb(peak_kib)
    );
    let by = |kinds: &[(&str, u64)]| kinds.iter().map(|(k, kib)| format!("{k} {:.1}", mb(*kib))).collect::<Vec<_>>();
    println!("  daemon RSS by holder    fresh: {} MB", by(&idle_kinds).join(", "));
    println!("  {:<23} largest sample during the bursts: {} MB", "", by(&peak_kinds).join(", "));
    println!("  {:<23} 60 s after: {} MB", "", by(&later_kinds).join(", "));
}

/// The daemon's CPU use while idle in the default deployment's layout: auto mode with
/// `cniConfigDir` == `multusAutoconfigDir`, 00-multus.conf generated, no requests. The window is
/// `MULTUS_BENCH_IDLE_SECS` (default 60 s); the goal is < 0.01 CPU-seconds per second.
fn idle_cpu() {
    let bins = Bins::from_env();
    let node = Node::new();
    let (config, generated) = auto_mode_config(&node, json!({"logLevel": "error"}));
    let daemon = Daemon::start_bin(&node, &config, &bins.daemon);
    let start = Instant::now();
    while !generated.exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "00-multus.conf never appeared: {}", daemon.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(BURST_SETTLE);
    let window =
        Duration::from_secs(std::env::var("MULTUS_BENCH_IDLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60));
    let (cpu0, t0) = (daemon.cpu_time(), Instant::now());
    std::thread::sleep(window);
    let (cpu, wall) = (daemon.cpu_time() - cpu0, t0.elapsed());
    let rss = daemon.status_kib("VmRSS") as f64 / 1024.0;
    println!(
        "bench idle (daemon in auto mode, cniConfigDir == multusAutoconfigDir, no requests, {:.0} s):",
        secs(&wall)
    );
    println!(
        "  daemon CPU              {:>8.3} s in {:.0} s = {:.5} CPU-s/s (goal < 0.01)   RSS {rss:.1} MiB",
        secs(&cpu),
        secs(&wall),
        secs(&cpu) / secs(&wall)
    );
}

/// A pod object of node1 in `default` (what the kubelet would have created before the sandbox).
fn api_pod(api: &FakeApiServer, name: &str) {
    api.create_pod(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "registry.example/c:1"}]}}));
}

fn kube_path() {
    let bins = Bins::from_env();
    let node = Node::new();
    let api = node.node.enter(FakeApiServer::start);
    let kubeconfig = api.write_kubeconfig(node.dir.path());
    let primary = bridge(&node, "cbr", "tbr0", "10.99.0.0/24");
    let conflist = node.path("net.d-src/10-cbr.conflist");
    support::thick::write(&conflist, &json!({"cniVersion": "1.0.0", "name": "cbr", "plugins": [primary]}));
    for pod in ["bare", "thin", "shim"] {
        api_pod(&api, pod);
    }
    let daemon = Daemon::start_bin(
        &node,
        &daemon_config(&node, json!({"logLevel": "error", "kubeconfig": kubeconfig})),
        &bins.daemon,
    );
    let shim = shim_conf(&node, "1.0.0", json!({"clusterNetwork": conflist, "confDir": node.path("multus.d")}));
    let mut thin = shim.clone();
    thin["type"] = json!("multus");
    thin["kubeconfig"] = json!(kubeconfig);
    let bare_plugin = PathBuf::from(CNI_BIN).join("bridge");
    let add_del = |bin: &Path, conf: &Value, pod: &str| timed_add_del(bin, &node, conf, pod);
    let (mut bare, mut thin_t, mut shim_t) = (Vec::new(), Vec::new(), Vec::new());
    node.node.enter(|| {
        for round in 0..WARMUP + rounds() {
            // Each side goes first, second and third equally often.
            for k in 0..3 {
                let (v, t) = match (round + k) % 3 {
                    0 => (&mut bare, add_del(&bare_plugin, &primary, "bare")),
                    1 => (&mut thin_t, add_del(&bins.thin, &thin, "thin")),
                    _ => (&mut shim_t, add_del(&bins.shim, &shim, "shim")),
                };
                if round >= WARMUP {
                    v.push(t);
                }
            }
        }
    });
    let (b, t, s) = (mean(&bare), mean(&thin_t), mean(&shim_t));
    println!(
        "bench kube (pod with the cluster network, API server in the node namespace, CNI 1.0.0), {} rounds:",
        rounds()
    );
    println!("  bare bridge (baseline)  {:>8.2} ms mean {:>8.2} ms median", b * 1e3, median(&bare) * 1e3);
    println!(
        "  thin multus + kube      {:>8.2} ms mean {:>8.2} ms median   overhead {:>6.2} ms   ratio {:.3}",
        t * 1e3,
        median(&thin_t) * 1e3,
        (t - b) * 1e3,
        t / b
    );
    println!(
        "  shim + daemon + kube    {:>8.2} ms mean {:>8.2} ms median   overhead {:>6.2} ms   ratio {:.3}",
        s * 1e3,
        median(&shim_t) * 1e3,
        (s - b) * 1e3,
        s / b
    );
    println!("  thick/thin              {:>8.3}   of the means (goal <= 1.0)", s / t);

    // DEL of pods deleted from the API server after their ADD (force-deleted, evicted).
    let mut dels = Vec::new();
    node.node.enter(|| {
        for i in 0..WARMUP + rounds() {
            let pod = format!("gone{i}");
            api_pod(&api, &pod);
            std::thread::sleep(SETTLE);
            call(&bins.shim, &node, "ADD", &shim, &pod);
            api.delete_pod("default", &pod);
            // The watch delivers the deletion within this pause; a DEL right after it may still
            // find the pod cached, which is also what a node sees.
            std::thread::sleep(SETTLE);
            let t = Instant::now();
            call(&bins.shim, &node, "DEL", &shim, &pod);
            if i >= WARMUP {
                dels.push(t.elapsed());
            }
        }
    });
    drop(daemon);
    let mut sorted: Vec<f64> = dels.iter().map(secs).collect();
    sorted.sort_by(f64::total_cmp);
    println!(
        "  DEL of a deleted pod    {:>8.2} ms mean {:>8.2} ms median {:>8.2} ms max   (shim + daemon; goal < 50 ms)",
        mean(&dels) * 1e3,
        median(&dels) * 1e3,
        sorted.last().copied().unwrap_or_default() * 1e3
    );
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let benches: [(&str, fn()); 4] =
        [("shim_vs_thin", shim_vs_thin), ("burst", burst_pods), ("idle", idle_cpu), ("kube", kube_path)];
    for (name, f) in benches {
        if filter.as_deref().is_none_or(|flt| name.contains(flt)) {
            f();
        }
    }
}
