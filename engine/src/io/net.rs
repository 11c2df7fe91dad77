//! TCP behind the same backend choice as files: io_uring (`tokio-uring`) or portable
//! (`tokio::net`). Every shard listens on the same port with SO_REUSEPORT, so the kernel
//! spreads connections across shards.

use std::io;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};

use super::Backend;

/// Listening sockets for `shards` shards on one address, all bound with SO_REUSEPORT. The
/// first resolves a port of 0 to a free port; the others bind that same port.
pub fn bind_reuseport(
    address: SocketAddr,
    shards: usize,
) -> io::Result<Vec<std::net::TcpListener>> {
    let mut listeners = Vec::with_capacity(shards);
    let mut bound = address;
    for _ in 0..shards {
        let socket = Socket::new(
            Domain::for_address(bound),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&bound.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        bound = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// A listening socket owned by one shard.
pub enum Listener {
    Uring(tokio_uring::net::TcpListener),
    Portable(tokio::net::TcpListener),
}

impl Listener {
    /// Must be called on the shard's runtime.
    pub fn from_std(listener: std::net::TcpListener, backend: Backend) -> io::Result<Listener> {
        Ok(match backend {
            Backend::Uring => Listener::Uring(tokio_uring::net::TcpListener::from_std(listener)),
            Backend::Portable => Listener::Portable(tokio::net::TcpListener::from_std(listener)?),
        })
    }

    pub async fn accept(&self) -> io::Result<(Connection, SocketAddr)> {
        match self {
            Listener::Uring(listener) => {
                let (stream, peer) = listener.accept().await?;
                stream.set_nodelay(true)?;
                Ok((Connection::Uring(stream), peer))
            }
            Listener::Portable(listener) => {
                let (stream, peer) = listener.accept().await?;
                stream.set_nodelay(true)?;
                Ok((Connection::Portable(stream), peer))
            }
        }
    }
}

/// One client connection.
pub enum Connection {
    Uring(tokio_uring::net::TcpStream),
    Portable(tokio::net::TcpStream),
}

/// A connection on its way to another shard: the bare socket, which the receiving shard
/// wraps for its own runtime.
pub struct Handoff {
    stream: std::net::TcpStream,
    uring: bool,
}

impl Handoff {
    /// The connection, on the runtime of the shard this runs on.
    pub fn into_connection(self) -> io::Result<Connection> {
        if self.uring {
            Ok(Connection::Uring(tokio_uring::net::TcpStream::from_std(
                self.stream,
            )))
        } else {
            Ok(Connection::Portable(tokio::net::TcpStream::from_std(
                self.stream,
            )?))
        }
    }
}

impl Connection {
    /// Detaches the socket from this shard's runtime, to be served on another shard.
    pub fn hand_off(self) -> io::Result<Handoff> {
        match self {
            Connection::Uring(stream) => {
                use std::os::fd::AsRawFd;
                // SAFETY: the descriptor belongs to `stream`, alive for this call; it is only
                // borrowed long enough to duplicate it. Dropping `stream` then closes its
                // descriptor, and the duplicate keeps the socket open.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(stream.as_raw_fd()) }
                    .try_clone_to_owned()?;
                Ok(Handoff {
                    stream: std::net::TcpStream::from(fd),
                    uring: true,
                })
            }
            Connection::Portable(stream) => Ok(Handoff {
                stream: stream.into_std()?,
                uring: false,
            }),
        }
    }

    /// Reads into the spare capacity of `buf` (from its length to its capacity), so bytes
    /// land where frames are split from, with no copy; 0 means the peer closed.
    pub async fn read_into(&self, mut buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        match self {
            Connection::Uring(stream) => {
                use tokio_uring::buf::BoundedBuf;
                let start = buf.len();
                let capacity = buf.capacity();
                let (result, slice) = stream.read(buf.slice(start..capacity)).await;
                (result, slice.into_inner())
            }
            Connection::Portable(stream) => {
                let start = buf.len();
                buf.resize(buf.capacity(), 0);
                let result = loop {
                    if let Err(error) = stream.readable().await {
                        break Err(error);
                    }
                    match stream.try_read(&mut buf[start..]) {
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                        other => break other,
                    }
                };
                buf.truncate(start + *result.as_ref().unwrap_or(&0));
                (result, buf)
            }
        }
    }

    /// Shuts both directions down: a read waiting on the socket returns 0, and the peer
    /// sees the connection close.
    pub fn shutdown(&self) {
        use std::os::unix::io::AsRawFd;
        let fd = match self {
            Connection::Uring(stream) => stream.as_raw_fd(),
            Connection::Portable(stream) => stream.as_raw_fd(),
        };
        // SAFETY: `fd` is the open socket this connection owns; shutdown(2) does not close
        // it, so the descriptor stays valid for its owner. Failure (already shut) is moot.
        unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
    }

    /// Writes all of `chunks`, in order, with vectored writes (one chunk: a plain write).
    pub async fn write_all_chunks(&self, chunks: Vec<Bytes>) -> io::Result<()> {
        let mut chunks: std::collections::VecDeque<Bytes> = chunks
            .into_iter()
            .filter(|chunk| !chunk.is_empty())
            .collect();
        while !chunks.is_empty() {
            if chunks.len() == 1 {
                let last = chunks.pop_front().expect("one chunk");
                return self.write_all(last).await;
            }
            let batch: Vec<Bytes> = chunks.iter().take(IOVECS_MAX).cloned().collect();
            let written = match self {
                Connection::Uring(stream) => {
                    let (result, _) = stream.writev(batch).await;
                    result?
                }
                Connection::Portable(stream) => {
                    let slices: Vec<io::IoSlice<'_>> =
                        batch.iter().map(|chunk| io::IoSlice::new(chunk)).collect();
                    loop {
                        stream.writable().await?;
                        match stream.try_write_vectored(&slices) {
                            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                            other => break other?,
                        }
                    }
                }
            };
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            advance_chunks(&mut chunks, written);
        }
        Ok(())
    }

    /// Writes all of `data`.
    pub async fn write_all(&self, data: Bytes) -> io::Result<()> {
        match self {
            Connection::Uring(stream) => {
                let (result, _) = stream.write_all(data).await;
                result
            }
            Connection::Portable(stream) => {
                let mut written = 0;
                while written < data.len() {
                    stream.writable().await?;
                    match stream.try_write(&data[written..]) {
                        Ok(n) => written += n,
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                        Err(error) => return Err(error),
                    }
                }
                Ok(())
            }
        }
    }
}

/// Most buffers one vectored write takes (IOV_MAX on Linux).
const IOVECS_MAX: usize = 1024;

/// Drops the first `written` bytes from the front of `chunks`.
fn advance_chunks(chunks: &mut std::collections::VecDeque<Bytes>, mut written: usize) {
    while written > 0 {
        let Some(front) = chunks.front_mut() else {
            return;
        };
        if written < front.len() {
            let rest = front.slice(written..);
            *front = rest;
            return;
        }
        written -= front.len();
        chunks.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_vectored_write_leaves_the_rest_in_order() {
        let mut chunks: std::collections::VecDeque<Bytes> = [&b"abc"[..], b"de", b"fghij"]
            .into_iter()
            .map(Bytes::from_static)
            .collect();
        advance_chunks(&mut chunks, 4);
        assert_eq!(
            chunks,
            [Bytes::from_static(b"e"), Bytes::from_static(b"fghij")]
        );
        advance_chunks(&mut chunks, 1);
        assert_eq!(chunks, [Bytes::from_static(b"fghij")]);
        advance_chunks(&mut chunks, 5);
        assert!(chunks.is_empty());
    }
}
