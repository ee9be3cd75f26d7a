//! The plugin side of CNI for our own binaries (Go's `skel`): read the CNI_* environment and the
//! config from stdin, negotiate the version, dispatch to the command, print the result or a CNI
//! error object on stdout and return the exit code.
//!
//! IO is passed in (environment lookup, stdin bytes, stdout/stderr buffers), so the whole protocol
//! is testable as a plain function; [`plugin_main`] is the process around it (the libc-free shim
//! has its own).

use serde_json::Value;

use super::error::{CniError, Error, code};
use super::version::{self, Version, VersionInfo};
use crate::prelude::*;

/// The commands of the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }
}

/// What a plugin invocation carries (Go's `skel.CmdArgs`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CmdArgs {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    /// Raw CNI_ARGS (`k=v;k=v`).
    pub args: String,
    pub path: String,
    pub stdin: Vec<u8>,
}

impl CmdArgs {
    /// CNI_ARGS as pairs; entries without `=` are dropped.
    pub fn args_pairs(&self) -> Vec<(String, String)> {
        parse_cni_args(&self.args)
    }
}

/// Parses `k=v;k=v` (CNI_ARGS).
pub fn parse_cni_args(s: &str) -> Vec<(String, String)> {
    s.split(';')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// A plugin's command handlers. ADD returns the result document to print.
pub trait Plugin {
    fn add(&self, args: &CmdArgs) -> Result<Value, Error>;
    fn del(&self, args: &CmdArgs) -> Result<(), Error>;
    fn check(&self, args: &CmdArgs) -> Result<(), Error>;
    fn gc(&self, _args: &CmdArgs) -> Result<(), Error> {
        Ok(())
    }
    fn status(&self, _args: &CmdArgs) -> Result<(), Error> {
        Ok(())
    }
    /// Refuses a CNI_NETNS that is not a network namespace (`validate::netns`, the one IO step
    /// of the validation); runs before any handler.
    #[cfg(not(multus_nostd))]
    fn validate_netns(&self, cmd: Command, path: &str) -> Result<(), Error> {
        super::validate::netns(cmd, path)
    }
    /// Without std the plugin brings its own (the libc-free shim's system calls).
    #[cfg(multus_nostd)]
    fn validate_netns(&self, cmd: Command, path: &str) -> Result<(), Error>;
}

/// Which variables each command requires (Go skel's `reqForCmd`).
fn required(var: &str, cmd: Command) -> bool {
    use Command::*;
    match var {
        "CNI_CONTAINERID" | "CNI_IFNAME" => matches!(cmd, Add | Del | Check),
        "CNI_NETNS" => matches!(cmd, Add | Check),
        "CNI_PATH" => matches!(cmd, Add | Del | Check | Gc),
        _ => false,
    }
}

/// Runs one invocation: what to print goes into `stdout` and `stderr`. Returns the process exit
/// code (0 success, 1 failure).
pub fn run(
    plugin: &dyn Plugin,
    about: &str,
    supported: &[&str],
    getenv: &dyn Fn(&str) -> Option<String>,
    stdin: &[u8],
    stdout: &mut Vec<u8>,
    stderr: &mut Vec<u8>,
) -> i32 {
    let raw_cmd = getenv("CNI_COMMAND").unwrap_or_default();
    if raw_cmd.is_empty() {
        line(stderr, about);
        line(stderr, &format!("CNI protocol versions supported: {}", supported.join(", ")));
        return 0;
    }
    match dispatch(plugin, &raw_cmd, supported, getenv, stdin, stdout) {
        Ok(()) => 0,
        Err(mut e) => {
            // In the version of the config the runtime gave us, also for a delegate's own object.
            e.cni_version = Some(error_version(stdin));
            line(stdout, &e.to_json());
            1
        }
    }
}

fn line(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
}

/// The `cniVersion` an error object carries: the config's, else the newest we speak (the
/// config could not be read).
fn error_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|c| c.get("cniVersion").and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_string))
        .unwrap_or_else(|| version::CURRENT.to_string())
}

fn dispatch(
    plugin: &dyn Plugin,
    raw_cmd: &str,
    supported: &[&str],
    getenv: &dyn Fn(&str) -> Option<String>,
    stdin: &[u8],
    stdout: &mut Vec<u8>,
) -> Result<(), CniError> {
    let cmd = Command::parse(raw_cmd)
        .ok_or_else(|| CniError::new(code::INVALID_ENV, format!("unknown CNI_COMMAND: {raw_cmd}"), ""))?;
    let get = |k: &str| getenv(k).unwrap_or_default();
    let missing: Vec<&str> = ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
        .into_iter()
        .filter(|v| required(v, cmd) && get(v).is_empty())
        .collect();
    if !missing.is_empty() {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!("required env variables [{}] missing", missing.join(" ")),
            "",
        ));
    }
    if cmd != Command::Version {
        let to_cni = |e: Error| e.to_cni();
        let raw_args = get("CNI_ARGS");
        super::validate::cni_args(&raw_args).map_err(to_cni)?;
        super::validate::invocation(cmd, &get("CNI_CONTAINERID"), &get("CNI_IFNAME"), &parse_cni_args(&raw_args))
            .map_err(to_cni)?;
        plugin.validate_netns(cmd, &get("CNI_NETNS")).map_err(to_cni)?;
    }
    if cmd == Command::Version {
        let info = VersionInfo {
            cni_version: version::CURRENT.into(),
            supported_versions: supported.iter().map(|s| s.to_string()).collect(),
        };
        return print(stdout, &serde_json::to_value(info).expect("version info serializes"));
    }
    let conf: Value = serde_json::from_slice(stdin)
        .map_err(|e| CniError::new(code::DECODING_FAILURE, format!("error unmarshall network config: {e}"), ""))?;
    let conf_version = conf.get("cniVersion").and_then(Value::as_str).unwrap_or("");
    let v = version::reconcile(conf_version, supported)?;
    let needs = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(CniError::new(code::INCOMPATIBLE_VERSION, format!("config version does not allow {what}"), ""))
        }
    };
    let args = CmdArgs {
        container_id: get("CNI_CONTAINERID"),
        netns: get("CNI_NETNS"),
        ifname: get("CNI_IFNAME"),
        args: get("CNI_ARGS"),
        path: get("CNI_PATH"),
        stdin: stdin.to_vec(),
    };
    let to_cni = |e: Error| e.to_cni();
    match cmd {
        Command::Add => print(stdout, &plugin.add(&args).map_err(to_cni)?),
        Command::Del => plugin.del(&args).map_err(to_cni),
        Command::Check => {
            needs(v.supports_check(), "CHECK")?;
            plugin.check(&args).map_err(to_cni)
        }
        Command::Gc => {
            needs(v.supports_gc_status(), "GC")?;
            plugin.gc(&args).map_err(to_cni)
        }
        Command::Status => {
            needs(v.supports_gc_status(), "STATUS")?;
            plugin.status(&args).map_err(to_cni)
        }
        Command::Version => unreachable!("handled above"),
    }
}

fn print(stdout: &mut Vec<u8>, v: &Value) -> Result<(), CniError> {
    line(stdout, &v.to_string());
    Ok(())
}

/// What a plugin binary needs from process start-up when it skips std's runtime
/// (`#![no_main]`, see `src/bin/multus.rs`); [`plugin_main`] does it first. std's start-up reads
/// /proc/self/maps to find the main thread's stack guard and installs stack-overflow handlers:
/// about 0.1 ms of every exec (a minimal static binary: 0.68 vs 0.79 ms spawn to exit), which a
/// runtime pays per pod and command. A plugin keeps the two steps that matter to it:
/// - fds 0-2 are open (else the first file we open would become stdout and get the result);
/// - SIGPIPE is ignored (a delegate that exits without reading its config must not kill us;
///   children get the default back, as std's spawn resets it).
///
/// Harmless where std's runtime did start (both already hold).
#[cfg(not(multus_nostd))]
fn prepare_process() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd { fd, events: 0, revents: 0 });
    // SAFETY: three valid pollfd structs; a zero timeout only reports which fds are closed.
    while unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } < 0 {
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // Cannot tell which fds are open; std aborts here too.
            std::process::abort();
        }
    }
    for p in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
        // SAFETY: open(2) with a constant path; the lowest free fd is the closed one.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if fd != p.fd {
            std::process::abort();
        }
    }
    // SAFETY: setting a signal's disposition to SIG_IGN has no other effect.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

#[cfg(not(multus_nostd))]
/// The process-level entry point: real env, stdin and stdout; exits with the code.
/// `-v`/`--version` on the command line prints the build's version line instead.
pub fn plugin_main(plugin: &dyn Plugin, bin: &str, supported: &[&str]) -> ! {
    use std::io::Write;
    prepare_process();
    let argv: Vec<String> = std::env::args().collect();
    if crate::build_info::wants_version(&argv) {
        println!("{}", crate::build_info::version_line(bin));
        std::process::exit(0);
    }
    let about = format!("CNI {bin} plugin {}", crate::build_info::VERSION);
    let mut stdin = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut stdin);
    let getenv = |k: &str| std::env::var(k).ok();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(plugin, &about, supported, &getenv, &stdin, &mut out, &mut err);
    let _ = std::io::stderr().write_all(&err);
    let mut stdout = std::io::stdout().lock();
    // A result the runtime cannot read is a failed command.
    let printed = stdout.write_all(&out).and_then(|()| stdout.flush());
    std::process::exit(if printed.is_err() { 1 } else { code })
}

/// An empty, spec-correct result for `version` (0.1.0/0.2.0 allow a result with no IP).
pub fn empty_result(version_str: &str) -> Result<Value, Error> {
    let v = Version::parse(version_str)?;
    if v.layout() == version::Layout::V02 {
        return Ok(serde_json::json!({"cniVersion": version_str, "dns": {}}));
    }
    super::result::CniResult::default().to_value(version_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Echo;
    impl Plugin for Echo {
        fn add(&self, a: &CmdArgs) -> Result<Value, Error> {
            Ok(serde_json::json!({"ifname": a.ifname}))
        }
        fn del(&self, _: &CmdArgs) -> Result<(), Error> {
            Err(Error::Cni(CniError::new(11, "try later", "")))
        }
        fn check(&self, _: &CmdArgs) -> Result<(), Error> {
            Ok(())
        }
        fn validate_netns(&self, _: Command, _: &str) -> Result<(), Error> {
            Ok(())
        }
    }

    fn call(env: &[(&str, &str)], stdin: &str) -> (i32, String, String) {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let rc = run(&Echo, "about echo", version::ALL, &|k| env.get(k).cloned(), stdin.as_bytes(), &mut out, &mut err);
        (rc, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    const FULL: &[(&str, &str)] =
        &[("CNI_CONTAINERID", "c1"), ("CNI_NETNS", "/run/netns/x"), ("CNI_IFNAME", "eth0"), ("CNI_PATH", "/x")];

    fn with(cmd: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut v = FULL.to_vec();
        v.push(("CNI_COMMAND", cmd));
        v
    }

    #[test]
    fn about_without_command() {
        let (rc, out, err) = call(&[], "");
        assert_eq!((rc, out.as_str()), (0, ""));
        assert!(err.starts_with("about echo\nCNI protocol versions supported: 0.1.0, 0.2.0"));
    }

    #[test]
    fn protocol_errors() {
        assert_eq!(
            call(&[("CNI_COMMAND", "FOO")], "{}"),
            (1, "{\"cniVersion\":\"1.1.0\",\"code\":4,\"msg\":\"unknown CNI_COMMAND: FOO\"}\n".into(), "".into())
        );
        let (rc, out, _) =
            call(&[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c"), ("CNI_IFNAME", "e"), ("CNI_PATH", "/")], "{}");
        assert_eq!(
            (rc, out.as_str()),
            (1, "{\"cniVersion\":\"1.1.0\",\"code\":4,\"msg\":\"required env variables [CNI_NETNS] missing\"}\n")
        );
        let (rc, out, _) = call(&with("ADD"), "{");
        assert_eq!(rc, 1);
        assert!(
            out.starts_with("{\"cniVersion\":\"1.1.0\",\"code\":6,\"msg\":\"error unmarshall network config:"),
            "{out}"
        );
        let (_, out, _) = call(&with("ADD"), r#"{"cniVersion":"9.9.9"}"#);
        let e: CniError = serde_json::from_str(&out).unwrap();
        assert_eq!((e.code, e.msg.as_str()), (1, "incompatible CNI versions"));
        let (_, out, _) = call(&with("CHECK"), r#"{"cniVersion":"0.3.1"}"#);
        assert_eq!(out, "{\"cniVersion\":\"0.3.1\",\"code\":1,\"msg\":\"config version does not allow CHECK\"}\n");
        let (_, out, _) = call(&with("GC"), r#"{"cniVersion":"1.0.0"}"#);
        assert_eq!(out, "{\"cniVersion\":\"1.0.0\",\"code\":1,\"msg\":\"config version does not allow GC\"}\n");
    }

    #[test]
    fn refuses_unsafe_identifiers_before_the_handler_runs() {
        let mut env = with("ADD");
        env.retain(|(k, _)| *k != "CNI_CONTAINERID");
        env.push(("CNI_CONTAINERID", "/etc/passwd"));
        let (rc, out, _) = call(&env, r#"{"cniVersion":"0.4.0"}"#);
        assert_eq!(rc, 1);
        let e: CniError = serde_json::from_str(&out).unwrap();
        assert_eq!((e.code, e.cni_version.as_deref()), (4, Some("0.4.0")), "{out}");
        assert!(e.msg.contains("\"/etc/passwd\""), "{out}");
        let mut env = with("DEL");
        env.push(("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=../../x"));
        let (rc, out, _) = call(&env, r#"{"cniVersion":"1.0.0"}"#);
        assert_eq!(rc, 1);
        assert!(out.contains("K8S_POD_NAME") && out.contains("\"cniVersion\":\"1.0.0\""), "{out}");
    }

    #[test]
    fn dispatches() {
        assert_eq!(call(&with("ADD"), r#"{"cniVersion":"1.0.0"}"#), (0, "{\"ifname\":\"eth0\"}\n".into(), "".into()));
        assert_eq!(
            call(&with("DEL"), r#"{"cniVersion":"1.0.0"}"#).1,
            "{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"try later\"}\n"
        );
        assert_eq!(call(&[("CNI_COMMAND", "STATUS")], r#"{"cniVersion":"1.1.0"}"#).0, 0);
        let (rc, out, _) = call(&[("CNI_COMMAND", "VERSION")], "");
        assert_eq!(rc, 0);
        assert_eq!(serde_json::from_str::<VersionInfo>(&out).unwrap(), VersionInfo::ours());
    }

    #[test]
    fn cni_args() {
        assert_eq!(
            parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=p;bad"),
            vec![("IgnoreUnknown".to_string(), "1".to_string()), ("K8S_POD_NAME".to_string(), "p".to_string())]
        );
    }

    #[test]
    fn empty_results() {
        assert_eq!(empty_result("0.2.0").unwrap(), serde_json::json!({"cniVersion":"0.2.0","dns":{}}));
        assert_eq!(empty_result("0.4.0").unwrap(), serde_json::json!({"cniVersion":"0.4.0","dns":{}}));
        assert_eq!(empty_result("1.1.0").unwrap(), serde_json::json!({"cniVersion":"1.1.0","dns":{}}));
    }
}
