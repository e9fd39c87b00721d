//! Hostile input, by hand, against the real binary (`fmrecall serve` as a child process): absurd
//! numbers, deep nesting, invalid UTF-8, ids made of path characters, 10 MB bodies, clients that
//! send their headers a byte at a time or nothing at all, thousands of connections at once, and a
//! server that runs out of file descriptors. Each time the service answers in its error shape or
//! closes the connection, never hangs and never panics; a canary client keeps being served; the
//! server's memory (its peak resident set, read from /proc) and its open descriptors stay bounded.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::child::{raise_open_file_limit, ChildServer, Launch};
use common::http::{parse_answer, request_bytes, Answer};
use fmrecall::data::FeatureSet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "hostile-admin";
const WRITER: &str = "hostile-writer";

/// A small hybrid model (400 users, 300 items) in a folder of its own.
fn model() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let job = common::synthetic_job(dir.path(), 3, FeatureSet::Hybrid);
    fmrecall::pipeline::run_train(&job, &mut |_| {}).unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// The binary serving `model`, with admin and write tokens, a SQLite catalog beside the model, and
/// the extra settings given.
fn serve(model: &Path, extra: &[(&'static str, &str)]) -> ChildServer {
    let mut env = vec![
        ("FMRECALL_SERVER__ADMIN_TOKEN", ADMIN.to_string()),
        ("FMRECALL_SERVER__WRITE_TOKEN", WRITER.to_string()),
        (
            "FMRECALL_DATABASE__URL",
            format!("sqlite://{}/catalog.db", model.display()),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    ChildServer::spawn(Launch {
        env,
        model: Some(model),
        ..Launch::default()
    })
}

/// What came back on one connection.
#[derive(Debug)]
enum Outcome {
    /// A complete head (and whatever body arrived).
    Answer(Answer),
    /// The server closed (or reset) the connection before a complete answer.
    Closed,
}

/// Sends `request` on a new connection (writing and reading at once, so that a server answering
/// before it has read the whole body is heard) and waits at most `limit` for the connection to end.
/// Panics if the server holds the connection longer: that is the failure these tests look for.
async fn exchange(addr: SocketAddr, request: Vec<u8>, limit: Duration) -> Outcome {
    let stream = TcpStream::connect(addr).await.expect("connects");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        for chunk in request.chunks(64 * 1024) {
            if wr.write_all(chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        // Keep the write half open: shutting it down would look like a client going away.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    bytes.extend_from_slice(&buf[..n]);
                    if complete(&bytes) {
                        break;
                    }
                }
            }
        }
    })
    .await;
    writer.abort();
    assert!(read.is_ok(), "the server held the connection for {limit:?}");
    if bytes.windows(4).any(|w| w == b"\r\n\r\n") {
        Outcome::Answer(parse_answer(&bytes))
    } else {
        Outcome::Closed
    }
}

/// Whether `bytes` hold a head and the whole body its Content-Length announces.
fn complete(bytes: &[u8]) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let answer = parse_answer(&bytes[..end + 4]);
    let length: usize = answer
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    bytes.len() >= end + 4 + length
}

/// Asserts the API's error shape: JSON `{"error": {"code", "message", "field"?}}` and nothing else.
fn assert_error_shape(label: &str, a: &Answer) {
    assert_eq!(
        a.header("content-type"),
        Some("application/json"),
        "{label}: {a:?}"
    );
    let body: serde_json::Value = serde_json::from_slice(&a.body)
        .unwrap_or_else(|e| panic!("{label}: {e}: {}", String::from_utf8_lossy(&a.body)));
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{label}: {body}"));
    assert!(
        error["code"].is_string() && error["message"].is_string(),
        "{label}: {body}"
    );
    assert!(
        error
            .keys()
            .all(|k| ["code", "message", "field"].contains(&k.as_str())),
        "{label}: {body}"
    );
    assert_eq!(body.as_object().unwrap().len(), 1, "{label}: {body}");
}

/// A well-behaved client sending a recall every 20 ms on fresh connections while a test does its
/// worst; each answer's status and latency are kept.
struct Canary {
    stop: Arc<AtomicBool>,
    count: Arc<std::sync::atomic::AtomicUsize>,
    thread: std::thread::JoinHandle<Vec<(Result<u16, String>, Duration)>>,
}

impl Canary {
    fn start(addr: SocketAddr) -> Canary {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let thread = {
            let (stop, count) = (stop.clone(), count.clone());
            std::thread::spawn(move || {
                let body = br#"{"user_id": "3", "k": 5}"#;
                let request = request_bytes("POST", "/v1/recall", &[("Connection", "close")], body);
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    seen.push((blocking_status(addr, &request), started.elapsed()));
                    count.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
                seen
            })
        };
        Canary {
            stop,
            count,
            thread,
        }
    }

    /// Lets at least five requests finish, stops, and asserts that every request got a 200 within
    /// two seconds; returns how many ran.
    fn all_served(self, label: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.count.load(Ordering::Relaxed) < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop.store(true, Ordering::Relaxed);
        let seen = self.thread.join().unwrap();
        assert!(
            seen.len() >= 3,
            "{label}: only {} canary requests",
            seen.len()
        );
        for (status, latency) in &seen {
            assert_eq!(status, &Ok(200), "{label}: canary failed");
            assert!(
                *latency < Duration::from_secs(2),
                "{label}: a canary request took {latency:?}"
            );
        }
        seen.len()
    }
}

/// The status of one request on a fresh blocking connection.
fn blocking_status(addr: SocketAddr, request: &[u8]) -> Result<u16, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    String::from_utf8_lossy(bytes.get(9..12).ok_or("no status line")?)
        .parse()
        .map_err(|_| "no status line".to_string())
}

/// Asserts the server lives, logged no panic and still answers.
fn assert_healthy(server: &mut ChildServer, label: &str) {
    assert!(
        server.alive(),
        "{label}: the server died:\n{}",
        server.log()
    );
    assert!(
        !server.log().contains("panicked"),
        "{label}: a panic:\n{}",
        server.log()
    );
    assert_eq!(server.status_of("/readyz").unwrap(), 200, "{label}");
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    request_bytes("POST", path, &[("Connection", "close")], body)
}

fn get(path: &str) -> Vec<u8> {
    request_bytes("GET", path, &[("Connection", "close")], b"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_numbers_deep_nesting_and_invalid_utf8_get_a_400_in_the_error_shape() {
    let (_dir, model) = model();
    let mut server = serve(&model, &[]);
    let canary = Canary::start(server.addr);
    let huge_integer = format!(r#"{{"user_id": "3", "k": 1{}}}"#, "0".repeat(100_000));
    let nested_arrays = format!(r#"{{"user_id": "3", "features": {}}}"#, "[".repeat(100_000));
    let nested_objects = format!(r#"{{"user_id": {}}}"#, r#"{"a":"#.repeat(50_000));
    let nested_tensor = format!(r#"{{"x": {}1{}}}"#, "[".repeat(120), "]".repeat(120));
    let deep_layer = format!(r#"{{"x": {}}}"#, "[".repeat(100_000));
    let auth = format!("Bearer {WRITER}");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("k = 1e400", post("/v1/recall", br#"{"user_id": "3", "k": 1e400}"#)),
        ("k = 2^64", post("/v1/recall", br#"{"user_id": "3", "k": 18446744073709551616}"#)),
        ("k = 2^64 - 1", post("/v1/recall", br#"{"user_id": "3", "k": 18446744073709551615}"#)),
        ("k = -2^63 - 1", post("/v1/recall", br#"{"user_id": "3", "k": -9223372036854775809}"#)),
        ("k = 1e-400", post("/v1/recall", br#"{"user_id": "3", "k": 1e-400}"#)),
        ("k with 100,000 digits", post("/v1/recall", huge_integer.as_bytes())),
        ("ef = 2^64 - 1", post("/v1/recall", br#"{"user_id": "3", "ef": 18446744073709551615}"#)),
        ("batch k = 1e30", post("/v1/recall/batch", br#"{"queries": [{"user_id": "3", "k": 1e30}]}"#)),
        ("similar k = 2^64", get("/v1/items/5/similar?k=18446744073709551616")),
        ("items limit = 2^64 - 1", get("/v1/items?limit=18446744073709551615")),
        ("users limit = -1", get("/v1/users/3?limit=-1")),
        (
            "event weight 1e309",
            request_bytes(
                "POST",
                "/v1/events",
                &[("Connection", "close"), ("Authorization", &auth)],
                br#"{"events": [{"user_id": "3", "item_id": "5", "weight": 1e309}]}"#,
            ),
        ),
        (
            "event timestamp 2^63",
            request_bytes(
                "POST",
                "/v1/events",
                &[("Connection", "close"), ("Authorization", &auth)],
                br#"{"events": [{"user_id": "3", "item_id": "5", "timestamp": 9223372036854775808}]}"#,
            ),
        ),
        ("fm index 2^32 - 1", post(
            "/v1/layers/fm",
            br#"{"w0": 0.0, "w": [1.0], "v": [[1.0]], "indices": [4294967295], "values": [1.0]}"#,
        )),
        ("stability steps 1e12", post(
            "/v1/layers/rnn/stability",
            br#"{"w": [[0.5]], "x": [1.0], "steps": 1000000000000}"#,
        )),
        ("100,000 nested arrays", post("/v1/recall", nested_arrays.as_bytes())),
        ("50,000 nested objects", post("/v1/recall", nested_objects.as_bytes())),
        ("a 120-deep tensor", post("/v1/layers/layernorm", nested_tensor.as_bytes())),
        ("a 100,000-deep layer input", post("/v1/layers/batchnorm", deep_layer.as_bytes())),
        ("an array for the body", post("/v1/recall", br#"["3", null, 5]"#)),
        ("an array for a layer body", post("/v1/layers/dropout", br#"[[[1.0, 2.0]], 0.5]"#)),
        ("a string for the body", post("/v1/score", br#""user""#)),
        ("invalid UTF-8 in a string", post("/v1/recall", b"{\"user_id\": \"\xff\xfe\xfd\"}")),
        ("invalid UTF-8 in a key", post("/v1/score", b"{\"\xc3\x28\": 1}")),
        ("a lone surrogate escape", post("/v1/recall", br#"{"user_id": "\udc00"}"#)),
        ("invalid UTF-8, percent-encoded in the path", get("/v1/users/%FF%FE")),
    ];
    let mut answered = 0;
    for (label, request) in cases {
        match exchange(server.addr, request, Duration::from_secs(15)).await {
            Outcome::Answer(a) => {
                assert_eq!(
                    a.status,
                    400,
                    "{label}: {}",
                    String::from_utf8_lossy(&a.body)
                );
                assert_error_shape(label, &a);
                answered += 1;
            }
            Outcome::Closed => panic!("{label}: closed without an answer"),
        }
    }
    // A query string is decoded leniently (invalid UTF-8 becomes U+FFFD): an answer, not an error.
    for path in [
        "/v1/items?q=%C3%28",
        "/v1/items?q=%00%00",
        "/v1/items?q=%FF&limit=3",
    ] {
        match exchange(server.addr, get(path), Duration::from_secs(15)).await {
            Outcome::Answer(a) => assert_eq!(a.status, 200, "{path}"),
            Outcome::Closed => panic!("{path}: closed without an answer"),
        }
    }
    // What hyper refuses before any route sees it: an answer of its own, or a closed connection.
    let mut raw_line =
        b"GET /v1/users/\xff\xfe HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec();
    let mut header_bytes =
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Bad: \xff\xfe\r\nConnection: close\r\n\r\n"
            .to_vec();
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\n{}Connection: close\r\n\r\n",
        (0..10_000)
            .map(|i| format!("X-{i}: {i}\r\n"))
            .collect::<String>()
    );
    for (label, request) in [
        (
            "raw invalid UTF-8 in the request line",
            std::mem::take(&mut raw_line),
        ),
        (
            "raw invalid UTF-8 in a header",
            std::mem::take(&mut header_bytes),
        ),
        ("a 1 MiB header", huge_header.into_bytes()),
        ("10,000 headers", many_headers.into_bytes()),
        (
            "not HTTP at all",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n".to_vec(),
        ),
    ] {
        match exchange(server.addr, request, Duration::from_secs(15)).await {
            Outcome::Answer(a) => assert!(
                (a.status == 200 && label.contains("header")) || (400..500).contains(&a.status),
                "{label}: {a:?}"
            ),
            Outcome::Closed => {}
        }
    }
    let canary_requests = canary.all_served("absurd input");
    assert_healthy(&mut server, "absurd input");
    println!("hostile input: {answered} requests answered 400 in the error shape; canary {canary_requests} requests, all 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_made_of_path_characters_are_only_ids_and_reload_reads_only_regular_files() {
    let (_dir, model) = model();
    let mut server = serve(&model, &[]);
    let addr = server.addr;
    let send = |request: Vec<u8>| exchange(addr, request, Duration::from_secs(15));
    let answer = |o: Outcome| match o {
        Outcome::Answer(a) => a,
        Outcome::Closed => panic!("closed without an answer"),
    };
    for path in [
        "/v1/items/..%2F..%2F..%2Fetc%2Fpasswd/similar",
        "/v1/items/%2e%2e/similar",
        "/v1/items/..%5C..%5Cwindows/similar",
        "/v1/items/a%00b/similar",
        "/v1/users/..%2F..%2Fetc%2Fshadow",
        "/v1/users/%2F",
    ] {
        let a = answer(send(get(path)).await);
        assert_eq!(
            a.status,
            404,
            "{path}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_error_shape(path, &a);
    }
    let a = answer(
        send(post(
            "/v1/recall",
            br#"{"user_id": "../../../../etc/passwd"}"#,
        ))
        .await,
    );
    assert_eq!(
        (a.status, a.json()["error"]["code"].clone()),
        (404, "unknown_user".into())
    );
    let a = answer(
        send(post(
            "/v1/recall",
            br#"{"user_id": "3", "exclude_items": ["../1", "/", "\u0000"]}"#,
        ))
        .await,
    );
    assert_eq!(a.status, 200);

    // A user id full of path characters is stored and served as an id, nothing more.
    let auth = format!("Bearer {WRITER}");
    let put = request_bytes(
        "PUT",
        "/v1/users/..%2F..%2Fevil%5Cid",
        &[("Connection", "close"), ("Authorization", &auth)],
        br#"{"features": ["region:r1"]}"#,
    );
    let a = answer(send(put).await);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["user_id"], "../../evil\\id");
    let a = answer(
        send(post(
            "/v1/recall",
            br#"{"user_id": "../../evil\\id", "k": 3}"#,
        ))
        .await,
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["items"].as_array().unwrap().len(), 3);
    let a = answer(send(get("/v1/users/..%2F..%2Fevil%5Cid")).await);
    assert_eq!(
        (a.status, a.json()["source"].clone()),
        (200, "catalog".into())
    );

    // The admin reload reads regular files only: a device would be read for ever, filling memory.
    let auth = format!("Bearer {ADMIN}");
    for (path, says) in [
        ("/dev/zero", "not a regular file"),
        ("/dev/urandom", "not a regular file"),
        ("/proc/self/fd", "No such file"),
        ("/etc/passwd", "not an fmrecall model file"),
        (
            "../../../../../../etc/hostname",
            "not an fmrecall model file",
        ),
    ] {
        let body = serde_json::json!({ "path": path }).to_string();
        let reload = request_bytes(
            "POST",
            "/v1/admin/reload",
            &[("Connection", "close"), ("Authorization", &auth)],
            body.as_bytes(),
        );
        let started = Instant::now();
        let a = answer(send(reload).await);
        assert_eq!(
            a.status,
            422,
            "{path}: {}",
            String::from_utf8_lossy(&a.body)
        );
        let message = a.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            message.contains(says)
                || (path.contains("hostname") && message.contains("No such file")),
            "{path}: {message}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path}: took {:?}",
            started.elapsed()
        );
    }
    assert_healthy(&mut server, "path characters");
    assert!(
        server.peak_rss_kib() < 512 * 1024,
        "peak RSS {} KiB",
        server.peak_rss_kib()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabyte_bodies_are_refused_without_being_buffered() {
    let (_dir, model) = model();
    let mut server = serve(&model, &[]);
    let canary = Canary::start(server.addr);
    let baseline = server.peak_rss_kib();
    let ten_mb = vec![b' '; 10 << 20];
    let mut sent = Vec::new();
    for (i, path) in [
        "/v1/recall",
        "/v1/score",
        "/v1/layers/lstm",
        "/v1/events",
        "/healthz",
    ]
    .iter()
    .cycle()
    .take(20)
    .enumerate()
    {
        let mut body = b"{\"user_id\": \"3\", \"pad\": \"".to_vec();
        body.extend_from_slice(&ten_mb);
        body.extend_from_slice(b"\"}");
        let method = if *path == "/healthz" { "GET" } else { "POST" };
        // The write route with its token: without one, the token layer answers 401 before any
        // of the body is read; with it, the body limit is what refuses.
        let auth = format!("Bearer {WRITER}");
        let auth = if *path == "/v1/events" {
            auth.as_str()
        } else {
            ""
        };
        let request = if i % 2 == 0 {
            request_bytes(
                method,
                path,
                &[("Connection", "close"), ("Authorization", auth)],
                &body,
            )
        } else {
            // Chunked: no length to refuse up front, so the limit must stop the reading.
            let mut r = format!(
                "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .into_bytes();
            for chunk in body.chunks(1 << 16) {
                r.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                r.extend_from_slice(chunk);
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(b"0\r\n\r\n");
            r
        };
        let addr = server.addr;
        let label = format!("{path} #{i}");
        sent.push(tokio::spawn(async move {
            (
                label,
                exchange(addr, request, Duration::from_secs(30)).await,
            )
        }));
    }
    let mut refused = 0;
    for task in sent {
        let (label, outcome) = task.await.unwrap();
        match outcome {
            Outcome::Answer(a) if label.starts_with("/healthz") => {
                // Routes that take no body answer without reading it.
                assert_eq!(a.status, 200, "{label}")
            }
            Outcome::Answer(a) => {
                assert_eq!(
                    a.status,
                    413,
                    "{label}: {}",
                    String::from_utf8_lossy(&a.body)
                );
                assert_error_shape(&label, &a);
                refused += 1;
            }
            // The server answered and closed while the client was still writing; the reset may
            // overtake the answer. Closing is a clean refusal too.
            Outcome::Closed => {}
        }
    }
    assert!(
        refused >= 8,
        "only {refused} of 16 oversized bodies got their 413"
    );
    let peak = server.peak_rss_kib();
    canary.all_served("10 MB bodies");
    assert_healthy(&mut server, "10 MB bodies");
    // 200 MB were offered; nothing like it may be kept (the limit is 1 MiB a request).
    assert!(
        peak < baseline + 64 * 1024,
        "peak RSS grew from {baseline} KiB to {peak} KiB"
    );
    println!("10 MB bodies: {refused}/16 answered 413, peak RSS {baseline} -> {peak} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off_while_others_are_served() {
    let (_dir, model) = model();
    let mut server = serve(
        &model,
        &[
            ("FMRECALL_SERVER__HEADER_READ_TIMEOUT_MS", "1000"),
            ("FMRECALL_SERVER__REQUEST_TIMEOUT_MS", "1500"),
        ],
    );
    let addr = server.addr;
    let fds_before = server.open_fds();
    let canary = Canary::start(addr);

    // 200 clients send a header a byte every 50 ms and never finish; 50 send nothing at all.
    let mut held = Vec::new();
    for i in 0..250 {
        held.push(tokio::spawn(async move {
            let started = Instant::now();
            let (mut rd, mut wr) = TcpStream::connect(addr).await.unwrap().into_split();
            let trickle = i < 200;
            let request = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ".to_vec();
            let mut sent = 0usize;
            let mut buf = [0u8; 1024];
            loop {
                tokio::select! {
                    // Anything from the server (an end of file, a reset, an answer of its own
                    // before closing) means it let go of the connection.
                    _ = rd.read(&mut buf) => return started.elapsed(),
                    _ = tokio::time::sleep(Duration::from_millis(50)), if trickle => {
                        let byte = request.get(sent).copied().unwrap_or(b'a');
                        if wr.write_all(&[byte]).await.is_err() {
                            return started.elapsed();
                        }
                        sent += 1;
                    }
                    _ = tokio::time::sleep(Duration::from_secs(20)), if !trickle => {
                        return started.elapsed();
                    }
                }
                if started.elapsed() > Duration::from_secs(20) {
                    return started.elapsed();
                }
            }
        }));
    }
    // A client that is slow but done within the timeout is served.
    let slow_but_complete = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        for b in b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" {
            s.write_all(&[*b]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut bytes = Vec::new();
        s.read_to_end(&mut bytes).await.unwrap();
        parse_answer(&bytes).status
    });
    // A client whose headers are complete but whose body never comes gets the request timeout.
    let slow_body = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /v1/recall HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            .await
            .unwrap();
        let started = Instant::now();
        let mut bytes = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), async {
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                bytes.extend_from_slice(&buf[..n]);
                if complete(&bytes) {
                    break;
                }
            }
        })
        .await;
        (parse_answer(&bytes), started.elapsed())
    });

    let mut longest = Duration::ZERO;
    for h in held {
        longest = longest.max(h.await.unwrap());
    }
    assert!(
        longest < Duration::from_secs(6),
        "a slow or idle client held its connection for {longest:?} (header timeout 1 s)"
    );
    assert_eq!(slow_but_complete.await.unwrap(), 200);
    let (answer, waited) = slow_body.await.unwrap();
    assert_eq!(answer.status, 408, "{answer:?}");
    assert_error_shape("slow body", &answer);
    assert!(
        waited < Duration::from_secs(6),
        "the slow body was held {waited:?}"
    );
    let canary_requests = canary.all_served("slow clients");

    // Every connection the slow clients opened is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.open_fds() > fds_before + 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        server.open_fds() <= fds_before + 5,
        "{} descriptors open, {fds_before} before",
        server.open_fds()
    );
    assert_healthy(&mut server, "slow clients");
    println!("slow clients: 250 cut off within {longest:?}; slow body 408 after {waited:?}; canary {canary_requests} requests, all 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_connections_at_once_are_answered_or_shed_and_memory_stays_bounded() {
    let limit = raise_open_file_limit();
    // Each connection costs this process one descriptor and the server one.
    let n = 4000.min((limit as usize).saturating_sub(500));
    assert!(
        n >= 1000,
        "the open-file limit {limit} allows only {n} connections"
    );
    let (_dir, model) = model();
    let mut server = serve(&model, &[]);
    let addr = server.addr;
    let baseline = server.peak_rss_kib();
    let fds_before = server.open_fds();
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Barrier::new(n));
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let gate = gate.clone();
        clients.push(tokio::spawn(async move {
            let connected = TcpStream::connect(addr).await;
            // Everyone connected before anyone asks: the server holds n connections at once.
            gate.wait().await;
            let mut s = connected.map_err(|e| e.to_string())?;
            let body = format!(r#"{{"user_id": "{}", "k": 10}}"#, i % 400);
            let request = request_bytes(
                "POST",
                "/v1/recall",
                &[("Connection", "close")],
                body.as_bytes(),
            );
            s.write_all(&request).await.map_err(|e| e.to_string())?;
            let mut bytes = Vec::new();
            tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut bytes))
                .await
                .map_err(|_| "held".to_string())?
                .map_err(|e| e.to_string())?;
            Ok::<Answer, String>(parse_answer(&bytes))
        }));
    }
    let (mut ok, mut shed) = (0, 0);
    for c in clients {
        let answer = c
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("a connection failed: {e}"));
        match answer.status {
            200 => ok += 1,
            503 => {
                assert_error_shape("shed", &answer);
                assert_eq!(answer.json()["error"]["code"], "overloaded");
                shed += 1;
            }
            other => panic!("status {other}: {}", String::from_utf8_lossy(&answer.body)),
        }
    }
    let elapsed = started.elapsed();
    let peak = server.peak_rss_kib();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.open_fds() > fds_before + 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        server.open_fds() <= fds_before + 5,
        "descriptors leaked: {}",
        server.open_fds()
    );
    assert!(ok > 0);
    // A connection's buffers and task are a few KiB (about 6 measured): at most 16 KiB each.
    assert!(
        peak < baseline + 16 * n as u64,
        "peak RSS grew from {baseline} KiB to {peak} KiB for {n} connections"
    );
    let canary = Canary::start(addr);
    std::thread::sleep(Duration::from_millis(300));
    canary.all_served("after the burst");
    assert_healthy(&mut server, "thousands of connections");
    println!("{n} connections at once: {ok} answered 200, {shed} shed with 503, in {elapsed:?}; peak RSS {baseline} -> {peak} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_out_of_file_descriptors_keeps_running_and_recovers() {
    let (_dir, model) = model();
    let mut server = ChildServer::spawn(Launch {
        env: vec![("FMRECALL_SERVER__HEADER_READ_TIMEOUT_MS", "30000".into())],
        model: Some(&model),
        max_open_files: Some(64),
    });
    let addr = server.addr;
    // Idle connections until the server can accept no more (the kernel still completes them).
    let mut held = Vec::new();
    for _ in 0..150 {
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => held.push(s),
            _ => break,
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains("accepting a connection failed") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        server.log().contains("accepting a connection failed"),
        "the server never ran out of descriptors ({} open)",
        server.open_fds()
    );
    assert!(
        server.alive(),
        "the server died out of descriptors:\n{}",
        server.log()
    );
    drop(held);
    // Descriptors free again: the server accepts and answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = Err("never tried".to_string());
    while Instant::now() < deadline {
        status = blocking_status(addr, &get("/healthz"));
        if status == Ok(200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, Ok(200));
    assert_eq!(
        blocking_status(addr, &post("/v1/recall", br#"{"user_id": "3"}"#)),
        Ok(200)
    );
    assert_healthy(&mut server, "out of descriptors");
    assert_eq!(server.terminate(), Some(0), "SIGTERM exits cleanly");
}
