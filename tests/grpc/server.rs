//! A tonic echo server on 127.0.0.1 whose answers the requests choose.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::timeout::Deadline;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status};

use crate::proto::echo_server::Echo;
use crate::proto::{EchoReply, EchoRequest};

/// What the server saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    attempts: Mutex<HashMap<String, u32>>,
    /// The raw `grpc-timeout` of the last request, if any.
    pub(crate) timeout_header: Mutex<Option<String>>,
    /// Calls that started hanging.
    pub(crate) hanging: tokio::sync::Notify,
}

impl Seen {
    /// The attempts seen for `key`.
    pub(crate) fn attempts(&self, key: &str) -> u32 {
        self.attempts.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    fn attempt(&self, key: &str) -> u32 {
        let mut all = self.attempts.lock().unwrap();
        let n = all.entry(key.to_owned()).or_default();
        *n += 1;
        *n
    }
}

/// The echo service. A request's message says what to answer:
///
/// - `ok:KEY`: OK, with the attempt count for `KEY`;
/// - `status:N`: the status numbered `N` (OK for 0);
/// - `flaky:K:KEY[:PUSHBACK]`: `UNAVAILABLE` (with `grpc-retry-pushback-ms:
///   PUSHBACK`) for the first `K` attempts, then OK;
/// - `budget`: OK, with the time left the handler sees, in microseconds;
/// - `hang`: never answers.
#[derive(Debug, Clone, Default)]
pub(crate) struct EchoService {
    pub(crate) seen: Arc<Seen>,
}

fn reply(message: &str, attempt: u32) -> EchoReply {
    EchoReply {
        message: message.to_owned(),
        attempt,
        budget_us: 0,
    }
}

fn unavailable(pushback: Option<&str>) -> Status {
    let mut metadata = MetadataMap::new();
    if let Some(value) = pushback {
        if let Ok(value) = MetadataValue::try_from(value) {
            metadata.insert("grpc-retry-pushback-ms", value);
        }
    }
    Status::with_metadata(Code::Unavailable, "try later", metadata)
}

impl EchoService {
    async fn answer(&self, message: &str) -> Result<EchoReply, Status> {
        let parts: Vec<&str> = message.split(':').collect();
        match parts.as_slice() {
            ["ok", key] => Ok(reply(message, self.seen.attempt(key))),
            ["status", n] => {
                let n: i32 = n.parse().unwrap_or(2);
                if n == 0 {
                    Ok(reply(message, 1))
                } else {
                    Err(Status::new(Code::from_i32(n), "as asked"))
                }
            }
            ["flaky", k, key, rest @ ..] => {
                let k: u32 = k.parse().unwrap_or(0);
                let attempt = self.seen.attempt(key);
                if attempt <= k {
                    Err(unavailable(rest.first().copied()))
                } else {
                    Ok(reply(message, attempt))
                }
            }
            ["budget"] => {
                let left = Deadline::current().map_or(Duration::ZERO, Deadline::remaining);
                Ok(EchoReply {
                    message: message.to_owned(),
                    attempt: 1,
                    budget_us: u64::try_from(left.as_micros()).unwrap_or(u64::MAX),
                })
            }
            ["hang"] => {
                self.seen.hanging.notify_one();
                std::future::pending().await
            }
            _ => Err(Status::invalid_argument("unknown command")),
        }
    }
}

type Replies = Pin<Box<dyn futures::Stream<Item = Result<EchoReply, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let header = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        *self.seen.timeout_header.lock().unwrap() = header;
        self.answer(&request.into_inner().message)
            .await
            .map(Response::new)
    }

    type WatchStream = Replies;

    /// `flaky:K:KEY`: one reply, then `UNAVAILABLE` in the trailers for the
    /// first `K` attempts; one reply and OK after.
    async fn watch(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let message = request.into_inner().message;
        let parts: Vec<&str> = message.split(':').collect();
        let (k, key) = match parts.as_slice() {
            ["flaky", k, key] => (k.parse().unwrap_or(0), *key),
            _ => return Err(Status::invalid_argument("unknown command")),
        };
        let attempt = self.seen.attempt(key);
        let mut items = vec![Ok(reply(&message, attempt))];
        if attempt <= k {
            items.push(Err(unavailable(None)));
        }
        Ok(Response::new(Box::pin(futures::stream::iter(items))))
    }

    /// `flaky:K:KEY` in the first message: answered before the stream ends.
    async fn collect(
        &self,
        request: Request<tonic::Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        let mut stream = request.into_inner();
        let first = stream.message().await?.unwrap_or_default();
        self.answer(&first.message).await.map(Response::new)
    }
}

/// Serves `service` behind `layer` on 127.0.0.1; the server stops with the
/// test's runtime.
macro_rules! serve {
    ($service:expr, $layer:expr) => {{
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let router = tonic::transport::Server::builder()
            .layer($layer)
            .add_service(crate::proto::echo_server::EchoServer::new($service));
        tokio::spawn(router.serve_with_incoming(incoming));
        addr
    }};
}
pub(crate) use serve;

/// A lazy channel to `addr`.
pub(crate) fn channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy()
}

/// A port that refuses connections for as long as the value lives: bound
/// but never listening, so no other test's server can take it meanwhile.
pub(crate) struct Unreachable(tokio::net::TcpSocket);

impl Unreachable {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.0.local_addr().unwrap()
    }
}

/// A port where nothing listens.
pub(crate) fn unreachable() -> Unreachable {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    Unreachable(socket)
}
