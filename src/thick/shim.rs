//! `multus-shim`, the CNI plugin of thick mode (upstream `pkg/server/api/shim.go`): forwards the
//! runtime's environment and stdin to the daemon, re-prints an ADD's result in the config's
//! `cniVersion`, and passes errors on with their CNI code.
//!
//! From its config it reads only `cniVersion`, `daemonSocketDir` (default `/run/multus/`),
//! `logFile`, `logLevel`, `logToStderr`, and two keys of ours:
//! - `daemonReadinessTimeoutSeconds` (number, default 60): how long ADD, CHECK, GC and STATUS wait
//!   for the daemon's `/healthz` (polled every 100 ms) before failing with code 11. DEL probes once.
//! - `shimReturnDelErrors` (bool, default false): upstream's shim reports success for every DEL,
//!   whatever went wrong (PR #1084), so a runtime never retries a DEL that left state behind;
//!   `true` returns DEL errors to the runtime like the thin plugin does.
//!
//! Failures keep upstream's message shape (`CmdAdd (shim): CNI request failed with status 400:
//! '<body>': StdinData: <config>`, code 999) when the daemon answers with text; a daemon that
//! answers with a CNI error object (ours) has its code and details passed through. A daemon that
//! cannot be reached is code 11 (try again later).

use std::path::PathBuf;
use std::time::Duration;

use http::Method;
use serde_json::Value;

use super::api::{self, CNI_ENDPOINT, DEFAULT_SOCKET_DIR, WIRE_RESULT_VERSION};
use super::client::{Client, ClientError, Reply};
use crate::cni::error::{CniError, Error, code};
use crate::cni::result::CniResult;
use crate::cni::skel::{CmdArgs, Command, Plugin};
use crate::golang::Fields;
use crate::logging;
use crate::logging::LogOptions;

pub const DEFAULT_READINESS_TIMEOUT: Duration = Duration::from_secs(60);
pub const READINESS_POLL: Duration = Duration::from_millis(100);

/// The keys of the multus config the shim itself uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ShimConf {
    pub cni_version: String,
    pub socket_dir: PathBuf,
    pub log_file: String,
    pub log_level: String,
    pub log_to_stderr: bool,
    pub readiness_timeout: Duration,
    pub return_del_errors: bool,
}

/// What every error about the shim's config starts with (upstream's wording).
const WHAT: &str = "invalid CNI configuration passed to multus-shim: failed to gather the multus configuration";

impl ShimConf {
    pub fn parse(stdin: &[u8]) -> Result<ShimConf, Error> {
        let v: Value = serde_json::from_slice(stdin).map_err(|e| Error::Decoding(format!("{WHAT}: {e}")))?;
        // Go's encoding/json rules, as upstream's shim decodes its config (see `golang::Fields`).
        let empty = serde_json::Map::new();
        let f = Fields::new(v.as_object().unwrap_or(&empty), WHAT);
        let string = |k: &str| f.string_or(k, "").map_err(Error::from);
        let boolean = |k: &str| f.boolean(k).map_err(Error::from);
        let readiness_timeout = match f.get("daemonReadinessTimeoutSeconds") {
            None => DEFAULT_READINESS_TIMEOUT,
            Some(n) => n
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 86400.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| f.invalid("daemonReadinessTimeoutSeconds", "a number of seconds"))?,
        };
        let socket_dir = string("daemonSocketDir")?;
        Ok(ShimConf {
            cni_version: string("cniVersion")?,
            socket_dir: PathBuf::from(if socket_dir.is_empty() { DEFAULT_SOCKET_DIR.to_string() } else { socket_dir }),
            log_file: string("logFile")?,
            log_level: string("logLevel")?,
            log_to_stderr: boolean("logToStderr")?,
            readiness_timeout,
            return_del_errors: boolean("shimReturnDelErrors")?,
        })
    }
}

/// `CmdAdd (shim)`, ..., as upstream prefixes its messages.
pub fn prefix(cmd: Command) -> &'static str {
    match cmd {
        Command::Add => "CmdAdd (shim)",
        Command::Del => "CmdDel (shim)",
        Command::Check => "CmdCheck (shim)",
        Command::Gc => "CmdGC (shim)",
        Command::Status => "CmdStatus (shim)",
        Command::Version => "CmdVersion (shim)",
    }
}

/// The daemon could not be asked (down, restarting, socket missing, connection dropped).
fn unreachable_daemon(cmd: Command, what: String) -> Error {
    Error::Cni(CniError::new(code::TRY_AGAIN_LATER, format!("{}: {what}", prefix(cmd)), ""))
}

/// The readiness failure after waiting `waited`.
pub fn not_ready(cmd: Command, socket: &std::path::Path, waited: Duration, last: &ClientError) -> Error {
    unreachable_daemon(
        cmd,
        format!(
            "timed out waiting for the condition: multus-daemon did not answer {} on {} within {:?} (last error: {last})",
            api::HEALTH_ENDPOINT,
            socket.display(),
            waited
        ),
    )
}

/// What the shim makes of the daemon's answer: the result to print for ADD, nothing otherwise.
pub fn interpret(
    cmd: Command,
    conf: &ShimConf,
    stdin: &[u8],
    reply: Result<Reply, ClientError>,
) -> Result<Option<Value>, Error> {
    let p = prefix(cmd);
    let stdin_text = String::from_utf8_lossy(stdin);
    let reply = reply
        .map_err(|e| unreachable_daemon(cmd, format!("failed to send CNI request: {e}: StdinData: {stdin_text}")))?;
    if reply.status != 200 {
        if let Some(mut e) = api::parse_error_body(&reply.body) {
            e.msg = format!("{p}: {}", e.msg);
            e.cni_version = None;
            return Err(Error::Cni(e));
        }
        return Err(Error::Cni(CniError::new(
            code::INTERNAL,
            format!(
                "{p}: CNI request failed with status {}: '{}': StdinData: {stdin_text}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            ),
            "",
        )));
    }
    if cmd != Command::Add {
        return Ok(None);
    }
    let bad = |what: String| {
        Error::Cni(CniError::new(
            code::DECODING_FAILURE,
            format!("{p}: failed to unmarshal response '{}': {what}", String::from_utf8_lossy(&reply.body)),
            "",
        ))
    };
    let response: api::Response = serde_json::from_slice(&reply.body).map_err(|e| bad(e.to_string()))?;
    let result = response.result.ok_or_else(|| bad("no Result".into()))?;
    let converted = CniResult::from_value(result, WIRE_RESULT_VERSION)
        .and_then(|r| r.to_value(&conf.cni_version))
        .map_err(|e| e.context(format!("{p}: cannot print the result as cniVersion {:?}", conf.cni_version)))?;
    Ok(Some(converted))
}

/// The shim as a skel plugin; `env` is the process environment it forwards.
pub struct Shim {
    pub env: Vec<(String, String)>,
}

impl Shim {
    pub fn from_process() -> Shim {
        Shim {
            env: std::env::vars_os()
                .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
                .collect(),
        }
    }

    fn call(&self, cmd: Command, args: &CmdArgs) -> Result<Option<Value>, Error> {
        let conf = ShimConf::parse(&args.stdin)?;
        logging::init_with(&conf.log_file, &conf.log_level, conf.log_to_stderr, &LogOptions::default());
        let outcome = self.ask(cmd, &conf, args);
        match outcome {
            Err(e) if cmd == Command::Del && !conf.return_del_errors => {
                logging::error(&format!("{e} (DEL reports success; set shimReturnDelErrors to return it)"));
                Ok(None)
            }
            Err(e) => {
                logging::error(&e.to_string());
                Err(e)
            }
            Ok(v) => {
                if let Some(r) = &v {
                    logging::verbose(&format!("{}: {r}", prefix(cmd)));
                }
                Ok(v)
            }
        }
    }

    /// Sends the command to the daemon. It goes straight to `/cni`: a daemon that accepts the
    /// connection is serving (its `/healthz` answers 200 whenever it listens, ours and upstream's),
    /// so upstream's readiness probe before every command is a round trip through the daemon that
    /// tells nothing new. Only when the connect fails (no socket yet, a stale one), and so nothing
    /// was sent, does the shim wait for readiness as upstream does (`WaitUntilAPIReady`; DEL
    /// probes once) and send again.
    fn ask(&self, cmd: Command, conf: &ShimConf, args: &CmdArgs) -> Result<Option<Value>, Error> {
        let socket = api::socket_path(&conf.socket_dir);
        let client = Client::new(&socket);
        // Built again only in the rare case that the first connect failed.
        let body = || api::Request::from_process(self.env.iter().cloned(), &args.stdin).to_json();
        match client.send(Method::POST, CNI_ENDPOINT, body(), None) {
            Err(ClientError::Connect { .. }) => {}
            reply => return interpret(cmd, conf, &args.stdin, reply),
        }
        let ready = if cmd == Command::Del {
            client.probe(conf.readiness_timeout.max(READINESS_POLL)).map_err(|e| (Duration::ZERO, e))
        } else {
            client.wait_ready(conf.readiness_timeout, READINESS_POLL).map_err(|e| (conf.readiness_timeout, e))
        };
        if let Err((waited, last)) = ready {
            return Err(not_ready(cmd, &socket, waited, &last));
        }
        let reply = client.send(Method::POST, CNI_ENDPOINT, body(), None);
        interpret(cmd, conf, &args.stdin, reply)
    }
}

impl Plugin for Shim {
    fn add(&self, args: &CmdArgs) -> Result<Value, Error> {
        self.call(Command::Add, args)?
            .ok_or_else(|| Error::Internal(format!("{}: the daemon sent no result", prefix(Command::Add))))
    }

    fn del(&self, args: &CmdArgs) -> Result<(), Error> {
        self.call(Command::Del, args).map(|_| ())
    }

    fn check(&self, args: &CmdArgs) -> Result<(), Error> {
        self.call(Command::Check, args).map(|_| ())
    }

    fn gc(&self, args: &CmdArgs) -> Result<(), Error> {
        self.call(Command::Gc, args).map(|_| ())
    }

    fn status(&self, args: &CmdArgs) -> Result<(), Error> {
        self.call(Command::Status, args).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(version: &str) -> ShimConf {
        ShimConf::parse(json!({"cniVersion": version}).to_string().as_bytes()).unwrap()
    }

    #[test]
    fn reads_only_its_keys() {
        let c = ShimConf::parse(
            br#"{"cniVersion":"0.3.1","name":"multus-cni-network","type":"multus-shim","daemonSocketDir":"/host/run/multus/",
            "logFile":"/var/log/shim.log","logLevel":"debug","logToStderr":true,"delegates":"not looked at",
            "daemonReadinessTimeoutSeconds":1.5,"shimReturnDelErrors":true}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            ShimConf {
                cni_version: "0.3.1".into(),
                socket_dir: PathBuf::from("/host/run/multus/"),
                log_file: "/var/log/shim.log".into(),
                log_level: "debug".into(),
                log_to_stderr: true,
                readiness_timeout: Duration::from_millis(1500),
                return_del_errors: true,
            }
        );
        let d = ShimConf::parse(b"{}").unwrap();
        assert_eq!(
            (d.socket_dir, d.readiness_timeout, d.return_del_errors, d.log_to_stderr),
            (PathBuf::from("/run/multus/"), DEFAULT_READINESS_TIMEOUT, false, false)
        );
        let e = ShimConf::parse(b"{").unwrap_err();
        assert_eq!(e.code(), 6);
        assert!(e.to_string().starts_with("invalid CNI configuration passed to multus-shim"), "{e}");
        assert!(ShimConf::parse(br#"{"daemonReadinessTimeoutSeconds":-1}"#).is_err());
        // Keys match as Go's encoding/json matches them (upstream's shim): any case, last wins.
        let g = ShimConf::parse(br#"{"DaemonSocketDir":"/a/","daemonsocketdir":"/b/","LogToStderr":true}"#).unwrap();
        assert_eq!((g.socket_dir, g.log_to_stderr), (PathBuf::from("/b/"), true));
    }

    const ADD_RESPONSE: &str = include_str!("../../tests/fixtures/thick/response-add.json");

    #[test]
    fn add_results_are_reprinted_in_the_config_version() {
        let ok = || Ok(Reply { status: 200, body: ADD_RESPONSE.trim().as_bytes().to_vec() });
        let v = interpret(Command::Add, &conf("0.3.1"), b"{}", ok()).unwrap().unwrap();
        assert_eq!(
            v,
            json!({"cniVersion":"0.3.1","interfaces":[{"name":"tbr0","mac":"aa:bb:cc:dd:ee:01"},{"name":"eth0","mac":"aa:bb:cc:dd:ee:02","sandbox":"/var/run/netns/p1"}],
                "ips":[{"version":"4","interface":1,"address":"10.99.0.2/24","gateway":"10.99.0.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}})
        );
        let v = interpret(Command::Add, &conf("1.0.0"), b"{}", ok()).unwrap().unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["ips"], json!([{"interface":1,"address":"10.99.0.2/24","gateway":"10.99.0.1"}]));
        assert_eq!(
            interpret(Command::Del, &conf("1.0.0"), b"{}", Ok(Reply { status: 200, body: vec![] })).unwrap(),
            None
        );
        let e = interpret(Command::Add, &conf("1.0.0"), b"{}", Ok(Reply { status: 200, body: b"{}".to_vec() }))
            .unwrap_err();
        assert!(e.to_string().starts_with("CmdAdd (shim): failed to unmarshal response '{}'"), "{e}");
    }

    #[test]
    fn errors_keep_their_code_or_get_upstreams_shape() {
        let stdin = br#"{"cniVersion":"1.0.0"}"#;
        let json_body = Reply {
            status: 400,
            body: br#"{"cniVersion":"1.0.0","code":7,"msg":"ContainerID:\"c\" ERRORED: no plugin","details":"d"}"#
                .to_vec(),
        };
        let e = interpret(Command::Check, &conf("1.0.0"), stdin, Ok(json_body)).unwrap_err().to_cni();
        assert_eq!(e, CniError::new(7, "CmdCheck (shim): ContainerID:\"c\" ERRORED: no plugin", "d"));
        let text = Reply { status: 400, body: b"ContainerID:\"c\" ERRORED: boom\n".to_vec() };
        let e = interpret(Command::Add, &conf("1.0.0"), stdin, Ok(text)).unwrap_err().to_cni();
        assert_eq!(
            e,
            CniError::new(
                999,
                "CmdAdd (shim): CNI request failed with status 400: 'ContainerID:\"c\" ERRORED: boom\n': StdinData: {\"cniVersion\":\"1.0.0\"}",
                ""
            )
        );
        let gone = Err(ClientError::Http("POST http://dummy/cni: connection closed before message completed".into()));
        let e = interpret(Command::Add, &conf("1.0.0"), stdin, gone).unwrap_err().to_cni();
        assert_eq!(e.code, 11);
        assert!(
            e.msg.starts_with("CmdAdd (shim): failed to send CNI request: POST http://dummy/cni: connection closed"),
            "{}",
            e.msg
        );
    }
}
