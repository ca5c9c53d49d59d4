//! The backend: a few GET routes over a bounded set of ids, served by axum
//! on a real socket on 127.0.0.1, with faults switched phase by phase.
//!
//! HTTP faults (503s with `Retry-After`, slow answers) come from a
//! `ChaosLayer` in the app. Faults on the wire come from the listener,
//! which wraps every accepted connection, old and new alike:
//!
//! - **blackhole**: the connection is accepted and the request read, and
//!   then nothing: no answer, no close, until the caller gives up and
//!   closes it;
//! - **reset**: a request that arrives is answered with a TCP reset
//!   (`SO_LINGER` 0, then close).
//!
//! Every request that reaches the backend is counted, whichever fault
//! met it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use steadfast::BoxError;
use steadfast::chaos::{ChaosHandle, ChaosLayer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceBuilder;

/// What the wire does to requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Wire {
    /// Requests reach the app.
    Open = 0,
    /// Connections are accepted, requests read and never answered.
    Blackhole = 1,
    /// Requests are answered with a TCP reset.
    Reset = 2,
}

/// A phase of the timeline: its name, how long it lasts, what the wire
/// does and which HTTP faults the app injects.
pub(crate) struct Phase {
    pub(crate) name: &'static str,
    pub(crate) what: &'static str,
    pub(crate) length: Duration,
    pub(crate) wire: Wire,
    pub(crate) faults: fn(&ChaosHandle) -> Result<(), steadfast::ConfigError>,
    /// Whether the dependency is down for every call in this phase.
    pub(crate) outage: bool,
}

/// The standard breaker judges the failure rate over 30 s; each outage
/// follows 30 s of healthy traffic at full load, so its window is full of
/// successes when the outage begins.
const FILL: Duration = Duration::from_secs(30);
const OUTAGE: Duration = Duration::from_secs(4);

const fn healthy(name: &'static str, what: &'static str, length: Duration) -> Phase {
    Phase {
        name,
        what,
        length,
        wire: Wire::Open,
        faults: |_| Ok(()),
        outage: false,
    }
}

pub(crate) const PHASES: [Phase; 9] = [
    healthy(
        "healthy",
        "no faults: fills the breaker's 30 s window",
        FILL,
    ),
    Phase {
        name: "blackhole",
        what: "connections accepted, requests never answered",
        length: OUTAGE,
        wire: Wire::Blackhole,
        faults: |_| Ok(()),
        outage: true,
    },
    healthy("recovery", "no faults, 30 s", FILL),
    Phase {
        name: "reset",
        what: "every request answered with a TCP reset",
        length: OUTAGE,
        wire: Wire::Reset,
        faults: |_| Ok(()),
        outage: true,
    },
    healthy("recovery", "no faults, 30 s", FILL),
    Phase {
        name: "503",
        what: "every request answered 503 + Retry-After: 1",
        length: OUTAGE,
        wire: Wire::Open,
        faults: |h| h.set_respond_rate(1.0),
        outage: true,
    },
    healthy("recovery", "no faults", ms(8_000)),
    Phase {
        name: "brownout",
        what: "10 % 503 + Retry-After: 1, 10 % slowed 200-500 ms",
        length: ms(6_000),
        wire: Wire::Open,
        faults: |h| {
            h.set_respond_rate(0.10)?;
            h.set_latency(0.10, ms(200), ms(500))
        },
        outage: false,
    },
    Phase {
        name: "long tail",
        what: "5 % of calls take 1 s",
        length: ms(6_000),
        wire: Wire::Open,
        faults: |h| h.set_latency(0.05, ms(1_000), ms(1_000)),
        outage: false,
    },
];

pub(crate) const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One backend: its address, its fault switches, and how many requests
/// reached it.
pub(crate) struct Backend {
    pub(crate) addr: SocketAddr,
    chaos: ChaosHandle,
    wire: Arc<AtomicU8>,
    pub(crate) requests: Arc<AtomicU64>,
    /// The index of the phase whose faults are on.
    phase: AtomicUsize,
}

impl Backend {
    /// Switches the faults to those of phase `index`.
    pub(crate) fn enter(&self, index: usize) {
        let phase = &PHASES[index];
        self.chaos.heal();
        if let Err(err) = (phase.faults)(&self.chaos) {
            eprintln!("bad fault settings for {}: {err}", phase.name);
        }
        self.wire.store(phase.wire as u8, Ordering::Relaxed);
        self.phase.store(index, Ordering::Release);
    }

    /// The index of the phase whose faults are on: a call is counted in
    /// the phase whose faults it met when it started.
    pub(crate) fn phase(&self) -> usize {
        self.phase.load(Ordering::Acquire)
    }

    /// Clears every fault.
    pub(crate) fn heal(&self) {
        self.chaos.heal();
        self.wire.store(Wire::Open as u8, Ordering::Relaxed);
    }
}

pub(crate) async fn backend() -> Result<Backend, BoxError> {
    let chaos = ChaosLayer::builder()
        .respond(0.0, || {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "1")],
                "busy",
            )
                .into_response()
        })
        .seed(2026)
        .build()?;
    let handle = chaos.handle();
    let requests = Arc::new(AtomicU64::new(0));
    let counted = requests.clone();
    let answer = |kind: &'static str| {
        get(move |Path(id): Path<u32>| async move {
            format!(
                "{{\"kind\":\"{kind}\",\"id\":{id},\"value\":{}}}",
                u64::from(id) * 7 + 3
            )
        })
    };
    let app = Router::new()
        .route("/items/{id}", answer("item"))
        .route("/prices/{id}", answer("price"))
        .route("/stock/{id}", answer("stock"))
        .layer(
            ServiceBuilder::new()
                // Every request that reaches the app is counted, faulted or not.
                .map_request(move |request: axum::extract::Request| {
                    counted.fetch_add(1, Ordering::Relaxed);
                    request
                })
                .layer(HandleErrorLayer::new(|_: BoxError| async {
                    StatusCode::INTERNAL_SERVER_ERROR
                }))
                .layer(chaos),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let wire = Arc::new(AtomicU8::new(Wire::Open as u8));
    let faulty = Faulty {
        listener,
        wire: wire.clone(),
        requests: requests.clone(),
    };
    tokio::spawn(async move { axum::serve(faulty, app).await });
    Ok(Backend {
        addr,
        chaos: handle,
        wire,
        requests,
        phase: AtomicUsize::new(0),
    })
}

/// A listener whose connections obey the wire's faults.
struct Faulty {
    listener: TcpListener,
    wire: Arc<AtomicU8>,
    requests: Arc<AtomicU64>,
}

impl axum::serve::Listener for Faulty {
    type Io = FaultyStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let stream = FaultyStream {
                        stream,
                        wire: self.wire.clone(),
                        requests: self.requests.clone(),
                        swallowing: false,
                    };
                    return (stream, addr);
                }
                // Out of file descriptors, most likely: wait a little.
                Err(_) => tokio::time::sleep(ms(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A connection that passes bytes on while the wire is open, swallows
/// them in a blackhole (for good: a request lost stays lost), and resets
/// on a request while the wire resets.
struct FaultyStream {
    stream: TcpStream,
    wire: Arc<AtomicU8>,
    requests: Arc<AtomicU64>,
    swallowing: bool,
}

impl AsyncRead for FaultyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let wire = this.wire.load(Ordering::Relaxed);
            if !this.swallowing && wire == Wire::Open as u8 {
                return Pin::new(&mut this.stream).poll_read(cx, buf);
            }
            // Read into a scratch buffer, so the app never sees the bytes.
            let mut scratch = [0u8; 4096];
            let mut scratch = ReadBuf::new(&mut scratch);
            ready!(Pin::new(&mut this.stream).poll_read(cx, &mut scratch))?;
            if scratch.filled().is_empty() {
                // The caller closed the connection: end it.
                return Poll::Ready(Ok(()));
            }
            if this.swallowing {
                continue;
            }
            this.requests.fetch_add(1, Ordering::Relaxed);
            if wire == Wire::Reset as u8 {
                #[allow(deprecated)] // SO_LINGER 0 does not block
                let _ = this.stream.set_linger(Some(Duration::ZERO));
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            this.swallowing = true;
        }
    }
}

impl AsyncWrite for FaultyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
