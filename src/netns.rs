//! Network namespaces and the little rtnetlink multus needs: run a closure inside a namespace
//! (the calling thread enters and always returns), look up links, and
//! list, delete and add default routes. A netlink socket belongs to the namespace it was opened
//! in, so every function below runs inside [`run_in`].

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::cni::error::Error;

/// Runs `f` with the calling thread inside the network namespace at `path`, then moves the
/// thread back. A network namespace is per thread, so other threads never notice; `f` is
/// synchronous, so nothing else runs on this thread meanwhile. No helper thread is started: a
/// thread costs more than the whole lookup it would host, and the thin plugin does one per ADD.
/// If the thread cannot return to its namespace the process aborts: carrying on in the pod's
/// namespace would be worse than any error.
pub fn run_in<T>(path: &str, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    let target = crate::cni::validate::open_netns(path)?;
    // thread-self resolves in the pid namespace of this /proc, also inside a container.
    let home_path = "/proc/thread-self/ns/net";
    let home = File::open(home_path).map_err(|e| Error::io("failed to open the current netns", home_path, e))?;
    // SAFETY: a valid namespace fd; setns changes only this thread.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(Error::io("failed to enter netns", path, io::Error::last_os_error()));
    }
    let _back = Return(home);
    f()
}

/// Moves the thread back to its own namespace when dropped (also while unwinding).
struct Return(File);

impl Drop for Return {
    fn drop(&mut self) {
        // SAFETY: a valid namespace fd; setns changes only this thread.
        if unsafe { libc::setns(self.0.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            eprintln!("cannot return to the original network namespace: {}", io::Error::last_os_error());
            std::process::abort();
        }
    }
}

/// The index of link `name` in the current namespace, if it exists.
pub fn link_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: a NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u32 = 254;

/// A route as the kernel reported it (enough to delete it again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub family: u8,
    pub dst_len: u8,
    pub tos: u8,
    pub table: u32,
    pub protocol: u8,
    pub scope: u8,
    pub kind: u8,
    pub dst: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub priority: Option<u32>,
}

impl Route {
    pub fn is_default(&self) -> bool {
        self.dst_len == 0
    }
}

struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(align4(buf.len()), 0);
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn ip_from(family: u8, b: &[u8]) -> Option<IpAddr> {
    match (family as i32, b.len()) {
        (libc::AF_INET, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        (libc::AF_INET6, 16) => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

impl Netlink {
    fn open() -> io::Result<Netlink> {
        // SAFETY: plain socket syscalls; the fd is owned below.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // The kernel answers at once; a missing answer must fail the call, not hang the pod.
        let tv = libc::timeval { tv_sec: 10, tv_usec: 0 };
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Netlink { fd, seq: 1 })
    }

    /// Sends one request and collects the replies: every message of a dump, or the ACK.
    fn request(&mut self, kind: u16, flags: u16, payload: &[u8]) -> io::Result<Vec<(u16, Vec<u8>)>> {
        self.seq += 1;
        let mut msg = Vec::with_capacity(16 + payload.len());
        msg.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(payload);
        // SAFETY: sending an initialised buffer.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr() as *const _, msg.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        // Only GET requests are dumps (NLM_F_DUMP's bits double as NLM_F_EXCL on NEW requests).
        let dump = kind == libc::RTM_GETROUTE;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: receiving into an owned buffer of the given length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr() as *mut _, buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut off = 0;
            let n = n as usize;
            while off + 16 <= n {
                let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
                let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
                let seq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap());
                if len < 16 || off + len > n {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated netlink message"));
                }
                let body = &buf[off + 16..off + len];
                off += align4(len);
                if seq != self.seq {
                    continue;
                }
                match ty as i32 {
                    libc::NLMSG_DONE => return Ok(out),
                    libc::NLMSG_ERROR => {
                        let err = i32::from_ne_bytes(body[..4].try_into().unwrap());
                        if err != 0 {
                            return Err(io::Error::from_raw_os_error(-err));
                        }
                        if !dump {
                            return Ok(out);
                        }
                    }
                    _ => out.push((ty, body.to_vec())),
                }
            }
        }
    }
}

fn rtmsg(family: u8, dst_len: u8, tos: u8, table: u8, protocol: u8, scope: u8, kind: u8) -> Vec<u8> {
    let mut b = vec![family, dst_len, 0, tos, table, protocol, scope, kind];
    b.extend_from_slice(&0u32.to_ne_bytes());
    b
}

fn parse_route(body: &[u8]) -> Option<Route> {
    if body.len() < 12 {
        return None;
    }
    let mut r = Route {
        family: body[0],
        dst_len: body[1],
        tos: body[3],
        table: body[4] as u32,
        protocol: body[5],
        scope: body[6],
        kind: body[7],
        dst: None,
        gateway: None,
        oif: None,
        priority: None,
    };
    let mut off = 12;
    while off + 4 <= body.len() {
        let len = u16::from_ne_bytes(body[off..off + 2].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(body[off + 2..off + 4].try_into().ok()?);
        if len < 4 || off + len > body.len() {
            break;
        }
        let data = &body[off + 4..off + len];
        let u32_of = |d: &[u8]| d.get(..4).map(|b| u32::from_ne_bytes(b.try_into().unwrap()));
        match kind {
            RTA_DST => r.dst = ip_from(r.family, data),
            RTA_GATEWAY => r.gateway = ip_from(r.family, data),
            RTA_OIF => r.oif = u32_of(data),
            RTA_PRIORITY => r.priority = u32_of(data),
            RTA_TABLE => r.table = u32_of(data).unwrap_or(r.table),
            _ => {}
        }
        off += align4(len);
    }
    Some(r)
}

/// Every IPv4 and IPv6 route of the main table in the current namespace.
pub fn routes() -> io::Result<Vec<Route>> {
    let mut nl = Netlink::open()?;
    let mut out = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        let replies = nl.request(libc::RTM_GETROUTE, libc::NLM_F_DUMP as u16, &rtmsg(family, 0, 0, 0, 0, 0, 0))?;
        out.extend(
            replies
                .into_iter()
                .filter(|(ty, _)| *ty == libc::RTM_NEWROUTE)
                .filter_map(|(_, b)| parse_route(&b))
                .filter(|r| r.table == RT_TABLE_MAIN),
        );
    }
    Ok(out)
}

pub fn delete_route(r: &Route) -> io::Result<()> {
    let mut nl = Netlink::open()?;
    let mut p = rtmsg(r.family, r.dst_len, r.tos, r.table.min(255) as u8, r.protocol, r.scope, r.kind);
    push_attr(&mut p, RTA_TABLE, &r.table.to_ne_bytes());
    if let Some(d) = &r.dst {
        push_attr(&mut p, RTA_DST, &ip_bytes(d));
    }
    if let Some(g) = &r.gateway {
        push_attr(&mut p, RTA_GATEWAY, &ip_bytes(g));
    }
    if let Some(o) = r.oif {
        push_attr(&mut p, RTA_OIF, &o.to_ne_bytes());
    }
    if let Some(pr) = r.priority {
        push_attr(&mut p, RTA_PRIORITY, &pr.to_ne_bytes());
    }
    nl.request(libc::RTM_DELROUTE, libc::NLM_F_ACK as u16, &p).map(|_| ())
}

/// `ip route add default via <gw> dev <ifindex>`.
pub fn add_default_route(ifindex: u32, gw: IpAddr) -> io::Result<()> {
    let mut nl = Netlink::open()?;
    let family = if gw.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 } as u8;
    let mut p = rtmsg(family, 0, 0, RT_TABLE_MAIN as u8, libc::RTPROT_BOOT, libc::RT_SCOPE_UNIVERSE, libc::RTN_UNICAST);
    push_attr(&mut p, RTA_GATEWAY, &ip_bytes(&gw));
    push_attr(&mut p, RTA_OIF, &ifindex.to_ne_bytes());
    let flags = (libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    nl.request(libc::RTM_NEWROUTE, flags, &p).map(|_| ())
}
