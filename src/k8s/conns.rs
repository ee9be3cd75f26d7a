//! The connections of an API-server client whose client certificate rotates (the per-node
//! certificate): every TCP connection the client opens is tracked, and when the certificate
//! changes they are all shut down, so the next requests open new connections and present the new
//! certificate, as client-go's `connrotation` dialer does. (The API server authenticates every
//! request with the certificate of its connection's handshake; a keep-alive connection made with
//! an expired certificate would fail every later request.) TLS session resumption is off for such
//! a client for the same reason: a resumed session keeps the old identity.
//!
//! A tracked connection holds a duplicate of its socket's descriptor; the list holds weak
//! references, so a connection that ended is forgotten and no descriptor outlives its stream.

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The live connections of one client (clones share the list).
#[derive(Clone, Default, Debug)]
pub struct Connections(Arc<Mutex<Vec<Weak<OwnedFd>>>>);

impl Connections {
    fn track(&self, stream: &TcpStream) -> io::Result<Arc<OwnedFd>> {
        // SAFETY: dup of a descriptor this stream owns; the duplicate is owned by the OwnedFd.
        let fd = unsafe { libc::dup(stream.as_raw_fd()) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor owned by no one else.
        let token = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(&token));
        Ok(token)
    }

    /// How many tracked connections are still open.
    pub fn live(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|w| w.strong_count() > 0).count()
    }

    /// Shuts down every open connection (both directions); returns how many.
    pub fn close_all(&self) -> usize {
        let list: Vec<Arc<OwnedFd>> = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for fd in &list {
            // SAFETY: shutdown on a descriptor we own (the duplicate); it ends the shared socket.
            unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
        }
        list.len()
    }
}

/// A connection with its tracking token (dropped with it).
pub struct Tracked {
    inner: TokioIo<TcpStream>,
    _token: Arc<OwnedFd>,
}

impl Connection for Tracked {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

impl Read for Tracked {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl Write for Tracked {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
}

/// `HttpConnector` whose connections are tracked in `Connections`.
#[derive(Clone)]
pub struct TrackingConnector {
    pub http: HttpConnector,
    pub connections: Connections,
}

impl tower::Service<http::Uri> for TrackingConnector {
    type Response = Tracked;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Tracked, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let (fut, connections) = (self.http.call(uri), self.connections.clone());
        Box::pin(async move {
            let inner = fut.await?;
            let token = connections.track(inner.inner())?;
            Ok(Tracked { inner, _token: token })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn closing_ends_every_tracked_connection_and_forgets_ended_ones() {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut c = TrackingConnector { http: HttpConnector::new(), connections: Connections::default() };
        let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
        let a = tower::Service::call(&mut c, uri.clone()).await.unwrap();
        let (mut server_a, _) = listener.accept().await.unwrap();
        let b = tower::Service::call(&mut c, uri).await.unwrap();
        let (_server_b, _) = listener.accept().await.unwrap();
        assert_eq!(c.connections.live(), 2);
        drop(b);
        assert_eq!(c.connections.live(), 1, "an ended connection is forgotten");
        assert_eq!(c.connections.close_all(), 1);
        // The peer sees the end of the stream.
        let mut buf = [0u8; 1];
        assert_eq!(server_a.read(&mut buf).await.unwrap(), 0);
        assert_eq!(c.connections.live(), 0);
        drop(a);
    }
}
