//! The daemon's Prometheus metrics: upstream's request counter
//! `multus_server_request_total{code,handler,method}` (labels as promhttp fills them: the endpoint
//! or `NotFound`, the status code, the lower-case method) and the process series of Go's process
//! collector (`process_cpu_seconds_total`, fractional as Go's, `process_open_fds`,
//! `process_max_fds`, `process_virtual_memory_bytes`, `process_resident_memory_bytes`,
//! `process_start_time_seconds`, `process_threads`), the series upstream's Go registry exports and
//! dashboards are built on. Rendered here in the text exposition format 0.0.4 (families in name
//! order, samples in label order, HELP and TYPE as Go writes them; a family without samples is left
//! out): one counter and seven readings of `/proc/self` did not pay for the `prometheus` crate, whose
//! procfs/rustix tree cost every target ~10 CPU-seconds of compile. The method label takes the
//! standard methods only (others are `unknown`, as promhttp does), so requests cannot grow the
//! series without bound.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use super::api::{CNI_ENDPOINT, DELEGATE_ENDPOINT, HEALTH_ENDPOINT};

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The request counter: (code, handler, method) → count; every label comes from a closed set.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(u16, &'static str, &'static str), u64>>,
}

/// The `handler` label of a request path (upstream curries it per registered route).
pub fn handler_label(path: &str) -> &'static str {
    match path {
        CNI_ENDPOINT => CNI_ENDPOINT,
        DELEGATE_ENDPOINT => DELEGATE_ENDPOINT,
        HEALTH_ENDPOINT => HEALTH_ENDPOINT,
        _ => "NotFound",
    }
}

/// The `method` label: a standard method in lower case, anything else `unknown`.
fn method_label(method: &str) -> &'static str {
    const STANDARD: [&str; 9] = ["get", "head", "post", "put", "delete", "connect", "options", "trace", "patch"];
    STANDARD.iter().copied().find(|m| m.eq_ignore_ascii_case(method)).unwrap_or("unknown")
}

impl Metrics {
    pub fn record(&self, handler: &'static str, code: u16, method: &str) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *requests.entry((code, handler, method_label(method))).or_default() += 1;
    }

    /// The exposition text of every metric.
    pub fn render(&self) -> String {
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone();
        render(&requests, &ProcessStats::read())
    }
}

/// What the process series report; `None` where `/proc` could not tell (that series is left out).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub resident_bytes: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub threads: Option<u64>,
}

impl ProcessStats {
    /// Reads `/proc/self/stat`, `/proc/self/statm`, `/proc/stat` (boot time), `/proc/self/fd` and
    /// RLIMIT_NOFILE.
    pub fn read() -> ProcessStats {
        // SAFETY: sysconf reads a configuration value; no memory is passed.
        let (tck, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<u64>().ok()));
        let mut s = from_stat(&stat, tck.max(1) as f64, boot);
        // The sizes come from statm: the same kernel counters as stat's vsize and rss, and the one
        // file qemu-user passes through (its /proc/self/stat is synthesised, with rss 0).
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        (s.virtual_bytes, s.resident_bytes) = from_statm(&statm, page.max(1) as u64);
        s.open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes one rlimit into `lim`, which lives for the call.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            #[allow(clippy::unnecessary_cast)] // rlim_t is 32 bits wide on the 32-bit targets
            let max = lim.rlim_cur as u64;
            s.max_fds = Some(max);
        }
        s
    }
}

/// The `/proc/<pid>/stat` fields the series need (proc(5): utime 14, stime 15, num_threads 20,
/// starttime 22; the sizes come from statm), counted after the `(comm)` field, which may hold spaces.
pub fn from_stat(stat: &str, clock_ticks: f64, boot_time: Option<u64>) -> ProcessStats {
    let fields: Vec<&str> = stat.rsplit_once(')').map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    ProcessStats {
        cpu_seconds: field(14).zip(field(15)).map(|(u, s)| (u + s) as f64 / clock_ticks),
        start_time_seconds: field(22).zip(boot_time).map(|(t, b)| b as f64 + t as f64 / clock_ticks),
        threads: field(20),
        ..ProcessStats::default()
    }
}

/// The first two `/proc/<pid>/statm` fields (proc(5): size and resident, in pages) in bytes.
pub fn from_statm(statm: &str, page_size: u64) -> (Option<u64>, Option<u64>) {
    let mut pages = statm.split_whitespace().map(|v| v.parse::<u64>().ok().map(|p| p * page_size));
    (pages.next().flatten(), pages.next().flatten())
}

/// The exposition text (pure): families in name order, as Go's registry gathers them.
pub fn render(requests: &BTreeMap<(u16, &'static str, &'static str), u64>, p: &ProcessStats) -> String {
    let mut out = String::new();
    if !requests.is_empty() {
        out.push_str("# HELP multus_server_request_total Counter of HTTP requests\n");
        out.push_str("# TYPE multus_server_request_total counter\n");
        for ((code, handler, method), n) in requests {
            let _ = writeln!(
                out,
                "multus_server_request_total{{code=\"{code}\",handler=\"{handler}\",method=\"{method}\"}} {n}"
            );
        }
    }
    let int = |v: Option<u64>| v.map(|v| v.to_string());
    let float = |v: Option<f64>| v.map(|v| v.to_string());
    // (name, type, help as Go's process collector words it, value), in name order.
    let series = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            float(p.cpu_seconds),
        ),
        ("process_max_fds", "gauge", "Maximum number of open file descriptors.", int(p.max_fds)),
        ("process_open_fds", "gauge", "Number of open file descriptors.", int(p.open_fds)),
        ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", int(p.resident_bytes)),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            float(p.start_time_seconds),
        ),
        ("process_threads", "gauge", "Number of OS threads in the process.", int(p.threads)),
        ("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", int(p.virtual_bytes)),
    ];
    for (name, kind, help, value) in series {
        if let Some(v) = value {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stat_fields_become_the_process_series() {
        // A comm with spaces and a parenthesis; utime 250, stime 50 ticks; 7 threads; started
        // 1000 ticks after boot.
        let stat = "42 (multus (d) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 1000 10000000 300 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let s = from_stat(stat, 100.0, Some(1_700_000_000));
        assert_eq!(
            s,
            ProcessStats {
                cpu_seconds: Some(3.0),
                start_time_seconds: Some(1_700_000_010.0),
                threads: Some(7),
                ..ProcessStats::default()
            }
        );
        assert_eq!(from_stat("garbage", 100.0, None), ProcessStats::default());
        assert_eq!(from_statm("2441 300 200 1 0 500 0\n", 4096), (Some(2441 * 4096), Some(300 * 4096)));
        assert_eq!(from_statm("", 4096), (None, None));
    }

    #[test]
    fn the_whole_document() {
        let mut requests = BTreeMap::new();
        requests.insert((200, "/cni", "post"), 3);
        requests.insert((404, "NotFound", "get"), 1);
        let p = ProcessStats {
            cpu_seconds: Some(0.25),
            open_fds: Some(9),
            max_fds: Some(1024),
            virtual_bytes: Some(100),
            resident_bytes: Some(40),
            start_time_seconds: Some(1.7e9),
            threads: Some(6),
        };
        assert_eq!(
            render(&requests, &p),
            "# HELP multus_server_request_total Counter of HTTP requests\n\
             # TYPE multus_server_request_total counter\n\
             multus_server_request_total{code=\"200\",handler=\"/cni\",method=\"post\"} 3\n\
             multus_server_request_total{code=\"404\",handler=\"NotFound\",method=\"get\"} 1\n\
             # HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total 0.25\n\
             # HELP process_max_fds Maximum number of open file descriptors.\n\
             # TYPE process_max_fds gauge\n\
             process_max_fds 1024\n\
             # HELP process_open_fds Number of open file descriptors.\n\
             # TYPE process_open_fds gauge\n\
             process_open_fds 9\n\
             # HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\n\
             process_resident_memory_bytes 40\n\
             # HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n\
             # TYPE process_start_time_seconds gauge\n\
             process_start_time_seconds 1700000000\n\
             # HELP process_threads Number of OS threads in the process.\n\
             # TYPE process_threads gauge\n\
             process_threads 6\n\
             # HELP process_virtual_memory_bytes Virtual memory size in bytes.\n\
             # TYPE process_virtual_memory_bytes gauge\n\
             process_virtual_memory_bytes 100\n"
        );
        assert_eq!(render(&BTreeMap::new(), &ProcessStats::default()), "", "no samples, no families");
    }

    #[test]
    fn exposition_text() {
        let m = Metrics::default();
        m.record(handler_label("/cni"), 200, "POST");
        m.record(handler_label("/cni"), 200, "POST");
        m.record(handler_label("/cni"), 400, "POST");
        m.record(handler_label("/healthz"), 200, "GET");
        m.record(handler_label("/nope"), 404, "GET");
        m.record(handler_label("/cni"), 405, "BREW");
        let text = m.render();
        let counter: Vec<&str> = text.lines().filter(|l| l.contains("multus_server_request_total")).collect();
        assert_eq!(
            counter,
            [
                "# HELP multus_server_request_total Counter of HTTP requests",
                "# TYPE multus_server_request_total counter",
                "multus_server_request_total{code=\"200\",handler=\"/cni\",method=\"post\"} 2",
                "multus_server_request_total{code=\"200\",handler=\"/healthz\",method=\"get\"} 1",
                "multus_server_request_total{code=\"400\",handler=\"/cni\",method=\"post\"} 1",
                "multus_server_request_total{code=\"404\",handler=\"NotFound\",method=\"get\"} 1",
                "multus_server_request_total{code=\"405\",handler=\"/cni\",method=\"unknown\"} 1",
            ]
        );
        for name in [
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_start_time_seconds",
        ] {
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing from\n{text}"));
            let v: f64 = value.parse().unwrap();
            assert!(v >= 0.0 && (name == "process_cpu_seconds_total" || v > 0.0), "{name} {v}");
        }
    }
}
