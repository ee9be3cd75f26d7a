//! The daemon's Prometheus metrics: upstream's request counter
//! `multus_server_request_total{code,handler,method}` (labels as promhttp fills them: the
//! endpoint or `NotFound`, the status code, the lower-case method) and the process's resident
//! memory, rendered in the text exposition format. No registry crate: two metrics do not need one.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::api::{CNI_ENDPOINT, DELEGATE_ENDPOINT, HEALTH_ENDPOINT};

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(u16, &'static str, String), u64>>,
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

impl Metrics {
    pub fn record(&self, handler: &'static str, code: u16, method: &str) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((code, handler, method.to_ascii_lowercase())).or_insert(0) += 1;
    }

    /// The exposition text; `rss_bytes` is the process's resident memory, if known.
    pub fn render(&self, rss_bytes: Option<u64>) -> String {
        let mut out = String::from(
            "# HELP multus_server_request_total Counter of HTTP requests\n# TYPE multus_server_request_total counter\n",
        );
        let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        for ((code, handler, method), n) in m.iter() {
            out.push_str(&format!(
                "multus_server_request_total{{code=\"{code}\",handler=\"{handler}\",method=\"{method}\"}} {n}\n"
            ));
        }
        if let Some(rss) = rss_bytes {
            out.push_str(&format!(
                "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}\n"
            ));
        }
        out
    }
}

/// Resident memory of this process from `/proc/self/statm` (pages × page size).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().map(|p| p * pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_text() {
        let m = Metrics::default();
        assert_eq!(
            m.render(None),
            "# HELP multus_server_request_total Counter of HTTP requests\n# TYPE multus_server_request_total counter\n"
        );
        m.record(handler_label("/cni"), 200, "POST");
        m.record(handler_label("/cni"), 200, "POST");
        m.record(handler_label("/cni"), 400, "POST");
        m.record(handler_label("/healthz"), 200, "GET");
        m.record(handler_label("/nope"), 404, "GET");
        assert_eq!(
            m.render(Some(4096)),
            "# HELP multus_server_request_total Counter of HTTP requests\n\
             # TYPE multus_server_request_total counter\n\
             multus_server_request_total{code=\"200\",handler=\"/cni\",method=\"post\"} 2\n\
             multus_server_request_total{code=\"200\",handler=\"/healthz\",method=\"get\"} 1\n\
             multus_server_request_total{code=\"400\",handler=\"/cni\",method=\"post\"} 1\n\
             multus_server_request_total{code=\"404\",handler=\"NotFound\",method=\"get\"} 1\n\
             # HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\n\
             process_resident_memory_bytes 4096\n"
        );
    }

    #[test]
    fn rss_is_read() {
        assert!(resident_memory_bytes().unwrap() > 0);
    }
}
