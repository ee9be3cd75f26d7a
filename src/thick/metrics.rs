//! The daemon's Prometheus metrics, through the `prometheus` client crate: upstream's request
//! counter `multus_server_request_total{code,handler,method}` (labels as promhttp fills them: the
//! endpoint or `NotFound`, the status code, the lower-case method) and the standard process
//! collector (`process_cpu_seconds_total` — whole seconds in this crate, Go's are fractional —,
//! `process_open_fds`, `process_max_fds`, `process_virtual_memory_bytes`,
//! `process_resident_memory_bytes`, `process_start_time_seconds`, `process_threads`), the series
//! upstream's Go registry exports and dashboards are built on. Rendered in the text exposition
//! format 0.0.4. The method label takes the standard methods only (others are `unknown`, as
//! promhttp does), so requests cannot grow the series without bound.

use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

use super::api::{CNI_ENDPOINT, DELEGATE_ENDPOINT, HEALTH_ENDPOINT};

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("multus_server_request_total", "Counter of HTTP requests"),
            &["code", "handler", "method"],
        )
        .expect("a valid metric definition");
        registry.register(Box::new(requests.clone())).expect("registered once");
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("registered once");
        Metrics { registry, requests }
    }
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
        const STANDARD: [&str; 9] = ["get", "head", "post", "put", "delete", "connect", "options", "trace", "patch"];
        let lower = method.to_ascii_lowercase();
        let method = STANDARD.iter().copied().find(|m| *m == lower).unwrap_or("unknown");
        self.requests.with_label_values(&[code.to_string().as_str(), handler, method]).inc();
    }

    /// The exposition text of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding into memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
