//! The one validation step every command passes before anything touches the node: the thin
//! plugin and the shim (through `skel`), and the daemon's `/cni` and `/delegate` (through
//! `thick::request`). Container IDs, interface names and the pod identity in CNI_ARGS become
//! file names, netlink names and API paths later; nothing is read, written or deleted before they
//! pass. A refusal is a CNI error with code 4 (invalid environment) that quotes the value.
//!
//! [`invocation`] is pure; [`netns`] and [`open_netns`] (which `netns::run_in` uses to enter a
//! namespace) look at the file system, without ever blocking.

#[cfg(not(multus_nostd))]
use std::ffi::CString;
#[cfg(not(multus_nostd))]
use std::io;
#[cfg(not(multus_nostd))]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::error::{CniError, Error, code};
use super::skel::Command;
use crate::prelude::*;

/// The longest container ID accepted: one file-name component (NAME_MAX).
pub const MAX_CONTAINER_ID_LEN: usize = 255;
/// The longest pod namespace, name, UID or infra container ID accepted (a DNS-1123 subdomain).
pub const MAX_K8S_VALUE_LEN: usize = 253;
/// The CNI_ARGS keys that name the pod; each becomes part of an API path or a cache key.
pub const K8S_KEYS: [&str; 4] = ["K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_UID", "K8S_POD_INFRA_CONTAINER_ID"];
/// The longest CNI_ARGS accepted.
pub const MAX_CNI_ARGS_LEN: usize = 64 * 1024;

/// The kernel's limit for interface names (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// libcni's network-name rule, which also makes the name safe as one path component.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// libcni `ValidateInterfaceName`.
pub fn validate_interface_name(ifname: &str) -> Result<(), Error> {
    if ifname.is_empty() {
        return Err(libcni(code::INVALID_ENV, "interface name is empty", ""));
    }
    if ifname.len() > MAX_IFNAME_LEN {
        return Err(libcni(
            code::INVALID_ENV,
            "interface name is too long",
            &format!("interface name should be less than {} characters", MAX_IFNAME_LEN + 1),
        ));
    }
    if ifname == "." || ifname == ".." {
        return Err(libcni(code::INVALID_ENV, "interface name is . or ..", ""));
    }
    if ifname.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(libcni(code::INVALID_ENV, "interface name contains / or : or whitespace characters", ""));
    }
    Ok(())
}

fn libcni(code: u32, msg: &str, details: &str) -> Error {
    Error::Cni(CniError::new(code, msg, details))
}

/// The first 32 bytes (or fewer, on a character boundary) of a value too long to quote whole.
fn head(s: &str) -> &str {
    let mut end = s.len().min(32);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn refused(what: &str, value: &str, rule: &str) -> Error {
    Error::Cni(CniError::new(code::INVALID_ENV, format!("invalid {what} {value:?}"), rule))
}

/// The per-container values of a command (libcni's rules, plus the pod identity):
/// - CNI_CONTAINERID (ADD, DEL, CHECK): `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, at most 255 bytes;
/// - CNI_IFNAME (ADD, DEL, CHECK): libcni `ValidateInterfaceName`;
/// - CNI_ARGS: at most 64 KiB; `K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_UID` and
///   `K8S_POD_INFRA_CONTAINER_ID`, when set, follow the container ID rule within 253 bytes
///   (Kubernetes names and UIDs, and podman's container names, all do).
///
/// GC and STATUS carry no container, so only CNI_ARGS is checked for them.
pub fn invocation(cmd: Command, container_id: &str, ifname: &str, args: &[(String, String)]) -> Result<(), Error> {
    if matches!(cmd, Command::Add | Command::Del | Command::Check) {
        container(container_id)?;
        validate_interface_name(ifname).map_err(|e| {
            let libcni = e.to_cni();
            Error::Cni(CniError::new(libcni.code, format!("{} (CNI_IFNAME {ifname:?})", libcni.msg), libcni.details))
        })?;
    }
    for (key, value) in args {
        if K8S_KEYS.contains(&key.as_str()) && !value.is_empty() {
            k8s_value(key, value)?;
        }
    }
    Ok(())
}

/// CNI_CONTAINERID by libcni's rule, within one file-name component.
pub fn container(id: &str) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::Cni(CniError::new(code::UNKNOWN_CONTAINER, "missing containerID", "")));
    }
    if id.len() > MAX_CONTAINER_ID_LEN {
        return Err(refused("containerID", head(id), &format!("longer than {MAX_CONTAINER_ID_LEN} bytes")));
    }
    if !valid_name(id) {
        return Err(refused("containerID", id, "must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"));
    }
    Ok(())
}

/// One pod-identity value of CNI_ARGS.
pub fn k8s_value(key: &str, value: &str) -> Result<(), Error> {
    if value.len() > MAX_K8S_VALUE_LEN {
        return Err(refused(key, head(value), &format!("longer than {MAX_K8S_VALUE_LEN} bytes")));
    }
    if !valid_name(value) {
        return Err(refused(key, value, "must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"));
    }
    Ok(())
}

/// The raw CNI_ARGS string's size.
pub fn cni_args(raw: &str) -> Result<(), Error> {
    if raw.len() > MAX_CNI_ARGS_LEN {
        return Err(Error::Cni(CniError::new(
            code::INVALID_ENV,
            format!("CNI_ARGS is {} bytes, more than {MAX_CNI_ARGS_LEN}", raw.len()),
            "",
        )));
    }
    Ok(())
}

#[cfg(not(multus_nostd))]
/// CNI_NETNS must name a network namespace ([`open_netns`]: nsfs, never a blocking open). ADD and
/// CHECK need one; DEL accepts an empty or vanished path (the pod's namespace may be gone) but
/// never an existing file that is not a network namespace.
pub fn netns(cmd: Command, path: &str) -> Result<(), Error> {
    match cmd {
        Command::Add | Command::Check => open_netns(path).map(drop),
        Command::Del if !path.is_empty() => match open_netns(path) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other.map(drop),
        },
        _ => Ok(()),
    }
}

#[cfg(not(multus_nostd))]
/// `statfs.f_type` of the namespace file system.
const NSFS_MAGIC: libc::c_long = 0x6e73_6673;
#[cfg(not(multus_nostd))]
/// `statfs.f_type` of procfs, where kernels before 3.19 put namespace files.
const PROC_SUPER_MAGIC: libc::c_long = 0x9fa0;

#[cfg(not(multus_nostd))]
/// Opens the network namespace at `path` without ever blocking, or says why it is none: the path
/// is first opened with `O_PATH` (which opens no FIFO, device or socket) and must be on nsfs, then
/// opened for `setns` with `O_NONBLOCK | O_NOCTTY` and checked again (the path may have been
/// swapped in between). A FIFO named as CNI_NETNS used to block its command forever.
pub fn open_netns(path: &str) -> Result<OwnedFd, Error> {
    let not_a_netns = |why: String| Error::InvalidEnv(format!("CNI_NETNS {path:?} is not a network namespace: {why}"));
    let c = CString::new(path).map_err(|_| not_a_netns("it contains a NUL byte".into()))?;
    let checked_open = |flags: libc::c_int| -> Result<OwnedFd, Error> {
        // SAFETY: a NUL-terminated path; the returned fd is owned below.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(Error::io("failed to open netns", path, io::Error::last_os_error()));
        }
        // SAFETY: a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: zeroed statfs is a valid out-parameter; fstatfs only writes into it.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(Error::io("failed to stat netns", path, io::Error::last_os_error()));
        }
        // Kernels before 3.19 show namespace files on procfs (upstream's `ns.IsNSorErr` accepts both).
        let fs = st.f_type as libc::c_long;
        if fs != NSFS_MAGIC && fs != PROC_SUPER_MAGIC {
            return Err(not_a_netns(format!("it is on a file system of type {:#x}, not nsfs", st.f_type)));
        }
        Ok(fd)
    };
    checked_open(libc::O_PATH)?;
    let fd = checked_open(libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY)?;
    // NS_GET_NSTYPE (Linux 4.11): nsfs holds every kind of namespace; only a network one will do.
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: an ioctl without arguments on our fd.
    let kind = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    if kind >= 0 && kind != libc::CLONE_NEWNET {
        return Err(not_a_netns(format!("it is a namespace of another kind ({kind:#x})")));
    }
    Ok(fd)
}

#[cfg(all(test, not(multus_nostd)))]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn container_ids_that_would_be_paths_are_refused() {
        for bad in ["/etc/passwd", "../../../../x", "a/b", ".", "..", "-x", "a b", "a\0b", "é"] {
            let e = invocation(Command::Add, bad, "eth0", &[]).unwrap_err();
            assert_eq!(e.code(), code::INVALID_ENV, "{bad:?}");
            assert!(e.to_cni().msg.contains(&format!("{bad:?}")), "the value is quoted: {e}");
        }
        assert_eq!(invocation(Command::Del, "", "eth0", &[]).unwrap_err().code(), code::UNKNOWN_CONTAINER);
        assert!(invocation(Command::Add, &"a".repeat(256), "eth0", &[]).is_err());
        assert!(invocation(Command::Add, &"a".repeat(255), "eth0", &[]).is_ok());
        assert!(invocation(Command::Check, "0123abc_x.y-z", "net1", &[]).is_ok());
        // GC and STATUS have no container.
        assert!(invocation(Command::Gc, "", "", &[]).is_ok());
        assert!(invocation(Command::Status, "", "", &[]).is_ok());
    }

    #[test]
    fn interface_names_follow_libcni() {
        for bad in ["", ".", "..", "a/b", "a b", "sixteen-chars-xx", "a:b"] {
            assert_eq!(invocation(Command::Add, "c", bad, &[]).unwrap_err().code(), code::INVALID_ENV, "{bad:?}");
        }
    }

    #[test]
    fn pod_identity_in_cni_args() {
        let ok = args(&[
            ("IgnoreUnknown", "1"),
            ("K8S_POD_NAMESPACE", "kube-system"),
            ("K8S_POD_NAME", "coredns-5d78c9869d-abcde"),
            ("K8S_POD_UID", "0f8d0e6a-4a2b-4f4e-9a61-3b0c2d1e5f6a"),
            ("K8S_POD_INFRA_CONTAINER_ID", "c1"),
            ("OTHER", "any/thing"),
        ]);
        assert!(invocation(Command::Add, "c1", "eth0", &ok).is_ok());
        for key in K8S_KEYS {
            for bad in ["../secrets", "a/b", "x?y", &"n".repeat(254)] {
                let e = invocation(Command::Add, "c1", "eth0", &args(&[(key, bad)])).unwrap_err();
                assert_eq!(e.code(), code::INVALID_ENV, "{key}={bad}");
                assert!(e.to_cni().msg.contains(key), "{e}");
            }
        }
        assert!(cni_args(&"a".repeat(MAX_CNI_ARGS_LEN + 1)).is_err());
        assert!(cni_args("K8S_POD_NAME=x").is_ok());
    }

    #[test]
    fn netns_must_be_a_network_namespace() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("file");
        std::fs::write(&file, "").unwrap();
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Telling a UTS namespace from a network one takes NS_GET_NSTYPE (Linux 4.11); qemu-user does
        // not pass that ioctl on (the 32-bit arm unit tests run under it), and open_netns then accepts
        // any namespace, as it must on old kernels.
        let net = std::fs::File::open("/proc/self/ns/net").unwrap();
        // SAFETY: an ioctl without arguments on an fd we own.
        let kinds_known = unsafe { libc::ioctl(net.as_raw_fd(), 0xb703 as _) } == libc::CLONE_NEWNET;
        let uts = if kinds_known { "/proc/self/ns/uts" } else { "/" };
        for path in [file.to_str().unwrap(), fifo.to_str().unwrap(), uts, "/dev/null", "/"] {
            for cmd in [Command::Add, Command::Check, Command::Del] {
                let e = netns(cmd, path).unwrap_err();
                assert_eq!(e.code(), code::INVALID_ENV, "{cmd:?} {path}: {e}");
                assert!(e.to_string().contains("not a network namespace"), "{e}");
            }
        }
        assert!(netns(Command::Add, "/proc/self/ns/net").is_ok());
        let missing = d.path().join("gone");
        assert!(netns(Command::Add, missing.to_str().unwrap()).is_err());
        assert!(netns(Command::Del, missing.to_str().unwrap()).is_ok());
        assert!(netns(Command::Del, "").is_ok());
        assert!(netns(Command::Gc, "/dev/null").is_ok());
    }
}
