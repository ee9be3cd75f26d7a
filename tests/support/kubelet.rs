//! A fake kubelet PodResources server: a fake because no kubelet runs here. It speaks the real wire
//! format (gRPC over HTTP/2 on a unix socket: `POST /v1.PodResourcesLister/List`, 5-byte message
//! prefix, `grpc-status` in trailers or trailers-only) with hyper's HTTP/2 server on a tokio
//! runtime of its own thread, and its framing is written here independently of the client's.
//! A Python grpcio client checks it (tests/kube/podresources.rs), so it cannot drift into a
//! format only our client understands.
//!
//! One difference from the kubelet's grpc-go server: hyper refuses a request whose `:authority` is
//! not a valid URI authority, such as the percent-encoded socket path grpc-core (C, Python)
//! clients send on unix sockets; grpc-go clients and ours send `localhost`.
//!
//! It answers `List` with what the test supplies, or fails with a gRPC status, or stalls (accepts
//! the call and never answers). Every request is recorded. Drop stops the server, ends every
//! connection, and removes the socket.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use multus::k8s::podresources::ListPodResourcesResponse;
use prost::Message;

/// What the fake does with a `List` call.
#[derive(Debug, Clone)]
pub enum Behaviour {
    Answer(ListPodResourcesResponse),
    /// A trailers-only answer with this gRPC status code and message.
    Fail {
        code: u32,
        message: String,
    },
    /// Never answer.
    Stall,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub content_type: String,
    pub te: String,
    pub body: Vec<u8>,
}

pub struct FakeKubelet {
    pub socket: PathBuf,
    behaviour: Arc<Mutex<Behaviour>>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeKubelet {
    /// Listens on `<dir>/kubelet.sock` before returning.
    pub fn start(dir: &Path, behaviour: Behaviour) -> FakeKubelet {
        let socket = dir.join("kubelet.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket)
            .unwrap_or_else(|e| panic!("fake kubelet: binding {}: {e}", socket.display()));
        listener.set_nonblocking(true).unwrap();
        let behaviour = Arc::new(Mutex::new(behaviour));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let state = (behaviour.clone(), requests.clone());
        let thread = std::thread::Builder::new()
            .name("fake-kubelet".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(serve(listener, state, rx));
                // Dropping the runtime drops every connection task, stalled ones included.
            })
            .unwrap();
        FakeKubelet { socket, behaviour, requests, shutdown: Some(tx), thread: Some(thread) }
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

type State = (Arc<Mutex<Behaviour>>, Arc<Mutex<Vec<Recorded>>>);

async fn serve(
    listener: std::os::unix::net::UnixListener,
    state: State,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::UnixListener::from_std(listener).unwrap();
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

async fn handle(
    req: hyper::Request<Incoming>,
    (behaviour, requests): State,
) -> Result<hyper::Response<GrpcBody>, Infallible> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut rec = Recorded {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        content_type: header("content-type"),
        te: header("te"),
        body: Vec::new(),
    };
    rec.body = req.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    let path = rec.path.clone();
    requests.lock().unwrap().push(rec);

    if path != "/v1.PodResourcesLister/List" {
        return Ok(trailers_only(12, &format!("unknown method {path}")));
    }
    let current = behaviour.lock().unwrap().clone();
    match current {
        Behaviour::Answer(answer) => {
            let message = answer.encode_to_vec();
            let mut data = vec![0u8];
            data.extend_from_slice(&(message.len() as u32).to_be_bytes());
            data.extend_from_slice(&message);
            let mut trailers = hyper::HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            let body = GrpcBody { frames: VecDeque::from([Frame::data(Bytes::from(data)), Frame::trailers(trailers)]) };
            Ok(hyper::Response::builder().status(200).header("content-type", "application/grpc").body(body).unwrap())
        }
        Behaviour::Fail { code, message } => Ok(trailers_only(code, &message)),
        Behaviour::Stall => std::future::pending().await,
    }
}

/// Headers that end the stream: HTTP 200, the gRPC content type and the status.
fn trailers_only(code: u32, message: &str) -> hyper::Response<GrpcBody> {
    hyper::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .header("grpc-status", code.to_string())
        .header("grpc-message", percent_encode(message))
        .body(GrpcBody { frames: VecDeque::new() })
        .unwrap()
}

/// `grpc-message` encoding: printable ASCII except `%` as is, every other byte as `%XX`.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| if (0x20..=0x7e).contains(&b) && b != b'%' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// A response body of prepared frames (data, then trailers).
pub struct GrpcBody {
    frames: VecDeque<Frame<Bytes>>,
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().frames.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }
}
