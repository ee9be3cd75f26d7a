//! `daemon-config.json`: every key upstream's daemon reads (its `ControllerNetConf` and the
//! generator's `MultusConf`) with upstream's defaults, the keys this daemon adds, and the
//! per-request override (every top-level key of the file is copied over each request's config).
//! Pure: bytes in, struct out; [`DaemonConfig::load`] is the one function that reads the file and
//! [`DaemonConfig::parse`] the one that decodes it. Each key is read by one reader, all with Go's
//! rules (`crate::golang`): the keys written into `00-multus.conf` by [`ThickConf`] (the daemon
//! logs with the same `logFile`/`logLevel`/`logToStderr`), the settings every request and
//! `/delegate` runs with by [`NetConf::settings_from`], the rest here. The config manager takes
//! its part from the parsed struct (`manager::ManagerConfig::from_daemon`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::api::DEFAULT_SOCKET_DIR;
use super::generate::ThickConf;
use crate::cni::error::Error;
use crate::confgen::AUTO;
use crate::golang::Fields;
use crate::logging;
use crate::multus::conf::NetConf;

pub const DEFAULT_PATH: &str = "/etc/cni/net.d/multus.d/daemon-config.json";
pub const DEFAULT_CNI_CONFIG_DIR: &str = "/etc/cni/net.d";
pub const DEFAULT_CERT_DURATION: &str = "10m";
/// The key that keeps 00-multus.conf when the daemon stops (ours; not upstream's, issue #1527).
pub const KEEP_CONFIG_ON_EXIT_KEY: &str = "keepConfigOnExit";
/// Requests processed at once; more wait for a slot (upstream has no bound: #1346, #1416).
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 64;
/// The largest request body accepted; a multus config with inline delegates is a few KiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1 << 20;

/// Connections served at once; more wait in the listen backlog (below the usual soft limit of
/// 1024 open files, which the daemon leaves as it is: delegates inherit it).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Request bytes being received at once over all connections (a slow client holds its share).
pub const DEFAULT_MAX_INFLIGHT_REQUEST_BYTES: usize = 8 << 20;
/// How long a client may take to send its headers, and then its body.
pub const DEFAULT_REQUEST_READ_TIMEOUT_SECONDS: u64 = 10;
/// How long SIGTERM waits for the requests in flight before the daemon exits anyway.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECONDS: u64 = 10;

/// The per-node client certificate (`perNodeCertificate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerNodeCertificate {
    pub enabled: bool,
    pub bootstrap_kubeconfig: String,
    pub cert_dir: String,
    /// A Go duration (`10m`, `1h30m`); parsed by whoever requests the certificate.
    pub cert_duration: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// Run delegates chrooted here (`chrootDir`; the deployment uses `/hostroot`).
    pub chroot_dir: Option<PathBuf>,
    /// Where `multus.sock` is created (`socketDir`).
    pub socket_dir: PathBuf,
    /// Serve `/metrics` on this TCP port (`metricsPort`).
    pub metrics_port: Option<u16>,
    /// Ours: the address the metrics listener binds (`metricsBindAddress`); unset means every
    /// address, as upstream's `:<port>`.
    pub metrics_bind_address: Option<IpAddr>,
    pub per_node_certificate: Option<PerNodeCertificate>,
    /// The keys written into the generated `00-multus.conf` (`cniVersion`, `logFile`, `logLevel`,
    /// `logToStderr` — the daemon is quiet unless asked, unlike the thin plugin —, `capabilities`,
    /// `overrideNetworkName`, ...).
    pub generated: ThickConf,
    /// The multus settings every request and `/delegate` runs with (the defaults, then this file);
    /// its `log_options` are the daemon's own.
    pub settings: NetConf,
    /// `auto` (generate `00-multus.conf`) or the path of a file to copy into `cniConfigDir`.
    pub multus_config_file: String,
    pub cni_config_dir: PathBuf,
    pub multus_autoconfig_dir: String,
    pub multus_master_cni: String,
    pub force_cni_version: bool,
    pub readiness_indicator_file: String,
    /// Ours (`keepConfigOnExit`): leave 00-multus.conf in place when the daemon stops.
    pub keep_config_on_exit: bool,
    /// Ours (`maxConcurrentRequests`): requests processed at once; the rest wait.
    pub max_concurrent_requests: usize,
    /// Ours (`maxRequestBytes`): larger request bodies are refused with 413.
    pub max_request_bytes: usize,
    /// Ours (`maxConnections`): connections served at once.
    pub max_connections: usize,
    /// Ours (`maxInflightRequestBytes`): request bodies being received at once, in bytes.
    pub max_inflight_request_bytes: usize,
    /// Ours (`requestReadTimeoutSeconds`): for the headers, then again for the body.
    pub request_read_timeout: Duration,
    /// Ours (`shutdownTimeoutSeconds`): the drain after SIGTERM.
    pub shutdown_timeout: Duration,
    /// The whole document: the override applied to every request's config.
    pub raw: Map<String, Value>,
}

fn bad(key: &str, want: &str) -> Error {
    Error::Decoding(format!("invalid daemon config: {key:?} must be {want}"))
}

/// A positive count of at most `max` (ours: `maxConcurrentRequests`, `maxRequestBytes`, ...).
fn count(f: &Fields, key: &str, default: usize, max: usize) -> Result<usize, Error> {
    match f.get(key) {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0 && *n <= max as u64)
            .map(|n| n as usize)
            .ok_or_else(|| bad(key, &format!("an integer from 1 to {max}"))),
    }
}

impl DaemonConfig {
    /// Reads and parses the file; every error names it (upstream #1320: invalid JSON went unlogged).
    pub fn load(path: &Path) -> Result<DaemonConfig, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("failed to read the daemon config", path, e))?;
        Self::parse(&bytes).map_err(|e| e.context(format!("daemon config {}", path.display())))
    }

    pub fn parse(bytes: &[u8]) -> Result<DaemonConfig, Error> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| Error::Decoding(format!("invalid JSON: {e}")))?;
        let Value::Object(raw) = value else {
            return Err(Error::Decoding("invalid daemon config: not a JSON object".into()));
        };
        // Every request gets these keys; a value every request would refuse is refused now.
        let settings = NetConf::settings_from(&raw)?;
        // Go's encoding/json rules, as upstream decodes this file: case-insensitive keys, null = unset.
        let f = Fields::new(&raw, "invalid daemon config");
        let metrics_port = match f.get("metricsPort") {
            None => None,
            Some(v) => {
                Some(v.as_u64().and_then(|p| u16::try_from(p).ok()).ok_or_else(|| bad("metricsPort", "a TCP port"))?)
            }
        };
        let metrics_bind_address = match f.string_or("metricsBindAddress", "")? {
            a if a.is_empty() => None,
            a => Some(a.parse().map_err(|_| bad("metricsBindAddress", "an IP address"))?),
        };
        let per_node_certificate = match f.object("perNodeCertificate")? {
            None => None,
            Some(o) => {
                let p = Fields::new(o, "invalid daemon config perNodeCertificate");
                Some(PerNodeCertificate {
                    enabled: p.boolean("enabled")?,
                    bootstrap_kubeconfig: p.string_or("bootstrapKubeconfig", "")?,
                    cert_dir: p.string_or("certDir", "")?,
                    cert_duration: match p.string_or("certDuration", "")? {
                        d if d.is_empty() => DEFAULT_CERT_DURATION.to_string(),
                        d => d,
                    },
                })
            }
        };
        let chroot_dir = f.string_or("chrootDir", "")?;
        let socket_dir = f.string_or("socketDir", "")?;
        Ok(DaemonConfig {
            chroot_dir: (!chroot_dir.is_empty()).then(|| PathBuf::from(chroot_dir)),
            socket_dir: PathBuf::from(if socket_dir.is_empty() { DEFAULT_SOCKET_DIR.to_string() } else { socket_dir }),
            metrics_port,
            metrics_bind_address,
            per_node_certificate,
            generated: ThickConf::from_daemon_config(&raw)?,
            settings,
            multus_config_file: match f.string_or("multusConfigFile", "")? {
                f if f.is_empty() => AUTO.to_string(),
                f => f,
            },
            cni_config_dir: PathBuf::from(f.string_or("cniConfigDir", DEFAULT_CNI_CONFIG_DIR)?),
            multus_autoconfig_dir: f.string_or("multusAutoconfigDir", "")?,
            multus_master_cni: f.string_or("multusMasterCNI", "")?,
            force_cni_version: f.boolean("forceCNIVersion")?,
            readiness_indicator_file: f.string_or("readinessindicatorfile", "")?,
            keep_config_on_exit: f.boolean(KEEP_CONFIG_ON_EXIT_KEY)?,
            max_concurrent_requests: count(&f, "maxConcurrentRequests", DEFAULT_MAX_CONCURRENT_REQUESTS, 4096)?,
            max_request_bytes: count(&f, "maxRequestBytes", DEFAULT_MAX_REQUEST_BYTES, 64 << 20)?,
            max_connections: count(&f, "maxConnections", DEFAULT_MAX_CONNECTIONS, 65536)?,
            max_inflight_request_bytes: count(
                &f,
                "maxInflightRequestBytes",
                DEFAULT_MAX_INFLIGHT_REQUEST_BYTES,
                1 << 30,
            )?,
            request_read_timeout: Duration::from_secs(count(
                &f,
                "requestReadTimeoutSeconds",
                DEFAULT_REQUEST_READ_TIMEOUT_SECONDS as usize,
                3600,
            )? as u64),
            shutdown_timeout: Duration::from_secs(count(
                &f,
                "shutdownTimeoutSeconds",
                DEFAULT_SHUTDOWN_TIMEOUT_SECONDS as usize,
                3600,
            )? as u64),
            raw,
        })
    }

    /// Starts the daemon's logging as the file asks.
    pub fn init_logging(&self) {
        let g = &self.generated;
        logging::init_with(&g.log_file, &g.log_level, g.log_to_stderr, &self.settings.log_options);
    }

    /// True when the daemon generates `00-multus.conf` itself.
    pub fn is_auto(&self) -> bool {
        self.multus_config_file == AUTO
    }

    /// A request's config with every key of this file copied over it (upstream
    /// `overrideCNIConfigWithServerConfig`). In `auto` mode the readiness indicator is the
    /// daemon's own business and is not copied.
    pub fn override_request_config(&self, config: &[u8]) -> Result<Vec<u8>, Error> {
        override_config(config, &self.raw, self.is_auto())
    }
}

/// Copies every key of `overrides` over the JSON object `config`, optionally sparing
/// `readinessindicatorfile`.
pub fn override_config(config: &[u8], overrides: &Map<String, Value>, keep_readiness: bool) -> Result<Vec<u8>, Error> {
    if overrides.is_empty() {
        return Ok(config.to_vec());
    }
    let mut conf: Map<String, Value> =
        serde_json::from_slice(config).map_err(|e| Error::Decoding(format!("failed to unmarshall CNI config: {e}")))?;
    for (k, v) in overrides {
        if keep_readiness && k == "readinessindicatorfile" {
            continue;
        }
        conf.insert(k.clone(), v.clone());
    }
    Ok(serde_json::to_vec(&conf).expect("a JSON object serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The daemon config of upstream's thick DaemonSet (deployments/multus-daemonset-thick.yml).
    const DEPLOYMENT: &str = r#"{
        "chrootDir": "/hostroot",
        "cniVersion": "0.3.1",
        "logLevel": "verbose",
        "logToStderr": true,
        "cniConfigDir": "/host/etc/cni/net.d",
        "multusAutoconfigDir": "/host/etc/cni/net.d",
        "multusConfigFile": "auto",
        "socketDir": "/host/run/multus/"
    }"#;

    #[test]
    fn upstream_deployment_config() {
        let c = DaemonConfig::parse(DEPLOYMENT.as_bytes()).unwrap();
        assert_eq!(c.chroot_dir, Some(PathBuf::from("/hostroot")));
        assert_eq!(c.socket_dir, PathBuf::from("/host/run/multus/"));
        let g = &c.generated;
        assert_eq!((g.cni_version.as_str(), g.log_level.as_str(), g.log_to_stderr), ("0.3.1", "verbose", true));
        assert_eq!(c.cni_config_dir, PathBuf::from("/host/etc/cni/net.d"));
        assert_eq!(c.multus_autoconfig_dir, "/host/etc/cni/net.d");
        assert!(c.is_auto());
        assert_eq!(c.raw.len(), 8);
    }

    #[test]
    fn defaults_are_upstreams() {
        let c = DaemonConfig::parse(b"{}").unwrap();
        assert_eq!(c.chroot_dir, None);
        assert_eq!(c.socket_dir, PathBuf::from("/run/multus/"));
        assert_eq!((c.metrics_port, c.metrics_bind_address), (None, None));
        let g = &c.generated;
        assert_eq!((g.log_file.as_str(), g.log_level.as_str(), g.log_to_stderr), ("", "", false));
        assert_eq!(c.settings.log_options, crate::logging::LogOptions::default());
        assert_eq!(c.per_node_certificate, None);
        assert_eq!(g.cni_version, "");
        assert_eq!(c.multus_config_file, "auto");
        assert_eq!(c.cni_config_dir, PathBuf::from("/etc/cni/net.d"));
        assert_eq!((c.multus_autoconfig_dir.as_str(), c.multus_master_cni.as_str()), ("", ""));
        assert!(!c.force_cni_version && !g.override_network_name && !c.keep_config_on_exit);
        assert_eq!(c.readiness_indicator_file, "");
        assert!(g.capabilities.is_empty());
        assert_eq!((c.max_concurrent_requests, c.max_request_bytes), (64, 1 << 20));
    }

    #[test]
    fn every_key() {
        let c = DaemonConfig::parse(
            json!({"metricsPort": 9091, "metricsBindAddress": "127.0.0.1", "logFile": "/var/log/multus.log",
                "logOptions": {"maxSize": 7}, "perNodeCertificate": {"enabled": true, "bootstrapKubeconfig": "/b",
                "certDir": "/c"}, "multusConfigFile": "/tmp/70-multus.conf", "multusMasterCNI": "10-calico.conflist",
                "forceCNIVersion": true, "overrideNetworkName": true, "readinessindicatorfile": "/r",
                "capabilities": {"portMappings": true}, "maxConcurrentRequests": 3, "maxRequestBytes": 4096})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(c.metrics_port, Some(9091));
        assert_eq!(c.metrics_bind_address, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(c.generated.log_file, "/var/log/multus.log");
        assert_eq!(c.settings.log_options.max_size_mb, 7);
        assert_eq!(
            c.per_node_certificate,
            Some(PerNodeCertificate {
                enabled: true,
                bootstrap_kubeconfig: "/b".into(),
                cert_dir: "/c".into(),
                cert_duration: "10m".into()
            })
        );
        assert!(!c.is_auto());
        assert_eq!(c.multus_master_cni, "10-calico.conflist");
        assert!(c.force_cni_version && c.generated.override_network_name);
        assert_eq!(c.readiness_indicator_file, "/r");
        assert_eq!(c.generated.capabilities, [("portMappings".to_string(), true)].into());
        assert_eq!((c.max_concurrent_requests, c.max_request_bytes), (3, 4096));
    }

    #[test]
    fn bad_values_name_the_key() {
        for (doc, key) in [
            (r#"{"metricsPort": 70000}"#, "metricsPort"),
            (r#"{"metricsBindAddress": "localhost"}"#, "metricsBindAddress"),
            (r#"{"socketDir": 1}"#, "socketDir"),
            (r#"{"perNodeCertificate": {"enabled": "yes"}}"#, "enabled"),
            (r#"{"maxConcurrentRequests": 0}"#, "maxConcurrentRequests"),
            (r#"{"maxConcurrentRequests": 4097}"#, "maxConcurrentRequests"),
            (r#"{"maxRequestBytes": 4294967296}"#, "maxRequestBytes"),
            (r#"{"maxInflightRequestBytes": 2305843009213693952}"#, "maxInflightRequestBytes"),
            (r#"{"maxConnections": 65537}"#, "maxConnections"),
            (r#"{"requestReadTimeoutSeconds": 9223372036854775807}"#, "requestReadTimeoutSeconds"),
            (r#"{"shutdownTimeoutSeconds": 3601}"#, "shutdownTimeoutSeconds"),
            (r#"{"delegateTimeoutSeconds": 0}"#, "delegateTimeoutSeconds"),
            (r#"{"delegates": "x"}"#, "delegates"),
            (r#"{"capabilities": {"portMappings": "yes"}}"#, "capabilities"),
            (r#"{"keepConfigOnExit": 1}"#, "keepConfigOnExit"),
        ] {
            let e = DaemonConfig::parse(doc.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(key), "{doc}: {e}");
        }
    }

    #[test]
    fn invalid_json_names_the_file() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("daemon-config.json");
        std::fs::write(&path, "{\"cniVersion\": \"0.3.1\",}").unwrap();
        let e = DaemonConfig::load(&path).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("daemon config {}: invalid JSON", path.display())), "{msg}");
        assert!(msg.contains("line 1"), "{msg}");
        let e = DaemonConfig::load(&d.path().join("missing.json")).unwrap_err();
        assert!(e.to_string().contains("missing.json"), "{e}");
    }

    #[test]
    fn request_override() {
        let request = br#"{"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus-shim","logLevel":"error","readinessindicatorfile":"/shim"}"#;
        let mut c = DaemonConfig::parse(
            br#"{"logLevel":"debug","readinessindicatorfile":"/daemon","clusterNetwork":"/x.conflist","socketDir":"/s"}"#,
        )
        .unwrap();
        let got: Value = serde_json::from_slice(&c.override_request_config(request).unwrap()).unwrap();
        assert_eq!(
            got,
            json!({"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus-shim","logLevel":"debug",
                "readinessindicatorfile":"/shim","clusterNetwork":"/x.conflist","socketDir":"/s"}),
            "auto mode keeps the request's readiness indicator"
        );
        c.multus_config_file = "/etc/multus.conf".into();
        let got: Value = serde_json::from_slice(&c.override_request_config(request).unwrap()).unwrap();
        assert_eq!(got["readinessindicatorfile"], "/daemon");
        let e = c.override_request_config(b"[1]").unwrap_err();
        assert_eq!((e.code(), e.to_string().starts_with("failed to unmarshall CNI config")), (6, true));
        assert_eq!(override_config(b"not json", &Map::new(), true).unwrap(), b"not json", "nothing to override");
    }

    /// Upstream decodes daemon-config with Go's encoding/json: keys match ignoring case, the
    /// last one wins, and the keys the requests share (NetConf) follow the same rule.
    #[test]
    fn keys_match_as_go_decodes_them() {
        let c = DaemonConfig::parse(
            br#"{"readinessIndicatorFile":"/run/ready","SocketDir":"/s","socketdir":"/t","ChrootDir":"/hostroot",
            "MultusConfigFile":"auto","CNIVersion":"1.0.0","CNIDir":"/c"}"#,
        )
        .unwrap();
        assert_eq!(c.readiness_indicator_file, "/run/ready");
        assert_eq!(c.socket_dir, PathBuf::from("/t"), "the last matching key wins");
        assert_eq!(c.chroot_dir, Some(PathBuf::from("/hostroot")));
        assert_eq!(c.generated.cni_version, "1.0.0");
        assert_eq!(c.settings.cni_dir, PathBuf::from("/c"));
    }

    #[test]
    fn delegate_settings_come_from_the_file() {
        let c = DaemonConfig::parse(br#"{"binDir":"/b","cniDir":"/c"}"#).unwrap();
        let s = &c.settings;
        assert_eq!((&s.bin_dir, &s.cni_dir), (&PathBuf::from("/b"), &PathBuf::from("/c")));
    }
}
