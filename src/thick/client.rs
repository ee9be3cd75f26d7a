//! The client side of the daemon socket: HTTP/1.1 over a unix stream with hyper, one request per
//! connection (no pool), on a current-thread runtime of its own. Used by the shim and by the
//! daemon's self-check at startup.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::Method;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::api::{HEALTH_ENDPOINT, URL_HOST};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("dial unix {}: {source}", path.display())]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Http(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot start the client runtime: {0}")]
    Runtime(std::io::Error),
}

/// What the daemon answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends one request and reads the whole answer.
pub async fn send(socket: &Path, method: Method, endpoint: &str, body: Vec<u8>) -> Result<Reply, ClientError> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect { path: socket.to_path_buf(), source })?;
    let http = |e: hyper::Error| ClientError::Http(format!("{method} http://{URL_HOST}{endpoint}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
    let driver = tokio::spawn(conn);
    let request = http::Request::builder()
        .method(method.clone())
        .uri(format!("http://{URL_HOST}{endpoint}"))
        .header(http::header::HOST, URL_HOST)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(http)?.to_bytes().to_vec();
    drop(sender);
    driver.abort();
    Ok(Reply { status, body })
}

/// A blocking client for one socket.
pub struct Client {
    socket: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Result<Client, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ClientError::Runtime)?;
        Ok(Client { socket: socket.into(), rt })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// One request; `timeout` bounds the whole exchange.
    pub fn send(
        &self,
        method: Method,
        endpoint: &str,
        body: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<Reply, ClientError> {
        self.rt.block_on(async {
            let call = send(&self.socket, method, endpoint, body);
            match timeout {
                Some(t) => tokio::time::timeout(t, call).await.map_err(|_| ClientError::Timeout(t))?,
                None => call.await,
            }
        })
    }

    /// One `/healthz` probe (upstream's shim POSTs `null`).
    pub fn probe(&self, timeout: Duration) -> Result<(), ClientError> {
        let reply = self.send(Method::POST, HEALTH_ENDPOINT, b"null".to_vec(), Some(timeout))?;
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
    pub fn wait_ready(&self, timeout: Duration, interval: Duration) -> Result<(), ClientError> {
        let start = Instant::now();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            let last = match self.probe(left.max(interval)) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if start.elapsed() + interval > timeout {
                return Err(last);
            }
            std::thread::sleep(interval);
        }
    }
}
