//! gRPC against a real tonic server on 127.0.0.1: verdicts of every status
//! code, pushback, `grpc-timeout`, replay of unary calls, error statuses.

mod parsing;
#[allow(clippy::all, clippy::pedantic, unreachable_pub, missing_docs)]
#[path = "../support/grpc_echo.rs"]
mod proto;
mod server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::classify::{Classify, Verdict};
use steadfast::grpc::{
    BufferGrpcRequestLayer, GrpcClassifier, GrpcErrorResponseLayer, GrpcResponseLayer,
    GrpcServerDeadlineLayer, PropagateGrpcTimeoutLayer,
};
use steadfast::http::{HttpReplay, ReplayBody};
use steadfast::observe::{Event, RequestIdHeader};
use steadfast::policy::{Policy, PolicyBuilder};
use tonic::body::Body;
use tonic::transport::Channel;
use tower::{Service, ServiceBuilder};

use proto::EchoRequest;
use proto::echo_client::EchoClient;
use server::{EchoService, channel, serve, unreachable};

type GrpcPolicy = Policy<GrpcClassifier, HttpReplay, RequestIdHeader>;

/// What the policy's retry layer decided, in order.
#[derive(Debug, Clone, PartialEq)]
enum Decision {
    Scheduled { verdict: Verdict, delay: Duration },
    Stopped { reason: &'static str },
}

type Decisions = Arc<Mutex<Vec<Decision>>>;

/// The preset as a user gets it, with a listener recording retry decisions.
fn preset(
    builder: PolicyBuilder<GrpcClassifier, HttpReplay, RequestIdHeader>,
) -> (GrpcPolicy, Decisions) {
    let decisions = Decisions::default();
    let sink = decisions.clone();
    let policy = builder
        .on_event(move |event| match event {
            Event::RetryScheduled { verdict, delay, .. } => {
                sink.lock().unwrap().push(Decision::Scheduled {
                    verdict: *verdict,
                    delay: *delay,
                });
            }
            Event::RetryStopped { reason, .. } => {
                sink.lock().unwrap().push(Decision::Stopped {
                    reason: reason.as_str(),
                });
            }
            _ => {}
        })
        .build()
        .unwrap();
    (policy, decisions)
}

/// The client stack of the module docs around a tonic channel.
fn client(
    channel: Channel,
    policy: GrpcPolicy,
) -> EchoClient<
    impl Service<
        http::Request<Body>,
        Response = http::Response<ReplayBody<Body>>,
        Error = BoxError,
        Future: Send,
    > + Clone
    + Send
    + 'static,
> {
    let stack = ServiceBuilder::new()
        .layer(BufferGrpcRequestLayer::default())
        .layer(policy)
        .layer(PropagateGrpcTimeoutLayer::new())
        .layer(GrpcResponseLayer::default())
        .map_request(|r: http::Request<ReplayBody<Body>>| r.map(Body::new))
        .service(channel);
    EchoClient::new(stack)
}

fn ask(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.to_owned(),
    }
}

/// The table of the module docs, written out again.
fn expected(code: i32) -> Verdict {
    match code {
        0 => Verdict::Success,
        3 | 5 | 6 | 7 | 9 | 11 | 12 | 16 => Verdict::FunctionalError,
        8 | 14 => Verdict::transient(),
        1 | 2 | 4 | 10 | 13 | 15 => Verdict::Failure,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn every_status_code_has_its_verdict() {
    let addr = serve!(EchoService::default(), tower::layer::util::Identity::new());
    let verdicts = Arc::new(Mutex::new(Vec::new()));
    let sink = verdicts.clone();
    let stack = ServiceBuilder::new()
        .map_response(move |response: http::Response<ReplayBody<Body>>| {
            let verdict = Classify::<http::Request<()>, _, BoxError>::classify(
                &GrpcClassifier::new(),
                &(),
                Ok(&response),
            );
            sink.lock().unwrap().push(verdict);
            response
        })
        .layer(GrpcResponseLayer::default())
        .service(channel(addr));
    let mut client = EchoClient::new(stack);
    for code in 0..=16 {
        let answer = client.unary(ask(&format!("status:{code}"))).await;
        let got = verdicts.lock().unwrap().pop().unwrap();
        assert_eq!(got, expected(code), "grpc-status {code}");
        match answer {
            Ok(reply) => assert_eq!(code, 0, "{reply:?}"),
            Err(status) => assert_eq!(status.code() as i32, code),
        }
    }
}

#[tokio::test]
async fn without_reading_the_trailers_an_ok_answer_is_a_success_by_its_headers() {
    let addr = serve!(EchoService::default(), tower::layer::util::Identity::new());
    let mut raw = channel(addr);
    // The status of a message answer is in its trailers, after the body.
    let verdict = {
        let request = http::Request::post(format!("http://{addr}/steadfast.test.Echo/Unary"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Body::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"\0\0\0\0\x08\x0a\x06budget"),
            )))
            .unwrap();
        futures::future::poll_fn(|cx| Service::poll_ready(&mut raw, cx))
            .await
            .unwrap();
        let response = raw.call(request).await.unwrap();
        assert!(response.headers().get("grpc-status").is_none());
        Classify::<http::Request<()>, _, BoxError>::classify(
            &GrpcClassifier::new(),
            &(),
            Ok(&response),
        )
    };
    assert_eq!(verdict, Verdict::Success);
}

#[tokio::test]
async fn unavailable_is_retried_by_the_preset() {
    let service = EchoService::default();
    let seen = service.seen.clone();
    let addr = serve!(service, tower::layer::util::Identity::new());
    let (policy, decisions) = preset(Policy::grpc_client());
    let mut echo = client(channel(addr), policy);
    let reply = echo.unary(ask("flaky:2:a")).await.unwrap().into_inner();
    assert_eq!(reply.attempt, 3);
    assert_eq!(seen.attempts("a"), 3);
    let decisions = decisions.lock().unwrap();
    assert_eq!(decisions.len(), 2);
    for d in decisions.iter() {
        let Decision::Scheduled { verdict, delay } = d else {
            panic!("{d:?}")
        };
        assert_eq!(*verdict, Verdict::transient());
        // random(0, min(100 ms × 2^(n−1), 1 s)) for the first two retries.
        assert!(*delay <= Duration::from_millis(200), "{delay:?}");
    }
}

#[tokio::test]
async fn a_status_in_the_trailers_after_a_message_is_judged_and_retried() {
    let service = EchoService::default();
    let seen = service.seen.clone();
    let addr = serve!(service, tower::layer::util::Identity::new());
    let (policy, decisions) = preset(Policy::grpc_client());
    let mut echo = client(channel(addr), policy);
    let mut stream = echo.watch(ask("flaky:1:w")).await.unwrap().into_inner();
    let mut replies = Vec::new();
    while let Some(reply) = stream.message().await.unwrap() {
        replies.push(reply.attempt);
    }
    // The first answer (a message, then UNAVAILABLE in its trailers) was
    // read to its end, judged transient and replaced by the second.
    assert_eq!(replies, [2]);
    assert_eq!(seen.attempts("w"), 2);
    assert!(matches!(
        decisions.lock().unwrap().as_slice(),
        [Decision::Scheduled {
            verdict: Verdict::Transient { retry_after: None },
            ..
        }]
    ));
}

#[tokio::test]
async fn a_streaming_method_is_passed_on_and_judged_by_its_headers() {
    let service = EchoService::default();
    let seen = service.seen.clone();
    let addr = serve!(service, tower::layer::util::Identity::new());
    let (policy, decisions) = preset(Policy::grpc_client());
    let stack = ServiceBuilder::new()
        .layer(BufferGrpcRequestLayer::default())
        .layer(policy)
        .layer(GrpcResponseLayer::default().streaming_method("/steadfast.test.Echo/Watch"))
        .map_request(|r: http::Request<ReplayBody<Body>>| r.map(Body::new))
        .service(channel(addr));
    let mut echo = EchoClient::new(stack);
    let mut stream = echo.watch(ask("flaky:1:v")).await.unwrap().into_inner();
    // The reply comes as it is sent; the status after it reaches the caller.
    assert_eq!(stream.message().await.unwrap().unwrap().attempt, 1);
    assert_eq!(
        stream.message().await.unwrap_err().code(),
        tonic::Code::Unavailable
    );
    assert_eq!(seen.attempts("v"), 1);
    assert!(decisions.lock().unwrap().is_empty());
}

#[tokio::test]
async fn pushback_is_honoured() {
    let service = EchoService::default();
    let seen = service.seen.clone();
    let addr = serve!(service, tower::layer::util::Identity::new());
    let (policy, decisions) = preset(Policy::grpc_client());
    let mut echo = client(channel(addr), policy);
    let reply = echo.unary(ask("flaky:1:p:150")).await.unwrap();
    assert_eq!(reply.into_inner().attempt, 2);
    assert_eq!(seen.attempts("p"), 2);
    // The first retry's backoff is at most 100 ms: the wait is the
    // server's 150 ms.
    assert_eq!(
        decisions.lock().unwrap().as_slice(),
        [Decision::Scheduled {
            verdict: Verdict::transient_after(Duration::from_millis(150)),
            delay: Duration::from_millis(150),
        }]
    );
}

#[tokio::test]
async fn negative_or_malformed_pushback_stops_the_retries() {
    let service = EchoService::default();
    let seen = service.seen.clone();
    let addr = serve!(service, tower::layer::util::Identity::new());
    for (key, pushback) in [("n", "-1"), ("m", "soon"), ("e", "")] {
        let (policy, decisions) = preset(Policy::grpc_client());
        let mut echo = client(channel(addr), policy);
        let status = echo
            .unary(ask(&format!("flaky:3:{key}:{pushback}")))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{pushback:?}");
        assert_eq!(seen.attempts(key), 1, "{pushback:?}");
        assert!(decisions.lock().unwrap().is_empty(), "{pushback:?}");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_retried_a_reached_one_is_not() {
    let (policy, decisions) = preset(Policy::grpc_client());
    let refused = unreachable();
    let mut echo = client(channel(refused.addr()), policy);
    echo.unary(ask("ok:x")).await.unwrap_err();
    {
        let decisions = decisions.lock().unwrap();
        let scheduled = decisions
            .iter()
            .filter(|d| matches!(d, Decision::Scheduled { verdict, .. } if verdict.is_retryable()))
            .count();
        assert_eq!(scheduled, 3, "{decisions:?}");
        assert_eq!(
            decisions.last(),
            Some(&Decision::Stopped {
                reason: "attempts_exhausted"
            })
        );
    }

    // DEADLINE_EXCEEDED from the server: the call reached it.
    let service = EchoService::default();
    let seen = service.seen.clone();
    let addr = serve!(service, tower::layer::util::Identity::new());
    let (policy, decisions) = preset(Policy::grpc_client());
    let mut echo = client(channel(addr), policy);
    let status = echo.unary(ask("status:4")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    assert!(decisions.lock().unwrap().is_empty());
    let status = echo.unary(ask("flaky:9:r")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(seen.attempts("r"), 4); // the preset's 4 attempts
}

#[tokio::test]
async fn streaming_requests_are_sent_once() {
    let service = EchoService::default();
    let seen = service.seen.clone();
    let addr = serve!(service, tower::layer::util::Identity::new());
    let (policy, decisions) = preset(Policy::grpc_client());
    let mut echo = client(channel(addr), policy);
    // A stream the client is still writing when the server answers.
    let requests = futures::StreamExt::chain(
        futures::stream::iter([ask("flaky:1:s")]),
        futures::stream::pending(),
    );
    let status = echo.collect(requests).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(seen.attempts("s"), 1);
    assert_eq!(
        decisions.lock().unwrap().as_slice(),
        [Decision::Stopped {
            reason: "not_replayable"
        }]
    );
    // A unary call on the same client is replayed.
    let reply = echo.unary(ask("flaky:1:u")).await.unwrap();
    assert_eq!(reply.into_inner().attempt, 2);
}

#[tokio::test]
async fn grpc_timeout_travels_and_the_server_clamps_it() {
    let service = EchoService::default();
    let seen = service.seen.clone();
    let addr = serve!(
        service,
        ServiceBuilder::new()
            .layer(GrpcErrorResponseLayer::new())
            .layer(GrpcServerDeadlineLayer::new(Duration::from_secs(2)).unwrap())
    );
    // The client's total deadline travels as grpc-timeout.
    let (policy, _) = preset(
        Policy::grpc_client()
            .total_timeout(Duration::from_millis(1_500))
            .attempt_timeout(Duration::from_millis(700)),
    );
    let mut echo = client(channel(addr), policy);
    let reply = echo.unary(ask("budget")).await.unwrap().into_inner();
    let header = seen.timeout_header.lock().unwrap().clone().unwrap();
    let sent = steadfast::grpc::parse_grpc_timeout(header.as_bytes(), Duration::MAX).unwrap();
    assert!(sent <= Duration::from_millis(1_500), "{header}");
    assert!(reply.budget_us > 0 && u128::from(reply.budget_us) <= sent.as_micros());

    // A caller asking for an hour gets the server's 2 s.
    let mut plain = EchoClient::new(channel(addr));
    let mut request = tonic::Request::new(ask("budget"));
    request.set_timeout(Duration::from_secs(3_600));
    let reply = plain.unary(request).await.unwrap().into_inner();
    let header = seen.timeout_header.lock().unwrap().clone().unwrap();
    let asked = steadfast::grpc::parse_grpc_timeout(header.as_bytes(), Duration::MAX);
    assert_eq!(asked, Some(Duration::from_secs(3_600)), "{header}");
    assert!(reply.budget_us > 0 && reply.budget_us <= 2_000_000);

    // Garbage is ignored: the server's maximum applies.
    let mut request = tonic::Request::new(ask("budget"));
    request
        .metadata_mut()
        .insert("grpc-timeout", "soon".parse().unwrap());
    let reply = plain.unary(request).await.unwrap().into_inner();
    assert!(reply.budget_us > 0 && reply.budget_us <= 2_000_000);

    // A call that outlives the server's deadline is answered
    // DEADLINE_EXCEEDED. (Without grpc-timeout: tonic's own server timeout
    // would race it and answer CANCELLED.)
    let short = serve!(
        EchoService::default(),
        ServiceBuilder::new()
            .layer(GrpcErrorResponseLayer::new())
            .layer(GrpcServerDeadlineLayer::new(Duration::from_millis(10)).unwrap())
    );
    let status = EchoClient::new(channel(short))
        .unary(ask("hang"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
}

#[tokio::test]
async fn rejections_become_grpc_statuses_with_pushback() {
    let service = EchoService::default();
    let seen = service.seen.clone();
    let breaker = CircuitBreakerLayer::builder().build().unwrap();
    let handle = breaker.handle();
    let addr = serve!(
        service,
        ServiceBuilder::new()
            .layer(GrpcErrorResponseLayer::new())
            .layer(BulkheadLayer::builder().max_concurrent(1).build().unwrap())
            .layer(breaker)
    );
    let mut plain = EchoClient::new(channel(addr));

    // A full bulkhead: UNAVAILABLE, pushback 1 s.
    let mut hanging = plain.clone();
    let first = tokio::spawn(async move { hanging.unary(ask("hang")).await });
    seen.hanging.notified().await;
    let status = plain.unary(ask("ok:b")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(
        status.metadata().get("grpc-retry-pushback-ms").unwrap(),
        "1000"
    );
    first.abort();
    let _ = first.await;

    // A breaker forced open has no end: UNAVAILABLE, the default 1 s.
    handle.force_open();
    let status = plain.unary(ask("ok:c")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(
        status.metadata().get("grpc-retry-pushback-ms").unwrap(),
        "1000"
    );
    assert_eq!(seen.attempts("c"), 0);

    // Closed again: calls pass.
    handle.disable();
    let (policy, decisions) = preset(Policy::grpc_client().no_retry());
    let mut echo = client(channel(addr), policy);
    assert_eq!(
        echo.unary(ask("ok:d")).await.unwrap().into_inner().attempt,
        1
    );
    assert!(decisions.lock().unwrap().is_empty());
}
