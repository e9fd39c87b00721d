//! A real server on a random port, and a minimal HTTP/1.1 client that can also send what a
//! well-behaved client never would (used by the error-path tests).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use fmrecall::api::AppState;
use fmrecall::config::Settings;
use fmrecall::server::Application;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running service; dropped with the test's runtime.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state (to look at the serving model).
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Lower-cased header names with values.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `item_id`s of a recall answer's `items`, in order.
    pub fn item_ids(&self) -> Vec<String> {
        self.json()["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(&self.body)))
            .iter()
            .map(|i| i["item_id"].as_str().unwrap().to_string())
            .collect()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the API's error shape and returns its code.
    pub fn error_code(&self) -> String {
        let j = self.json();
        assert!(
            j["error"]["message"].is_string(),
            "not the error shape: {j}"
        );
        j["error"]["code"].as_str().expect("error code").to_string()
    }
}

/// Settings for tests: random port, the given model, optional admin token.
pub fn test_settings(model: &Path, token: &str) -> Settings {
    let mut s = Settings::load(None).unwrap();
    s.server.bind = "127.0.0.1:0".into();
    s.server.model = model.to_path_buf();
    s.server.admin_token = token.into();
    // A database of its own beside the model, so tests never touch the working folder.
    s.database.url = format!("sqlite://{}/test-registry.db", model.display());
    s
}

/// Settings of a replica that follows the registry at `url` (polling every 0.1 s), with this
/// admin token.
pub fn replica_settings(url: &str, token: &str) -> Settings {
    let mut s = Settings::load(None).unwrap();
    s.server.bind = "127.0.0.1:0".into();
    s.server.model = "".into();
    s.server.admin_token = token.into();
    s.database.url = url.into();
    s.database.poll_seconds = 0.1;
    s
}

impl TestApp {
    /// Starts the service and waits until it is ready.
    pub async fn spawn(settings: Settings) -> TestApp {
        let app = Application::build(&settings).await.expect("starts");
        let addr = app.local_addr().unwrap();
        let state = app.state();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            if let Err(e) = app
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
            {
                eprintln!("the test service ended: {e}");
            }
        });
        let test_app = TestApp {
            addr,
            state,
            stop: Some(stop),
        };
        for _ in 0..600 {
            if test_app.get("/readyz").await.status == 200 {
                return test_app;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("service never became ready");
    }

    /// Sends raw bytes and reads the whole answer (the request should say `Connection: close`).
    pub async fn raw(&self, request: &[u8]) -> Answer {
        send_raw(self.addr, request).await
    }

    /// A request with an optional JSON body and extra headers.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        let body = body.unwrap_or(b"");
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ));
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.raw(&bytes).await
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Answer {
        self.request("GET", path, None, &[]).await
    }

    /// POST a JSON value.
    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.request("POST", path, Some(body.to_string().as_bytes()), &[])
            .await
    }

    /// Stops the service.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Sends raw bytes to `addr` on a new connection and reads the whole answer (the request should say
/// `Connection: close`).
pub async fn send_raw(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    parse_answer(&bytes)
}

/// One HTTP/1.1 request: method, path, extra headers and a body (sent with its length).
pub fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A keep-alive HTTP/1.1 connection that sends one request at a time and reads answers framed by
/// `Content-Length`, as a load generator's connection does.
pub struct KeepAlive {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl KeepAlive {
    /// Opens the connection.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<KeepAlive> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(KeepAlive {
            stream: tokio::io::BufReader::new(stream),
        })
    }

    /// Sends a request and reads its answer; an error if the connection breaks or the answer is
    /// not framed by `Content-Length`.
    pub async fn send(&mut self, request: &[u8]) -> std::io::Result<Answer> {
        use tokio::io::AsyncBufReadExt;
        self.stream.get_mut().write_all(request).await?;
        let mut head = Vec::new();
        loop {
            let before = head.len();
            self.stream.read_until(b'\n', &mut head).await?;
            if head.len() == before {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if head.ends_with(b"\r\n\r\n") {
                break;
            }
        }
        let mut answer = parse_answer(&head);
        let length: usize = answer
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| std::io::Error::other("answer without Content-Length"))?;
        answer.body = vec![0; length];
        self.stream.read_exact(&mut answer.body).await?;
        Ok(answer)
    }
}

/// Parses a whole HTTP/1.1 answer (head and body as received).
pub fn parse_answer(bytes: &[u8]) -> Answer {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = bytes[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
}
