//! The kubelet's view (`cargo xtask bench cri`): pod sandboxes through containerd 1.6's CRI with
//! multus as the node's CNI (thin, thick) against containerd with the bare cluster network, in the
//! same run. Each round starts [`PODS`] sandboxes one after another (`RunPodSandbox`, timed per
//! call), then stops and removes them (`StopPodSandbox` + `RemovePodSandbox`, timed per pod);
//! the three nodes take turns, in rotating order, for [`ROUNDS`] rounds after a warm-up round.
//! Printed per mode: RunPodSandbox p50/p99/mean, pods per second, Stop+Remove p50, and the ratios
//! against bare; for thick, the daemon's resident memory at its peak and after the run. Nothing
//! asserts on time.
//!
//! The pods carry no network annotation: what is measured is multus's own cost on the path
//! every pod takes (the pod lookup, the delegate call, network-status, the event). The API server
//! is the tests' fake (no real kube-apiserver can run here), in the node namespace.
//!
//! The binaries are cargo's release builds unless `MULTUS_BENCH_BIN_DIR` names a directory of
//! them (`cargo xtask bench cri` points it at the shipped static amd64 builds).

#[path = "../tests/support/mod.rs"]
mod support;

// The tests' node fixture; the bench uses only part of it.
#[allow(dead_code)]
#[path = "../tests/cri/cluster.rs"]
mod cluster;

use std::time::{Duration, Instant};

use cluster::{Cluster, Mode};
use serde_json::json;

const PODS: usize = 50;
const WARMUP: usize = 1;
const ROUNDS: usize = 3;

#[derive(Default)]
struct Samples {
    run: Vec<Duration>,
    teardown: Vec<Duration>,
    /// Wall time of each round's RunPodSandbox sequence.
    batches: Vec<Duration>,
}

fn round(c: &Cluster, keep: bool, s: &mut Samples) {
    let cri = c.cri();
    let mut ids = Vec::with_capacity(PODS);
    let batch = Instant::now();
    for i in 0..PODS {
        let t = Instant::now();
        let id = c.run("default", &format!("p{i}")).unwrap_or_else(|e| panic!("RunPodSandbox ({:?}): {e}", c.mode));
        if keep {
            s.run.push(t.elapsed());
        }
        ids.push(id);
    }
    if keep {
        s.batches.push(batch.elapsed());
    }
    for id in ids {
        let t = Instant::now();
        cri.stop_pod_sandbox(&id).unwrap_or_else(|e| panic!("StopPodSandbox ({:?}): {e}", c.mode));
        cri.remove_pod_sandbox(&id).unwrap_or_else(|e| panic!("RemovePodSandbox ({:?}): {e}", c.mode));
        if keep {
            s.teardown.push(t.elapsed());
        }
    }
    assert!(c.ipam_ips("cbr").is_empty(), "{:?} leaked IPs: {:?}", c.mode, c.ipam_ips("cbr"));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn quantile(v: &[Duration], q: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    // Nearest rank.
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn mean(v: &[Duration]) -> Duration {
    v.iter().sum::<Duration>() / v.len() as u32
}

fn pods_per_second(s: &Samples) -> f64 {
    let total: Duration = s.batches.iter().sum();
    (s.batches.len() * PODS) as f64 / total.as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let modes = [Mode::Bare, Mode::Thin, Mode::Thick];
    println!(
        "cri: {PODS} pods per round, {ROUNDS} rounds (+{WARMUP} warm-up), binaries from {}",
        cluster::image_bin_dir().display()
    );
    let clusters: Vec<Cluster> = modes.iter().map(|m| Cluster::setup(*m, None, "verbose")).collect();
    for c in &clusters {
        for i in 0..PODS {
            c.pod("default", &format!("p{i}"), json!({}));
        }
    }
    let mut samples: Vec<Samples> = modes.iter().map(|_| Samples::default()).collect();
    for r in 0..WARMUP + ROUNDS {
        for k in 0..modes.len() {
            let i = (r + k) % modes.len();
            round(&clusters[i], r >= WARMUP, &mut samples[i]);
        }
    }

    println!(
        "{:<6} {:>14} {:>14} {:>14} {:>10} {:>18}",
        "mode", "run p50 ms", "run p99 ms", "run mean ms", "pods/s", "stop+remove p50 ms"
    );
    for (m, s) in modes.iter().zip(&samples) {
        println!(
            "{:<6} {:>14.1} {:>14.1} {:>14.1} {:>10.2} {:>18.1}",
            format!("{m:?}").to_lowercase(),
            ms(quantile(&s.run, 0.5)),
            ms(quantile(&s.run, 0.99)),
            ms(mean(&s.run)),
            pods_per_second(s),
            ms(quantile(&s.teardown, 0.5))
        );
    }
    let bare = &samples[0];
    for (m, s) in modes.iter().zip(&samples).skip(1) {
        let name = format!("{m:?}").to_lowercase();
        println!(
            "cri_{name}_vs_bare: RunPodSandbox p50 {:.3}, p99 {:.3}, pods/s {:.3} (bare/ {name}: {:.3}), multus's own p50 cost {:+.1} ms",
            ms(quantile(&s.run, 0.5)) / ms(quantile(&bare.run, 0.5)),
            ms(quantile(&s.run, 0.99)) / ms(quantile(&bare.run, 0.99)),
            pods_per_second(s) / pods_per_second(bare),
            pods_per_second(bare) / pods_per_second(s),
            ms(quantile(&s.run, 0.5)) - ms(quantile(&bare.run, 0.5)),
        );
    }
    if let Some(d) = clusters[2].daemon.as_ref() {
        println!(
            "thick daemon: peak RSS (VmHWM) {} KiB, RSS after the run {} KiB, CPU {:.2} s over the run",
            d.status_kib("VmHWM"),
            d.status_kib("VmRSS"),
            d.cpu_time().as_secs_f64()
        );
    }
}
