//! [`FaultProxy`]: a TCP proxy on loopback in front of a real server, whose behaviour a
//! test switches while it runs ([`Fault`]), to see what a client does when its upstream
//! is slow, silent or gone.
//!
//! A switch applies to new connections and to those already open, so that a client's
//! pooled keep-alive connections cannot slip past a fault:
//!
//! | fault | a new connection | an open connection |
//! |---|---|---|
//! | [`pass`](FaultProxy::pass) | connected upstream at once | bytes flow both ways |
//! | [`delay`](FaultProxy::delay) | held that long, then connected upstream | bytes flow both ways |
//! | [`hang`](FaultProxy::hang) | accepted, never connected upstream, never answered | bytes are held (not dropped): nothing is forwarded either way |
//! | [`refuse`](FaultProxy::refuse) | closed at once | closed |
//!
//! What `hang` holds moves on once the fault is lifted: a connection accepted while
//! hanging connects upstream, held bytes are forwarded. A connection whose upstream
//! cannot be reached is closed. Dropping the proxy closes its listener and every
//! connection.
//!
//! ```
//! # async fn demo(upstream: std::net::SocketAddr) {
//! use std::time::Duration;
//! use dovetail_testkit::fault_proxy::FaultProxy;
//!
//! let proxy = FaultProxy::start(upstream).await;
//! let url = format!("http://{}/readyz", proxy.addr()); // point the client here
//! proxy.delay(Duration::from_millis(300)); // each new connection waits 300 ms
//! proxy.hang(); // the upstream goes silent
//! proxy.pass(); // and comes back
//! let accepted = proxy.connections(); // however many the client opened
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// What a [`FaultProxy`] does, as set by its methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Forward bytes both ways.
    Pass,
    /// Hold each new connection this long before connecting upstream.
    Delay(Duration),
    /// Accept and never answer; forward nothing on open connections.
    Hang,
    /// Close new and open connections at once.
    Refuse,
}

/// A TCP proxy on `127.0.0.1:0` in front of an upstream address; see the module's
/// documentation for what each [`Fault`] does.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    fault: watch::Sender<Fault>,
    connections: Arc<AtomicU64>,
    accepting: JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy in front of `upstream`, passing bytes, listening on a free loopback port.
    ///
    /// # Panics
    /// When no loopback port can be bound, saying so.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| panic!("the fault proxy cannot bind 127.0.0.1:0: {error}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("the fault proxy has no local address: {error}"));
        let (fault, watching) = watch::channel(Fault::Pass);
        let connections = Arc::new(AtomicU64::new(0));
        let accepting = tokio::spawn(accept(
            listener,
            upstream,
            watching,
            Arc::clone(&connections),
        ));
        Self {
            addr,
            upstream,
            fault,
            connections,
            accepting,
        }
    }

    /// Where clients connect: `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    /// Forward bytes both ways (the default); releases what [`hang`](Self::hang) held.
    pub fn pass(&self) {
        self.set(Fault::Pass);
    }

    /// Hold each new connection `delay` before connecting upstream; open connections
    /// flow.
    pub fn delay(&self, delay: Duration) {
        self.set(Fault::Delay(delay));
    }

    /// Accept new connections and never answer them; forward nothing on open ones.
    pub fn hang(&self) {
        self.set(Fault::Hang);
    }

    /// Close new connections at once, and every open one.
    pub fn refuse(&self) {
        self.set(Fault::Refuse);
    }

    /// How many connections the proxy accepted, whatever it did with them.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    fn set(&self, fault: Fault) {
        // `send_replace` stores the fault even while no connection watches it.
        self.fault.send_replace(fault);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accepting task owns the listener and every connection's task.
        self.accepting.abort();
    }
}

/// Accepts connections until aborted, each handled by a task of its own.
async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    fault: watch::Receiver<Fault>,
    connections: Arc<AtomicU64>,
) {
    let mut handling = JoinSet::new();
    loop {
        while handling.try_join_next().is_some() {}
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors, say: let the test see slow connects, not a panic.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        connections.fetch_add(1, Ordering::SeqCst);
        handling.spawn(connection(client, upstream, fault.clone()));
    }
}

/// Admits `client` as the fault says, then forwards both ways until either side ends or
/// the fault closes it.
async fn connection(client: TcpStream, upstream: SocketAddr, mut fault: watch::Receiver<Fault>) {
    let mut delayed = false;
    loop {
        let now = *fault.borrow_and_update();
        match now {
            Fault::Pass => break,
            Fault::Delay(_) if delayed => break,
            Fault::Delay(delay) => {
                tokio::time::sleep(delay).await;
                delayed = true;
            }
            Fault::Hang => {
                if fault.changed().await.is_err() {
                    return;
                }
            }
            Fault::Refuse => return,
        }
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, fault.clone()),
        pump(server_read, client_write, fault),
    );
}

/// Copies `from` to `to` while the fault lets bytes flow; shuts `to` down at `from`'s end.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut fault: watch::Receiver<Fault>) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let now = *fault.borrow_and_update();
        match now {
            Fault::Refuse => return,
            Fault::Hang => {
                if fault.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Fault::Pass | Fault::Delay(_) => {}
        }
        tokio::select! {
            // A read cancelled by a switch has taken nothing: no byte is lost.
            read = from.read(&mut buffer) => match read {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(count) => {
                    if to.write_all(&buffer[..count]).await.is_err() {
                        return;
                    }
                }
            },
            changed = fault.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::time::timeout;

    /// An echo server on loopback and how many connections it accepted.
    async fn echo_server() -> (SocketAddr, Arc<AtomicU64>, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let counting = Arc::clone(&accepted);
        let server = tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counting.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        (addr, accepted, server)
    }

    /// Sends `message` on `stream` and reads as many bytes back, within `limit`.
    async fn echo(stream: &mut TcpStream, message: &[u8], limit: Duration) -> Option<Vec<u8>> {
        stream.write_all(message).await.unwrap();
        let mut answer = vec![0; message.len()];
        match timeout(limit, stream.read_exact(&mut answer)).await {
            Ok(Ok(_)) => Some(answer),
            Ok(Err(error)) => panic!("the connection failed: {error}"),
            Err(_) => None,
        }
    }

    /// Whether the proxy closed `stream`: a read ends (EOF or reset) within a second.
    async fn closed(stream: &mut TcpStream) -> bool {
        let mut byte = [0; 1];
        matches!(
            timeout(Duration::from_secs(1), stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    const SOON: Duration = Duration::from_secs(2);
    const NEVER: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn it_passes_bytes_both_ways_and_counts_connections() {
        let (upstream, accepted, _server) = echo_server().await;
        let proxy = FaultProxy::start(upstream).await;
        assert_eq!(proxy.fault(), Fault::Pass);
        assert_eq!(proxy.upstream(), upstream);
        assert!(proxy.addr().ip().is_loopback());
        for round in 1..=3_u64 {
            let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
            let big = vec![u8::try_from(round).unwrap(); 100_000];
            assert_eq!(echo(&mut stream, &big, SOON).await.unwrap(), big);
            assert_eq!(proxy.connections(), round);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_delay_holds_each_new_connection_before_it_reaches_upstream() {
        let (upstream, accepted, _server) = echo_server().await;
        let proxy = FaultProxy::start(upstream).await;
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        echo(&mut open, b"warm", SOON).await.unwrap();

        proxy.delay(Duration::from_millis(400));
        let started = Instant::now();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "connected upstream early"
        );
        assert_eq!(echo(&mut stream, b"late", SOON).await.unwrap(), b"late");
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "{:?}",
            started.elapsed()
        );
        // An open connection is not delayed.
        let started = Instant::now();
        echo(&mut open, b"quick", SOON).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_hang_accepts_and_never_answers_until_lifted() {
        let (upstream, accepted, _server) = echo_server().await;
        let proxy = FaultProxy::start(upstream).await;
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        echo(&mut open, b"before", SOON).await.unwrap();

        proxy.hang();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(echo(&mut stream, b"hello", NEVER).await, None);
        assert_eq!(echo(&mut open, b"pooled", NEVER).await, None, "an open one");
        assert_eq!(proxy.connections(), 2, "the hung connection was accepted");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "and never went upstream"
        );

        // Lifted: what was held arrives, nothing lost or doubled.
        proxy.pass();
        let mut answer = [0; 5];
        timeout(SOON, stream.read_exact(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&answer, b"hello");
        let mut answer = [0; 6];
        timeout(SOON, open.read_exact(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&answer, b"pooled");
        assert_eq!(echo(&mut open, b"after", SOON).await.unwrap(), b"after");
    }

    #[tokio::test]
    async fn a_refusal_closes_new_and_open_connections_at_once() {
        let (upstream, accepted, _server) = echo_server().await;
        let proxy = FaultProxy::start(upstream).await;
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        echo(&mut open, b"before", SOON).await.unwrap();

        proxy.refuse();
        assert!(closed(&mut open).await, "the open connection stays open");
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(closed(&mut stream).await, "a new connection stays open");
        assert_eq!(proxy.connections(), 2);
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "a refused one went upstream"
        );

        // Back to passing: new connections work again.
        proxy.pass();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(echo(&mut stream, b"again", SOON).await.unwrap(), b"again");
    }

    #[tokio::test]
    async fn a_connection_whose_upstream_is_gone_is_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = listener.local_addr().unwrap();
        drop(listener);
        let proxy = FaultProxy::start(gone).await;
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(closed(&mut stream).await);
    }

    #[tokio::test]
    async fn dropping_the_proxy_closes_its_connections() {
        let (upstream, _, _server) = echo_server().await;
        let proxy = FaultProxy::start(upstream).await;
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        echo(&mut open, b"before", SOON).await.unwrap();
        drop(proxy);
        assert!(closed(&mut open).await);
    }
}
