//! Answers read from a real socket: a loopback server that writes canned
//! bytes, in pieces, and the head parser fed a byte at a time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::FutureExt as _;
use http::Request;
use http_body_util::{BodyExt as _, Either};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::*;
use crate::upstream::{SendError, Target};

/// A server on a free loopback port that, for each request head it reads on
/// its one connection, writes the next answer, piece by piece; it closes the
/// connection after the last answer when `close` is set, else keeps it open.
async fn canned(answers: Vec<Vec<&'static [u8]>>, close: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut seen = Vec::new();
        for pieces in answers {
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let mut buf = [0; 1024];
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the gateway closed before its request");
                seen.extend_from_slice(&buf[..n]);
            }
            seen.clear();
            for piece in pieces {
                stream.write_all(piece).await.unwrap();
                stream.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        }
        if !close {
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
        }
    });
    address
}

fn request(method: Method) -> Request<crate::proxy::UpstreamBody> {
    let body = Either::Right(axum::body::Body::empty());
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = "/items?page=2".parse().unwrap();
    request
}

/// The upstream at `address`.
fn target(address: SocketAddr) -> Target {
    Target::new(&format!("http://{address}").parse().unwrap()).unwrap()
}

/// Sends `method` to `address`; the status, the body and how many direct
/// connections are kept afterwards.
async fn send(
    idle: &Arc<Idle>,
    address: SocketAddr,
    method: Method,
) -> Result<(StatusCode, Vec<u8>, usize), SendError> {
    let target = target(address);
    // Bounded: a framing mistake shows as a body that never ends.
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let response = idle.send(&target, request(method)).await?;
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let kept = idle.direct.lock().unwrap().len();
        Ok((status, body.to_vec(), kept))
    })
    .await
    .expect("the answer ends within 5 s")
}

#[tokio::test]
async fn a_length_delimited_answer_in_pieces_is_read_whole_and_the_connection_kept() {
    let address = canned(
        vec![
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Le",
                b"ngth: 11\r\n\r\nhello",
                b" world",
            ],
            vec![b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok"],
        ],
        false,
    )
    .await;
    let idle = Arc::new(Idle::default());
    let (status, body, kept) = send(&idle, address, Method::GET).await.unwrap();
    assert_eq!(
        (status, body.as_slice(), kept),
        (StatusCode::OK, &b"hello world"[..], 1)
    );
    // The same connection takes the next request: the server has only one.
    let (status, body, kept) = send(&idle, address, Method::DELETE).await.unwrap();
    assert_eq!(
        (status, body.as_slice(), kept),
        (StatusCode::CREATED, &b"ok"[..], 1)
    );
}

#[tokio::test]
async fn a_kept_connection_the_upstream_spoke_on_while_idle_is_not_used_again() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let answered = Arc::new(tokio::sync::Notify::new());
    let idle_now = Arc::clone(&answered);
    tokio::spawn(async move {
        for answer in [&b"first"[..], b"second"] {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0; 1024];
            let _ = stream.read(&mut buf).await.unwrap();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                answer.len()
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            stream.write_all(answer).await.unwrap();
            // Once the answer has been read: an idle timeout's answer, as
            // some servers send before closing; the connection stays open.
            idle_now.notified().await;
            let timeout = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n";
            stream.write_all(timeout).await.unwrap();
            tokio::spawn(async move {
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest).await;
            });
        }
    });
    let idle = Arc::new(Idle::default());
    let (status, body, kept) = send(&idle, address, Method::GET).await.unwrap();
    assert_eq!(
        (status, body.as_slice(), kept),
        (StatusCode::OK, &b"first"[..], 1)
    );
    answered.notify_one();
    // Wait until the runtime has seen the 408 arrive on the kept connection.
    let mut probe = [0; 1];
    let mut arrived = || {
        let kept = idle.direct.lock().unwrap();
        kept[0].1.stream.peek(&mut probe).now_or_never().is_some()
    };
    for _ in 0..200 {
        if arrived() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (status, body, _) = send(&idle, address, Method::GET).await.unwrap();
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"second"[..]));
}

#[tokio::test]
async fn a_chunked_answer_is_decoded_across_pieces_and_its_trailers_dropped() {
    let address = canned(
        vec![vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5;ext=1\r\nhel",
            b"lo\r\n1",
            b"0\r\n, and sixteen by\r",
            b"\n0\r\nExpires: never\r\n",
            b"\r\n",
        ]],
        false,
    )
    .await;
    let idle = Arc::new(Idle::default());
    let (status, body, kept) = send(&idle, address, Method::GET).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"hello, and sixteen by");
    assert_eq!(
        kept, 1,
        "a chunked answer read to its end leaves the connection usable"
    );
}

#[tokio::test]
async fn an_answer_without_a_length_ends_with_the_connection_which_is_not_kept() {
    let address = canned(
        vec![vec![
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil ",
            b"the end",
        ]],
        true,
    )
    .await;
    let idle = Arc::new(Idle::default());
    let (status, body, kept) = send(&idle, address, Method::GET).await.unwrap();
    assert_eq!(
        (status, body.as_slice(), kept),
        (StatusCode::OK, &b"until the end"[..], 0)
    );
}

#[tokio::test]
async fn head_and_204_answers_have_no_body_and_an_interim_answer_is_skipped() {
    let address = canned(
        vec![
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n"],
            vec![b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"],
        ],
        false,
    )
    .await;
    let idle = Arc::new(Idle::default());
    let (status, body, kept) = send(&idle, address, Method::HEAD).await.unwrap();
    assert_eq!((status, body.len(), kept), (StatusCode::OK, 0, 1));
    let (status, body, kept) = send(&idle, address, Method::OPTIONS).await.unwrap();
    assert_eq!((status, body.len(), kept), (StatusCode::NO_CONTENT, 0, 1));
}

#[tokio::test]
async fn connection_close_and_http_1_0_answers_leave_the_connection_unkept() {
    for head in [
        &b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"[..],
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ] {
        let address = canned(vec![vec![head]], true).await;
        let idle = Arc::new(Idle::default());
        let (status, body, kept) = send(&idle, address, Method::GET).await.unwrap();
        assert_eq!(
            (status, body.as_slice(), kept),
            (StatusCode::OK, &b"ok"[..], 0)
        );
    }
}

#[tokio::test]
async fn malformed_answers_are_errors_that_say_what_was_wrong() {
    let long = Box::leak(format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(70_000)).into_boxed_str());
    for (answer, says) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"[..],
            "two different",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
            "not a number",
        ),
        (b"SMTP ready\r\n\r\n", "does not parse"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"),
        (long.as_bytes(), "larger than 64 KiB"),
        (b"HTTP/1.1 200 OK\r\nContent-", "inside the answer's head"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            "lone chunked",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz",
            "lone chunked",
        ),
    ] {
        let address = canned(vec![vec![answer]], true).await;
        let idle = Arc::new(Idle::default());
        let err = send(&idle, address, Method::GET).await.unwrap_err();
        assert!(err.to_string().contains(says), "{err} (expected: {says})");
    }
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_not_a_short_answer() {
    let address = canned(
        vec![vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"]],
        true,
    )
    .await;
    let idle = Arc::new(Idle::default());
    let response = idle
        .send(&target(address), request(Method::GET))
        .await
        .unwrap();
    let err = response.into_body().collect().await.unwrap_err();
    assert!(err.to_string().contains("inside the body"), "{err}");
}

#[test]
fn the_request_head_carries_the_method_target_and_every_field() {
    let mut request = http::Request::builder()
        .method(Method::GET)
        .uri("/api/x?a=1")
        .header("host", "127.0.0.1:9000")
        .header("accept", "application/json")
        .header("x-tollgate-key-id", "7")
        .body(())
        .unwrap();
    request
        .headers_mut()
        .append("accept", HeaderValue::from_static("text/plain"));
    let (parts, ()) = request.into_parts();
    let mut head = Vec::new();
    write_head(&mut head, &parts, "/api/x?a=1");
    assert_eq!(
        String::from_utf8(head).unwrap(),
        "GET /api/x?a=1 HTTP/1.1\r\nhost: 127.0.0.1:9000\r\naccept: application/json\r\n\
         accept: text/plain\r\nx-tollgate-key-id: 7\r\n\r\n"
    );
}

#[test]
fn only_bodiless_idempotent_requests_from_http_1_1_or_2_clients_go_direct() {
    let parts = |method: Method, version: Version| {
        let mut request = http::Request::new(());
        (*request.method_mut(), *request.version_mut()) = (method, version);
        request.into_parts().0
    };
    assert!(takes(&parts(Method::GET, Version::HTTP_11), true));
    assert!(takes(&parts(Method::DELETE, Version::HTTP_2), true));
    assert!(!takes(&parts(Method::GET, Version::HTTP_11), false));
    assert!(!takes(&parts(Method::POST, Version::HTTP_11), true));
    assert!(!takes(&parts(Method::CONNECT, Version::HTTP_11), true));
    assert!(!takes(&parts(Method::GET, Version::HTTP_10), true));
}

#[test]
fn a_head_fed_a_byte_at_a_time_parses_once_whole_and_leaves_the_body() {
    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Seen: a, b\r\n\r\nbody";
    let head_len = answer.len() - 4;
    let mut read = BytesMut::new();
    for (i, byte) in answer[..head_len - 1].iter().enumerate() {
        read.extend_from_slice(&[*byte]);
        let parsed = parse_head(&mut read, &Method::GET).unwrap();
        assert!(parsed.is_none(), "parsed at byte {i}");
    }
    read.extend_from_slice(&answer[head_len - 1..head_len + 1]);
    let (parts, framing, reusable) = parse_head(&mut read, &Method::GET).unwrap().unwrap();
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.headers["x-seen"], "a, b");
    assert_eq!((framing, reusable), (Framing::Length(4), true));
    assert_eq!(&read[..], b"b", "what follows the head stays");
}

#[test]
fn a_chunked_body_fed_a_byte_at_a_time_is_decoded_whole_to_its_end() {
    let wire = b"5;ext=\"a b\"\r\nhello\r\n10 \r\n, and sixteen by\r\n0\r\nExpires: never\r\n\r\n";
    let (mut read, mut framing, mut data) =
        (BytesMut::new(), Framing::Chunked(Chunk::Size), Vec::new());
    for byte in wire {
        read.extend_from_slice(&[*byte]);
        while let Framing::Chunked(chunk) = framing {
            let before = (read.len(), framing);
            if let Some(bytes) = step_chunked(&mut read, &mut framing, chunk).unwrap() {
                data.extend_from_slice(&bytes);
            }
            if (read.len(), framing) == before {
                break;
            }
        }
    }
    assert_eq!(framing, Framing::Empty, "the body ended");
    assert_eq!(data, b"hello, and sixteen by");
    assert!(read.is_empty(), "the trailers were read and dropped");
}

#[test]
fn chunk_size_lines_are_read_strictly() {
    assert_eq!(chunk_size(b"1a").unwrap(), 26);
    assert_eq!(chunk_size(b"1A ; name=value").unwrap(), 26);
    assert_eq!(chunk_size(b"5 ").unwrap(), 5);
    assert_eq!(chunk_size(b"ffffffffffffffff").unwrap(), u64::MAX);
    for line in [
        &b""[..],
        b";x",
        b" 5",
        b"5;x\nabc",
        b"5 6",
        b"zz",
        b"10000000000000000",
    ] {
        assert!(
            chunk_size(line).is_err(),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[tokio::test]
async fn a_length_beside_chunked_coding_is_dropped_and_the_connection_not_kept() {
    let address = canned(
        vec![vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ]],
        false,
    )
    .await;
    let idle = Arc::new(Idle::default());
    let response = idle
        .send(&target(address), request(Method::GET))
        .await
        .unwrap();
    assert!(!response.headers().contains_key(CONTENT_LENGTH));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    assert_eq!(idle.direct.lock().unwrap().len(), 0);
}

/// A kept connection that fails before answering gets the request once more,
/// on a new connection; the new one failing too is the answer (a `502`).
#[tokio::test]
async fn a_kept_connection_failing_before_an_answer_sends_the_request_once_more() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let (accepted, seen) = (Arc::new(AtomicUsize::new(0)), Arc::clone(&requests));
    let counted = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = [0; 1024];
                // The first connection answers its first request, then every
                // connection reads one request and closes without answering.
                if first {
                    let _ = stream.read(&mut buf).await.unwrap();
                    seen.fetch_add(1, Ordering::SeqCst);
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await
                        .unwrap();
                }
                if stream.read(&mut buf).await.unwrap() > 0 {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    let idle = Arc::new(Idle::default());
    let (status, _, kept) = send(&idle, address, Method::GET).await.unwrap();
    assert_eq!((status, kept), (StatusCode::OK, 1));
    let err = send(&idle, address, Method::DELETE).await.unwrap_err();
    assert!(err.to_string().contains("without answering"), "{err}");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(requests.load(Ordering::SeqCst), 3, "the DELETE went twice");
}
