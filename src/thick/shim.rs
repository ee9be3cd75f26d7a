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

use core::time::Duration;

use serde_json::Value;

use super::api::{self, CNI_ENDPOINT, DEFAULT_SOCKET_DIR, HEALTH_ENDPOINT, SOCKET_FILE, WIRE_RESULT_VERSION};
use super::http::{ClientError, Reply};
use crate::cni::error::{CniError, Error, code};
use crate::cni::result::CniResult;
use crate::cni::skel::{CmdArgs, Command, Plugin};
use crate::golang::Fields;
use crate::prelude::*;

pub const DEFAULT_READINESS_TIMEOUT: Duration = Duration::from_secs(60);
pub const READINESS_POLL: Duration = Duration::from_millis(100);

/// The keys of the multus config the shim itself uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ShimConf {
    pub cni_version: String,
    pub socket_dir: String,
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
            socket_dir: if socket_dir.is_empty() { DEFAULT_SOCKET_DIR.to_string() } else { socket_dir },
            log_file: string("logFile")?,
            log_level: string("logLevel")?,
            log_to_stderr: boolean("logToStderr")?,
            readiness_timeout,
            return_del_errors: boolean("shimReturnDelErrors")?,
        })
    }
}

impl ShimConf {
    /// `<daemonSocketDir>/multus.sock`, joined as `Path::join` joins.
    pub fn socket(&self) -> String {
        if self.socket_dir.ends_with('/') {
            format!("{}{SOCKET_FILE}", self.socket_dir)
        } else {
            format!("{}/{SOCKET_FILE}", self.socket_dir)
        }
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
pub fn not_ready(cmd: Command, socket: &str, waited: Duration, last: &ClientError) -> Error {
    unreachable_daemon(
        cmd,
        format!(
            "timed out waiting for the condition: multus-daemon did not answer {} on {} within {:?} (last error: {last})",
            HEALTH_ENDPOINT, socket, waited
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

/// What the shim does to the world: the socket, the clock and the log. Over std it is
/// [`StdIo`] (`client`, `logging`); the libc-free shim (`shim/`) brings its system calls.
pub trait Io {
    /// One request to the daemon's socket; `timeout` bounds the whole exchange.
    fn send(&self, socket: &str, endpoint: &str, body: &[u8], timeout: Option<Duration>) -> Result<Reply, ClientError>;
    fn sleep(&self, d: Duration);
    /// A monotonic clock.
    fn now(&self) -> Duration;
    /// Starts the log the config asks for (the first call wins).
    fn init_log(&self, conf: &ShimConf);
    fn error(&self, msg: &str);
    fn verbose(&self, msg: &str);
    /// `cni::validate::netns`: CNI_NETNS must be a network namespace (the one IO step of skel's
    /// validation).
    fn validate_netns(&self, cmd: Command, path: &str) -> Result<(), Error>;
}

/// One `/healthz` probe (upstream's shim POSTs `null`).
pub fn probe(io: &dyn Io, socket: &str, timeout: Duration) -> Result<(), ClientError> {
    let reply = io.send(socket, HEALTH_ENDPOINT, b"null", Some(timeout))?;
    if reply.status == 200 {
        Ok(())
    } else {
        Err(ClientError::Http(format!(
            "{HEALTH_ENDPOINT} answered {}: '{}'",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        )))
    }
}

/// Probes every `interval` until the daemon answers or `timeout` has passed (upstream's
/// `WaitUntilAPIReady`: 100 ms, 60 s). Returns the last failure.
pub fn wait_ready(io: &dyn Io, socket: &str, timeout: Duration, interval: Duration) -> Result<(), ClientError> {
    let start = io.now();
    loop {
        let elapsed = io.now().saturating_sub(start);
        let last = match probe(io, socket, timeout.saturating_sub(elapsed).max(interval)) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if io.now().saturating_sub(start) + interval > timeout {
            return Err(last);
        }
        io.sleep(interval);
    }
}

/// The shim as a skel plugin: `env` is the process environment it forwards, `io` what it does
/// to the world.
pub struct Shim<I: Io> {
    pub env: Vec<(String, String)>,
    pub io: I,
}

impl<I: Io> Shim<I> {
    fn call(&self, cmd: Command, args: &CmdArgs) -> Result<Option<Value>, Error> {
        let conf = ShimConf::parse(&args.stdin)?;
        self.io.init_log(&conf);
        let outcome = self.ask(cmd, &conf, args);
        match outcome {
            Err(e) if cmd == Command::Del && !conf.return_del_errors => {
                self.io.error(&format!("{e} (DEL reports success; set shimReturnDelErrors to return it)"));
                Ok(None)
            }
            Err(e) => {
                self.io.error(&e.to_string());
                Err(e)
            }
            Ok(v) => {
                if let Some(r) = &v {
                    self.io.verbose(&format!("{}: {r}", prefix(cmd)));
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
        let socket = conf.socket();
        let io = &self.io as &dyn Io;
        // Built again only in the rare case that the first connect failed.
        let body = || api::Request::from_process(self.env.iter().cloned(), &args.stdin).to_json();
        match io.send(&socket, CNI_ENDPOINT, &body(), None) {
            Err(ClientError::Connect { .. }) => {}
            reply => return interpret(cmd, conf, &args.stdin, reply),
        }
        let ready = if cmd == Command::Del {
            probe(io, &socket, conf.readiness_timeout.max(READINESS_POLL)).map_err(|e| (Duration::ZERO, e))
        } else {
            wait_ready(io, &socket, conf.readiness_timeout, READINESS_POLL).map_err(|e| (conf.readiness_timeout, e))
        };
        if let Err((waited, last)) = ready {
            return Err(not_ready(cmd, &socket, waited, &last));
        }
        let reply = io.send(&socket, CNI_ENDPOINT, &body(), None);
        interpret(cmd, conf, &args.stdin, reply)
    }
}

impl<I: Io> Plugin for Shim<I> {
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

    fn validate_netns(&self, cmd: Command, path: &str) -> Result<(), Error> {
        self.io.validate_netns(cmd, path)
    }
}

/// The shim over std: `client` for the socket, `logging` for the log.
#[cfg(not(multus_nostd))]
#[derive(Debug, Default)]
pub struct StdIo;

#[cfg(not(multus_nostd))]
impl Io for StdIo {
    fn send(&self, socket: &str, endpoint: &str, body: &[u8], timeout: Option<Duration>) -> Result<Reply, ClientError> {
        super::client::send(std::path::Path::new(socket), http::Method::POST, endpoint, body, timeout)
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }

    fn now(&self) -> Duration {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed()
    }

    fn init_log(&self, conf: &ShimConf) {
        crate::logging::init_with(
            &conf.log_file,
            &conf.log_level,
            conf.log_to_stderr,
            &crate::logging::LogOptions::default(),
        );
    }

    fn error(&self, msg: &str) {
        crate::logging::error(msg)
    }

    fn verbose(&self, msg: &str) {
        crate::logging::verbose(msg)
    }

    fn validate_netns(&self, cmd: Command, path: &str) -> Result<(), Error> {
        crate::cni::validate::netns(cmd, path)
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
                socket_dir: "/host/run/multus/".into(),
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
            ("/run/multus/".to_string(), DEFAULT_READINESS_TIMEOUT, false, false)
        );
        let e = ShimConf::parse(b"{").unwrap_err();
        assert_eq!(e.code(), 6);
        assert!(e.to_string().starts_with("invalid CNI configuration passed to multus-shim"), "{e}");
        assert!(ShimConf::parse(br#"{"daemonReadinessTimeoutSeconds":-1}"#).is_err());
        // Keys match as Go's encoding/json matches them (upstream's shim): any case, last wins.
        let g = ShimConf::parse(br#"{"DaemonSocketDir":"/a/","daemonsocketdir":"/b/","LogToStderr":true}"#).unwrap();
        assert_eq!((g.socket_dir, g.log_to_stderr), ("/b/".to_string(), true));
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

    /// The shim's world as a script: replies in order, a clock that moves only when the shim
    /// sleeps, and what it sent and logged.
    #[derive(Default)]
    struct FakeIo {
        replies: core::cell::RefCell<alloc::collections::VecDeque<Result<Reply, ClientError>>>,
        sent: core::cell::RefCell<Vec<String>>,
        logged: core::cell::RefCell<Vec<String>>,
        clock: core::cell::Cell<Duration>,
    }

    impl Io for FakeIo {
        fn send(&self, socket: &str, endpoint: &str, _: &[u8], _: Option<Duration>) -> Result<Reply, ClientError> {
            self.sent.borrow_mut().push(format!("{socket} {endpoint}"));
            self.replies.borrow_mut().pop_front().expect("a scripted reply")
        }
        fn sleep(&self, d: Duration) {
            self.clock.set(self.clock.get() + d);
        }
        fn now(&self) -> Duration {
            self.clock.get()
        }
        fn init_log(&self, _: &ShimConf) {}
        fn error(&self, msg: &str) {
            self.logged.borrow_mut().push(msg.to_string());
        }
        fn verbose(&self, _: &str) {}
        fn validate_netns(&self, _: Command, _: &str) -> Result<(), Error> {
            Ok(())
        }
    }

    #[cfg(not(multus_nostd))]
    fn refused() -> ClientError {
        ClientError::Connect { path: "/s/multus.sock".into(), source: std::io::ErrorKind::NotFound.into() }
    }

    #[cfg(multus_nostd)]
    fn refused() -> ClientError {
        ClientError::Connect { path: "/s/multus.sock".into(), source: crate::sys::Errno(2) }
    }

    fn shim(replies: Vec<Result<Reply, ClientError>>) -> Shim<FakeIo> {
        let io = FakeIo { replies: core::cell::RefCell::new(replies.into()), ..FakeIo::default() };
        Shim { env: vec![("CNI_COMMAND".into(), "ADD".into())], io }
    }

    fn args(conf: &str) -> CmdArgs {
        CmdArgs { stdin: conf.as_bytes().to_vec(), ..CmdArgs::default() }
    }

    /// Connect refused: nothing was sent, so the shim waits for `/healthz` (every 100 ms) and sends
    /// the same request again; a running daemon gets no probe.
    #[test]
    fn a_late_daemon_is_waited_for_and_a_running_one_is_not_probed() {
        let ok = || Ok(Reply { status: 200, body: ADD_RESPONSE.trim().as_bytes().to_vec() });
        let healthy = || Ok(Reply { status: 200, body: Vec::new() });
        let late = shim(vec![Err(refused()), Err(refused()), Err(refused()), healthy(), ok()]);
        let conf = r#"{"cniVersion":"1.0.0","daemonSocketDir":"/s"}"#;
        let v = late.add(&args(conf)).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(
            *late.io.sent.borrow(),
            [
                "/s/multus.sock /cni",
                "/s/multus.sock /healthz",
                "/s/multus.sock /healthz",
                "/s/multus.sock /healthz",
                "/s/multus.sock /cni"
            ]
        );
        assert_eq!(late.io.clock.get(), READINESS_POLL * 2);
        let running = shim(vec![ok()]);
        running.add(&args(conf)).unwrap();
        assert_eq!(*running.io.sent.borrow(), ["/s/multus.sock /cni"]);
    }

    /// A daemon that never comes: ADD fails with code 11 after the timeout; DEL probes once and,
    /// by upstream's policy, reports success (logging why) unless `shimReturnDelErrors` is set.
    #[test]
    fn a_missing_daemon_fails_add_and_del_follows_the_del_policy() {
        let gone = || (0..40).map(|_| Err(refused())).collect::<Vec<_>>();
        let add = shim(gone());
        let e = add.add(&args(r#"{"cniVersion":"1.0.0","daemonReadinessTimeoutSeconds":1}"#)).unwrap_err().to_cni();
        assert_eq!(e.code, 11);
        assert!(e.msg.contains("did not answer /healthz on /run/multus/multus.sock within 1s"), "{}", e.msg);
        assert_eq!(add.io.sent.borrow().len(), 1 + 11, "one /cni, then probes at 0, 0.1, ..., 1.0 s");
        let del = shim(gone());
        del.del(&args(r#"{"cniVersion":"1.0.0"}"#)).unwrap();
        assert_eq!(del.io.sent.borrow().len(), 2, "one /cni, one probe");
        assert!(del.io.logged.borrow()[0].contains("DEL reports success"), "{:?}", del.io.logged.borrow());
        let strict = shim(gone());
        let e = strict.del(&args(r#"{"cniVersion":"1.0.0","shimReturnDelErrors":true}"#)).unwrap_err();
        assert_eq!(e.code(), 11);
    }
}
