//! A Container Runtime Interface client for the tests: the kubelet's half of the calls it makes
//! to create and remove pod sandboxes (`runtime.v1.RuntimeService`: `Version`, `Status`,
//! `RunPodSandbox`, `PodSandboxStatus`, `StopPodSandbox`, `RemovePodSandbox`, `ListPodSandbox`),
//! gRPC over the runtime's unix socket.
//!
//! There is no protoc here: the messages are written by hand with `prost` derives and the field
//! numbers of k8s.io/cri-api `pkg/apis/runtime/v1/api.proto`, only the fields the tests use (an
//! unknown field in an answer is skipped by prost, as protobuf requires). The transport is the
//! one of `multus::k8s::podresources` (hyper's HTTP/2 client on a `UnixStream`, gRPC's 5-byte
//! framing), on a current-thread runtime per call, so the tests stay synchronous.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use multus::k8s::podresources::{decode_grpc_message, frame, unframe};
use prost::Message;

// ---------------------------------------------------------------------------------------------
// Messages (runtime.v1). Tags are api.proto's field numbers.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, PartialEq, Message)]
pub struct VersionRequest {
    #[prost(string, tag = "1")]
    pub version: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct VersionResponse {
    #[prost(string, tag = "1")]
    pub version: String,
    #[prost(string, tag = "2")]
    pub runtime_name: String,
    #[prost(string, tag = "3")]
    pub runtime_version: String,
    #[prost(string, tag = "4")]
    pub runtime_api_version: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct StatusRequest {
    #[prost(bool, tag = "1")]
    pub verbose: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct RuntimeCondition {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(bool, tag = "2")]
    pub status: bool,
    #[prost(string, tag = "3")]
    pub reason: String,
    #[prost(string, tag = "4")]
    pub message: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct RuntimeStatus {
    #[prost(message, repeated, tag = "1")]
    pub conditions: Vec<RuntimeCondition>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StatusResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<RuntimeStatus>,
    #[prost(map = "string, string", tag = "2")]
    pub info: HashMap<String, String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PodSandboxMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub uid: String,
    #[prost(string, tag = "3")]
    pub namespace: String,
    #[prost(uint32, tag = "4")]
    pub attempt: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct LinuxPodSandboxConfig {
    #[prost(string, tag = "1")]
    pub cgroup_parent: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct PodSandboxConfig {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(string, tag = "2")]
    pub hostname: String,
    #[prost(map = "string, string", tag = "6")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "7")]
    pub annotations: HashMap<String, String>,
    #[prost(message, optional, tag = "8")]
    pub linux: Option<LinuxPodSandboxConfig>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RunPodSandboxRequest {
    #[prost(message, optional, tag = "1")]
    pub config: Option<PodSandboxConfig>,
    #[prost(string, tag = "2")]
    pub runtime_handler: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct RunPodSandboxResponse {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// `StopPodSandboxRequest`, `RemovePodSandboxRequest`: both carry only the sandbox ID.
#[derive(Clone, PartialEq, Message)]
pub struct SandboxIdRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// `StopPodSandboxResponse`, `RemovePodSandboxResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct Empty {}

#[derive(Clone, PartialEq, Message)]
pub struct PodSandboxStatusRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct PodIp {
    #[prost(string, tag = "1")]
    pub ip: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct PodSandboxNetworkStatus {
    #[prost(string, tag = "1")]
    pub ip: String,
    #[prost(message, repeated, tag = "2")]
    pub additional_ips: Vec<PodIp>,
}

/// `PodSandboxState`: `SANDBOX_READY = 0`, `SANDBOX_NOTREADY = 1`.
pub const SANDBOX_READY: i32 = 0;
pub const SANDBOX_NOTREADY: i32 = 1;

#[derive(Clone, PartialEq, Message)]
pub struct PodSandboxStatus {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(int32, tag = "3")]
    pub state: i32,
    #[prost(message, optional, tag = "5")]
    pub network: Option<PodSandboxNetworkStatus>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PodSandboxStatusResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<PodSandboxStatus>,
    #[prost(map = "string, string", tag = "2")]
    pub info: HashMap<String, String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ListPodSandboxRequest {}

#[derive(Clone, PartialEq, Message)]
pub struct PodSandbox {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(int32, tag = "3")]
    pub state: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct ListPodSandboxResponse {
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<PodSandbox>,
}

// ---------------------------------------------------------------------------------------------
// The client.
// ---------------------------------------------------------------------------------------------

/// A failed call: the gRPC status (code and message) the runtime answered, or a transport error.
#[derive(Debug, Clone)]
pub struct CriError {
    pub code: Option<u32>,
    pub message: String,
}

impl std::fmt::Display for CriError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(c) => write!(f, "grpc status {c}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

fn transport(message: impl std::fmt::Display) -> CriError {
    CriError { code: None, message: message.to_string() }
}

/// The CRI runtime service on a unix socket.
#[derive(Clone, Debug)]
pub struct Cri {
    pub socket: PathBuf,
    /// Per-call deadline (the kubelet's default runtime request timeout is 2 min; ours only turns
    /// a hang into a failure).
    pub timeout: Duration,
}

impl Cri {
    pub fn new(socket: &Path) -> Cri {
        Cri { socket: socket.to_path_buf(), timeout: Duration::from_secs(120) }
    }

    pub fn version(&self) -> Result<VersionResponse, CriError> {
        self.call("Version", &VersionRequest { version: "v1".into() })
    }

    /// `Status` with `verbose`: the runtime's conditions and its `info` (containerd puts the
    /// loaded CNI configuration under `cniconfig`).
    pub fn status(&self) -> Result<StatusResponse, CriError> {
        self.call("Status", &StatusRequest { verbose: true })
    }

    pub fn run_pod_sandbox(&self, config: PodSandboxConfig) -> Result<String, CriError> {
        let r: RunPodSandboxResponse =
            self.call("RunPodSandbox", &RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() })?;
        Ok(r.pod_sandbox_id)
    }

    pub fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatusResponse, CriError> {
        self.call("PodSandboxStatus", &PodSandboxStatusRequest { pod_sandbox_id: id.into(), verbose: true })
    }

    pub fn stop_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        self.call::<_, Empty>("StopPodSandbox", &SandboxIdRequest { pod_sandbox_id: id.into() }).map(drop)
    }

    pub fn remove_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        self.call::<_, Empty>("RemovePodSandbox", &SandboxIdRequest { pod_sandbox_id: id.into() }).map(drop)
    }

    pub fn list_pod_sandbox(&self) -> Result<Vec<PodSandbox>, CriError> {
        Ok(self.call::<_, ListPodSandboxResponse>("ListPodSandbox", &ListPodSandboxRequest {})?.items)
    }

    /// One unary call of `runtime.v1.RuntimeService/<method>`.
    pub fn call<Req: Message, Resp: Message + Default>(&self, method: &str, req: &Req) -> Result<Resp, CriError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(transport)?;
        let path = format!("/runtime.v1.RuntimeService/{method}");
        rt.block_on(async {
            match tokio::time::timeout(self.timeout, unary(&self.socket, &path, req.encode_to_vec())).await {
                Ok(r) => r.and_then(|bytes| Resp::decode(bytes.as_slice()).map_err(transport)),
                Err(_) => Err(transport(format!("{method} on {} timed out", self.socket.display()))),
            }
        })
    }
}

/// The call's status from headers or trailers, if they carry one.
fn status_of(headers: &http::HeaderMap) -> Option<CriError> {
    let code = headers.get("grpc-status")?.to_str().ok()?.trim().parse::<u32>().ok()?;
    let message = headers.get("grpc-message").map(|m| decode_grpc_message(m.as_bytes())).unwrap_or_default();
    Some(CriError { code: Some(code), message })
}

async fn unary(socket: &Path, path: &str, message: Vec<u8>) -> Result<Vec<u8>, CriError> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| transport(format!("connecting to {}: {e}", socket.display())))?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.map_err(transport)?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://localhost{path}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(Full::new(Bytes::from(frame(&message))))
        .map_err(transport)?;
    let response = sender.send_request(request).await.map_err(transport)?;
    let (parts, mut body) = response.into_parts();
    if let Some(status) = status_of(&parts.headers) {
        conn.abort();
        return if status.code == Some(0) {
            Err(transport("trailers-only answer without a message"))
        } else {
            Err(status)
        };
    }
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(f) = body.frame().await {
        let f = f.map_err(transport)?;
        match f.into_data() {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    conn.abort();
    match trailers.as_ref().and_then(status_of) {
        Some(CriError { code: Some(0), .. }) => {}
        Some(status) => return Err(status),
        None => return Err(transport(format!("{path}: the answer ended without grpc-status"))),
    }
    unframe(&data, 64 << 20).map(<[u8]>::to_vec).map_err(|e| transport(format!("{path}: {e:?}")))
}
