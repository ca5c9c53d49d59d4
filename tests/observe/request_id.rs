//! Request ids: read from a header, generated, written into the request.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use http::{HeaderName, HeaderValue, Request};
use steadfast::BoxError;
use steadfast::observe::{RequestId, RequestIdHeader};
use steadfast::policy::Policy;
use tower::{Layer, Service, ServiceExt, service_fn};

use crate::capture::Capture;
use crate::trace::retry;
use crate::{is_generated_id, ms};

type Req = Request<()>;

/// The value of one header in every attempt a backend saw.
type Seen = Arc<Mutex<Vec<Option<String>>>>;

/// A copy of a bodiless request, for retries.
fn copy(request: &Req) -> Option<Req> {
    let mut copy = Request::new(());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

/// A backend that fails its first attempt and logs the `header` of every
/// attempt it sees.
fn logging(
    header: &'static str,
) -> (
    impl Service<Req, Response = (), Error = BoxError> + Clone,
    Seen,
) {
    let seen = Seen::default();
    let log = Arc::clone(&seen);
    let service = service_fn(move |request: Req| {
        let mut log = log.lock().unwrap();
        log.push(
            request
                .headers()
                .get(header)
                .map(|v| v.to_str().unwrap().to_owned()),
        );
        let first = log.len() == 1;
        async move {
            if first {
                Err(BoxError::from("connection reset"))
            } else {
                Ok(())
            }
        }
    });
    (service, seen)
}

fn request(id: Option<&'static str>) -> Req {
    let mut request = Request::new(());
    if let Some(id) = id {
        request
            .headers_mut()
            .insert("x-request-id", HeaderValue::from_static(id));
    }
    request
}

#[tokio::test(start_paused = true)]
async fn the_request_id_is_read_from_the_header() -> Result<(), BoxError> {
    let (capture, _guard) = Capture::install();
    let policy = Policy::builder()
        .name("users")
        .route("/users/{id}")
        .request_id(RequestIdHeader::new())
        .replay(copy as fn(&Req) -> Option<Req>)
        .retry(retry(2, ms(10)))
        .build()?;
    let (backend, seen) = logging("x-request-id");
    policy
        .layer(backend)
        .oneshot(request(Some("req-42")))
        .await?;

    let call = &capture.calls()[0];
    assert_eq!(call.field("request_id"), "req-42");
    let scheduled = capture.event_saying("retry scheduled");
    assert_eq!(scheduled.field("request_id"), "req-42");
    assert_eq!(scheduled.field("policy"), "users");
    assert_eq!(scheduled.field("route"), "/users/{id}");
    // Read, not rewritten.
    assert_eq!(
        *seen.lock().unwrap(),
        [Some("req-42".to_owned()), Some("req-42".to_owned())]
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn without_the_header_an_id_is_generated_and_not_written() -> Result<(), BoxError> {
    let (capture, _guard) = Capture::install();
    let policy = Policy::builder()
        .name("users")
        .request_id(RequestIdHeader::new())
        .replay(copy as fn(&Req) -> Option<Req>)
        .retry(retry(2, ms(10)))
        .build()?;
    let (backend, seen) = logging("x-request-id");
    policy.layer(backend).oneshot(request(None)).await?;

    let id = capture.calls()[0].field("request_id").to_owned();
    assert!(is_generated_id(&id), "{id}");
    assert_eq!(
        capture.event_saying("retry scheduled").field("request_id"),
        id
    );
    assert_eq!(*seen.lock().unwrap(), [None, None]);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn propagate_writes_the_generated_id_into_the_request() -> Result<(), BoxError> {
    let (capture, _guard) = Capture::install();
    let policy = Policy::builder()
        .name("users")
        .request_id(RequestIdHeader::new().propagate())
        .replay(copy as fn(&Req) -> Option<Req>)
        .retry(retry(2, ms(10)))
        .build()?;

    let (backend, seen) = logging("x-request-id");
    policy.layer(backend).oneshot(request(None)).await?;
    let id = capture.calls()[0].field("request_id").to_owned();
    assert!(is_generated_id(&id), "{id}");
    assert_eq!(
        capture.event_saying("retry scheduled").field("request_id"),
        id
    );
    // Every attempt carries the id the events name.
    assert_eq!(*seen.lock().unwrap(), [Some(id.clone()), Some(id)]);

    // An id already there is kept.
    let (backend, seen) = logging("x-request-id");
    policy
        .layer(backend)
        .oneshot(request(Some("req-7")))
        .await?;
    assert_eq!(capture.calls()[1].field("request_id"), "req-7");
    assert_eq!(
        *seen.lock().unwrap(),
        [Some("req-7".to_owned()), Some("req-7".to_owned())]
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn another_header_can_carry_the_id() -> Result<(), BoxError> {
    let (capture, _guard) = Capture::install();
    let header = HeaderName::from_static("x-correlation-id");
    let policy = Policy::builder()
        .name("users")
        .request_id(RequestIdHeader::new().name(header.clone()).propagate())
        .replay(copy as fn(&Req) -> Option<Req>)
        .retry(retry(2, ms(10)))
        .build()?;

    let mut given = request(Some("ignored"));
    given
        .headers_mut()
        .insert(header, HeaderValue::from_static("corr-1"));
    let (backend, seen) = logging("x-correlation-id");
    policy.layer(backend).oneshot(given).await?;
    assert_eq!(capture.calls()[0].field("request_id"), "corr-1");
    assert_eq!(seen.lock().unwrap()[0].as_deref(), Some("corr-1"));

    // An empty value is ignored: a new id is generated and written.
    let mut empty = request(None);
    empty
        .headers_mut()
        .insert("x-correlation-id", HeaderValue::from_static(""));
    let (backend, seen) = logging("x-correlation-id");
    policy.layer(backend).oneshot(empty).await?;
    let id = capture.calls()[1].field("request_id").to_owned();
    assert!(is_generated_id(&id), "{id}");
    assert_eq!(seen.lock().unwrap()[0].as_deref(), Some(id.as_str()));
    Ok(())
}

#[test]
fn generated_ids_are_uuid_v7_distinct_and_ordered() {
    let ids: Vec<String> = (0..10_000)
        .map(|_| RequestId::generate().to_string())
        .collect();
    assert!(ids.iter().all(|id| is_generated_id(id)), "{:?}", &ids[..3]);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
    // Version 7 ids sort by the time they were made.
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    assert_eq!(RequestId::new("abc").to_string(), "abc");
    assert_eq!(format!("{:?}", RequestId::new("abc")), "RequestId(abc)");
}

#[tokio::test(start_paused = true)]
async fn an_id_that_is_not_visible_ascii_or_too_long_is_ignored() -> Result<(), BoxError> {
    let (capture, _guard) = Capture::install();
    let policy = Policy::builder()
        .name("users")
        .request_id(RequestIdHeader::new())
        .build()?;
    let long = "a".repeat(257);
    for value in ["req 42", "req\t42", long.as_str()] {
        let mut request = request(None);
        request
            .headers_mut()
            .insert("x-request-id", HeaderValue::from_str(value)?);
        let backend = service_fn(|_: Req| async { Ok::<_, BoxError>(()) });
        policy.layer(backend).oneshot(request).await?;
    }
    let calls = capture.calls();
    assert_eq!(calls.len(), 3);
    // Each value ignored is said so (read once per call).
    let ignored = capture.events_saying(
        "request id header ignored: empty, longer than 256 bytes or not all visible ASCII",
    );
    assert_eq!(ignored.len(), 3);
    for call in &calls {
        let id = call.field("request_id");
        assert!(is_generated_id(id), "{id}");
    }
    // 256 visible characters are kept.
    let most = "b".repeat(256);
    let mut request = request(None);
    request
        .headers_mut()
        .insert("x-request-id", HeaderValue::from_str(&most)?);
    let backend = service_fn(|_: Req| async { Ok::<_, BoxError>(()) });
    policy.layer(backend).oneshot(request).await?;
    assert_eq!(capture.calls()[3].field("request_id"), most);
    Ok(())
}
