//! The real `fmrecall serve` binary as a child process: its address, its log, its memory and its
//! file descriptors, read from `/proc` while it runs. Killed when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `fmrecall serve`.
pub struct ChildServer {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<String>>,
}

/// What to start: environment variables beyond the defaults below, and an optional limit on open
/// files (RLIMIT_NOFILE, soft and hard) for the child alone.
#[derive(Default)]
pub struct Launch<'a> {
    /// `FMRECALL_*` settings.
    pub env: Vec<(&'a str, String)>,
    /// `--model`; none follows the registry of `FMRECALL_DATABASE__URL`.
    pub model: Option<&'a Path>,
    /// Most open files of the server process.
    pub max_open_files: Option<u64>,
}

impl ChildServer {
    /// Starts the binary on a free loopback port with JSON logs and no database unless `launch`
    /// sets one, and waits until `/readyz` answers 200.
    pub fn spawn(launch: Launch<'_>) -> ChildServer {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fmrecall"));
        cmd.args(["serve", "--bind", "127.0.0.1:0"]);
        if let Some(model) = launch.model {
            cmd.arg("--model").arg(model);
        }
        cmd.env("FMRECALL_SERVER__LOG_FORMAT", "json")
            .env("FMRECALL_DATABASE__URL", "")
            .envs(launch.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(limit) = launch.max_open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("fmrecall serve starts");
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut addr_tx = Some(addr_tx);
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(addr) = listening_addr(&line) {
                        if let Some(tx) = addr_tx.take() {
                            let _ = tx.send(addr);
                        }
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let addr = match addr_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("the server never listened:\n{}", log.lock().unwrap());
            }
        };
        let server = ChildServer { addr, child, log };
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(200) = server.status_of("/readyz") {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server never became ready:\n{}", server.log());
    }

    /// The status of a GET on a fresh connection (blocking; for readiness and canaries).
    pub fn status_of(&self, path: &str) -> std::io::Result<u16> {
        self.get(path).map(|(status, _)| status)
    }

    /// A GET on a fresh connection (blocking): status and body.
    pub fn get(&self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )?;
        let mut bytes = Vec::new();
        s.read_to_end(&mut bytes)?;
        if bytes.len() < 12 || !bytes.windows(4).any(|w| w == b"\r\n\r\n") {
            return Err(std::io::Error::other("no complete answer"));
        }
        let answer = super::http::parse_answer(&bytes);
        Ok((answer.status, answer.body))
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        self.status_field("VmRSS")
    }

    /// The most resident memory it ever had, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_field("VmHWM")
    }

    /// Its open file descriptors.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then its exit status (within 30 s, else SIGKILL and `None`).
    pub fn terminate(mut self) -> Option<i32> {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn status_field(&self, name: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/PID/status"))
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address of the `listening` log line (`{"fields":{"message":"listening","addr":"…"}}`).
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?;
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    fields.get("addr")?.as_str()?.parse().ok()
}

/// Raises this process's soft limit on open files to its hard limit (children inherit it) and
/// returns the new limit.
pub fn raise_open_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}
