//! A tonic client with the gRPC client preset, against an in-process tonic
//! server behind steadfast's server layers; prints what each layer did.
//!
//! The server answers `UNAVAILABLE` with a 200 ms pushback to the first
//! attempt of each call, serves one call at a time (a bulkhead, whose
//! refusals become `UNAVAILABLE` with a 1 s pushback), and bounds each
//! handler by the caller's `grpc-timeout`, clamped to 2 s.
//!
//! Run: `cargo run --example grpc --features grpc`

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use steadfast::bulkhead::BulkheadLayer;
use steadfast::grpc::{
    BufferGrpcRequestLayer, GrpcErrorResponseLayer, GrpcResponseLayer, GrpcServerDeadlineLayer,
    PropagateGrpcTimeoutLayer,
};
use steadfast::http::ReplayBody;
use steadfast::observe::Event;
use steadfast::policy::Policy;
use steadfast::timeout::Deadline;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};
use tower::ServiceBuilder;

#[allow(clippy::all, clippy::pedantic, unreachable_pub, missing_docs)]
#[path = "../tests/support/grpc_echo.rs"]
mod proto;

use proto::echo_client::EchoClient;
use proto::echo_server::{Echo, EchoServer};
use proto::{EchoReply, EchoRequest};

/// Fails the first attempt of every message with `UNAVAILABLE` and a
/// pushback; `missing` is `NOT_FOUND`.
#[derive(Debug, Default)]
struct Flaky {
    attempts: Mutex<HashMap<String, u32>>,
}

impl Flaky {
    fn attempt(&self, message: &str) -> u32 {
        let mut all = self.attempts.lock().unwrap();
        let n = all.entry(message.to_owned()).or_default();
        *n += 1;
        *n
    }
}

#[tonic::async_trait]
impl Echo for Flaky {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let message = request.into_inner().message;
        let left = Deadline::current().map_or(Duration::ZERO, Deadline::remaining);
        let attempt = self.attempt(&message);
        println!(
            "  server: {message:?} attempt {attempt}, grpc-timeout {timeout}, handler deadline in {left:.1?}"
        );
        if message == "missing" {
            return Err(Status::not_found("no such thing"));
        }
        if attempt == 1 {
            let mut metadata = MetadataMap::new();
            metadata.insert("grpc-retry-pushback-ms", "200".parse().unwrap());
            return Err(Status::with_metadata(
                Code::Unavailable,
                "warming up",
                metadata,
            ));
        }
        if message.starts_with("slow") {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(Response::new(EchoReply {
            message,
            attempt,
            budget_us: u64::try_from(left.as_micros()).unwrap_or(u64::MAX),
        }))
    }

    type WatchStream = Pin<Box<dyn futures::Stream<Item = Result<EchoReply, Status>> + Send>>;

    async fn watch(
        &self,
        _request: Request<EchoRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("not in this example"))
    }

    async fn collect(
        &self,
        request: Request<tonic::Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        let mut stream = request.into_inner();
        let first = stream.message().await?.unwrap_or_default();
        println!("  server: stream starting with {:?}", first.message);
        Err(Status::unavailable("busy"))
    }
}

#[tokio::main]
async fn main() -> Result<(), steadfast::BoxError> {
    // The server: errors of its layers become gRPC statuses.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tonic::transport::Server::builder()
        .layer(
            ServiceBuilder::new()
                .layer(GrpcErrorResponseLayer::new())
                .layer(GrpcServerDeadlineLayer::new(Duration::from_secs(2))?)
                .layer(BulkheadLayer::builder().max_concurrent(1).build()?),
        )
        .add_service(EchoServer::new(Flaky::default()))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);

    // The client: the preset as a user gets it, printing retry decisions.
    let policy = Policy::grpc_client()
        .on_event(|event| match event {
            Event::RetryScheduled {
                attempt,
                verdict,
                delay,
                ..
            } => println!(
                "  retry:  attempt {attempt} was {verdict} (hint {:?}); next in {delay:.1?}",
                verdict.retry_after()
            ),
            Event::RetryStopped {
                attempt,
                verdict,
                reason,
                ..
            } => println!("  retry:  attempt {attempt} was {verdict}; stopped: {reason}"),
            _ => {}
        })
        .build()?;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?.connect_lazy();
    let stack = ServiceBuilder::new()
        .layer(BufferGrpcRequestLayer::default())
        .layer(policy)
        .layer(PropagateGrpcTimeoutLayer::new())
        .layer(GrpcResponseLayer::default())
        .map_request(|r: http::Request<ReplayBody<Body>>| r.map(Body::new))
        .service(channel);
    let client = EchoClient::new(stack);

    println!("a unary call: UNAVAILABLE with pushback, then OK");
    let started = Instant::now();
    let reply = client.clone().unary(ask("hello")).await?.into_inner();
    println!(
        "  client: {:?} after {} attempts in {:.0?}\n",
        reply.message,
        reply.attempt,
        started.elapsed()
    );

    println!("a functional error: NOT_FOUND is an answer, not retried");
    let status = client.clone().unary(ask("missing")).await.unwrap_err();
    println!("  client: {:?} {:?}\n", status.code(), status.message());

    println!("a deadline of 1.5 s travels as grpc-timeout");
    let mut request = Request::new(ask("deadline"));
    request.set_timeout(Duration::from_millis(1_500));
    let reply = client.clone().unary(request).await?.into_inner();
    println!(
        "  client: the handler had {:.1?} left when it answered\n",
        Duration::from_micros(reply.budget_us)
    );

    println!("two calls at once against a bulkhead of one");
    let (mut first, mut second) = (client.clone(), client.clone());
    let (a, b) = tokio::join!(first.unary(ask("slow-a")), second.unary(ask("slow-b")));
    for reply in [a?, b?] {
        let reply = reply.into_inner();
        println!(
            "  client: {:?}; the handler ran {} times",
            reply.message, reply.attempt
        );
    }
    println!();

    println!("a client-streaming call is sent once");
    let requests = futures::StreamExt::chain(
        futures::stream::iter([ask("stream")]),
        futures::stream::pending(),
    );
    let status = client.clone().collect(requests).await.unwrap_err();
    println!("  client: {:?} {:?}", status.code(), status.message());
    Ok(())
}

fn ask(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.to_owned(),
    }
}
