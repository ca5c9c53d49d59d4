//! A `redis-server` of the test's own, on a free port of 127.0.0.1, in a
//! temporary directory, without persistence; killed by its pid when
//! dropped (also when the test panics).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub(crate) struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

/// Whether a missing `redis-server` fails the test (in CI) or skips it.
fn required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

impl RedisServer {
    /// Starts a server, or `None` (after saying so) when there is no
    /// `redis-server` binary and `CI` is not set. In CI a missing binary
    /// fails the test.
    pub(crate) fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(port)
    }

    /// Starts a server on `port`.
    pub(crate) fn start_on(port: u16) -> Option<Self> {
        let dir =
            std::env::temp_dir().join(format!("steadfast-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut server = Self {
            child: None,
            port,
            dir,
        };
        if !server.spawn() {
            let message = "redis-server not found: install it (apt-get install redis-server) \
                           to run the Redis tests";
            if required() {
                panic!("{message}; CI is set, so this test fails");
            }
            // Straight to stderr, past the test harness's capture, so that
            // the skip shows in the output.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED: {message}");
            return None;
        }
        Some(server)
    }

    /// Starts the process and waits for its "Ready" line; false when there
    /// is no binary.
    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--dir", self.dir.to_str().expect("a UTF-8 path")])
            .args(["--logfile", ""])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            Err(e) => panic!("redis-server did not start: {e}"),
        };
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("Ready to accept connections") => break,
                Some(Ok(_)) => {}
                _ => panic!(
                    "redis-server exited before it was ready (port {})",
                    self.port
                ),
            }
        }
        // Keep draining its log so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        true
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server by its pid and waits for it to exit.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub(crate) fn restart(&mut self) {
        self.stop();
        assert!(self.spawn(), "redis-server vanished");
    }

    /// Runs one command with the synchronous client.
    pub(crate) fn cmd(&self, args: &[&str]) -> redis::Value {
        let client = redis::Client::open(self.url()).expect("a client");
        let mut conn = client.get_connection().expect("a connection");
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut conn).expect("the command runs")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
