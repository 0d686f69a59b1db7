//! `ezw-server lines pair <lineId>` end to end: the real binary beside a running server on the
//! same SQLite data directory. The QR it prints decodes to the simulator's current pairing
//! string; scanning that code ends the command with `paired` and exit 0. Lines that cannot pair
//! are refused with exit 1, a pairing no server picks up times out with exit 1, and Ctrl-C
//! (SIGINT) exits 130.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ezw_core::model::{BillingState, LifecycleState, ProviderKind};
use ezw_core::service::{NewLine, NewOrganization};
use ezw_core::{EzwConfig, LineId, Secret};
use ezw_http::{start, RunningServer, ServerOptions};

/// Starts a server on `dir` whose session supervisor looks for pairing requests every second.
async fn server(dir: &Path) -> RunningServer {
    let mut config = EzwConfig::default();
    config.session_lease = Duration::from_secs(3);
    start(ServerOptions::new("127.0.0.1:0".parse().unwrap(), dir).config(config)).await.unwrap()
}

/// Creates an organization with a simulator line configured with `provider_config`.
async fn create_line(server: &RunningServer, slug: &str, phone: &str, provider_config: serde_json::Value) -> LineId {
    let ezw = &server.ezw;
    let (org, owner) = ezw
        .orgs()
        .create_organization(NewOrganization {
            name: "CLI pairing".into(),
            slug: Some(slug.into()),
            owner_email: format!("owner@{slug}.test"),
            owner_name: "Owner".into(),
            owner_password: Secret::new("correct horse battery staple".to_owned()),
            billing_state: BillingState::Active,
            line_slots: 10,
        })
        .await
        .unwrap();
    let principal = ezw.auth().member_principal(&org.id, &owner.id).await.unwrap();
    let line = NewLine {
        display_name: "QR line".into(),
        phone_number: phone.into(),
        provider_kind: ProviderKind::Simulator,
        provider_config,
        pacing: None,
    };
    ezw.lines().create_line(&principal, line).await.unwrap().id
}

/// A running `ezw-server lines pair` with its output collected as it comes.
struct Pair {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Pair {
    fn spawn(dir: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ezw-server"))
            .args(["lines", "pair"])
            .args(args)
            .arg("--data-dir")
            .arg(dir)
            .env_remove("EZW_DATABASE_URL")
            .env_remove("EZW_DATABASE_SCHEMA")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let collect = |stream: Box<dyn std::io::Read + Send>| {
            let text = Arc::new(Mutex::new(String::new()));
            let sink = text.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut text = sink.lock().unwrap();
                    text.push_str(&line);
                    text.push('\n');
                }
            });
            text
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Self { child, stdout, stderr }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (in real time: the command runs on the wall clock) until stdout satisfies `done`.
    async fn wait_stdout(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.stdout();
            if done(&out) {
                return out;
            }
            assert!(Instant::now() < deadline, "no {what} in time; stdout:\n{out}\nstderr:\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads drain the pipes.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("the command did not exit; stdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last QR code printed before `marker` in `out` (drawn for a light background), decoded.
fn decode_printed_qr(out: &str, marker: &str) -> String {
    let lines: Vec<&str> = out.lines().collect();
    let end = lines.iter().rposition(|l| l.starts_with(marker)).expect("the marker line");
    let is_qr = |l: &&str| !l.is_empty() && l.chars().all(|c| matches!(c, ' ' | '\u{2580}' | '\u{2584}' | '\u{2588}'));
    let start = lines[..end].iter().rposition(|l| !is_qr(l)).map_or(0, |i| i + 1);
    let mut rows: Vec<Vec<bool>> = Vec::new();
    for line in &lines[start..end] {
        let (mut top, mut bottom) = (Vec::new(), Vec::new());
        for c in line.chars() {
            top.push(matches!(c, '\u{2580}' | '\u{2588}'));
            bottom.push(matches!(c, '\u{2584}' | '\u{2588}'));
        }
        rows.push(top);
        rows.push(bottom);
    }
    let width = rows.first().map_or(0, Vec::len);
    assert!(width > 21, "no QR code before {marker:?} in:\n{out}");
    rows.truncate(width);
    let scale = 4;
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width * scale, width * scale, |x, y| {
        if rows[y / scale][x / scale] {
            0
        } else {
            255
        }
    });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in:\n{out}");
    grids[0].decode().expect("the printed QR code decodes").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_a_qr_line_from_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let line = create_line(&server, "cli-pair", "+972501110001", serde_json::json!({"pairing": "qr"})).await;

    let mut pair = Pair::spawn(dir.path(), &[line.as_str(), "--light-background", "--timeout-secs", "60"]);
    let out = pair.wait_stdout("QR code", |out| out.contains("Scan with WhatsApp")).await;
    let printed = decode_printed_qr(&out, "Scan with WhatsApp");
    assert!(out.contains("Code 1 of pairing pair"), "{out}");
    assert!(out.contains(" expires at "), "{out}");
    // The printed code is the one the line's session shows now; scanning it pairs the line.
    let current = server.sim.current_code(&line).expect("the simulator shows a code");
    assert_eq!(printed, current);
    server.sim.scan(&line, &printed).unwrap();

    let status = pair.wait_exit().await;
    assert_eq!(status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", pair.stdout(), pair.stderr());
    assert_eq!(pair.stdout().lines().last(), Some("paired"));
    let stored = server.ezw.store().get_line_unscoped(&line).await.unwrap().unwrap();
    assert_eq!(stored.lifecycle_state, LifecycleState::Connected);

    // A connected line is refused.
    let mut again = Pair::spawn(dir.path(), &[line.as_str()]);
    assert_eq!(again.wait_exit().await.code(), Some(1));
    assert!(again.stderr().contains("is connected"), "{}", again.stderr());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_lines_it_cannot_pair_and_stops_on_timeout_or_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let cloud = create_line(&server, "cli-refuse", "+972501110002", serde_json::json!({})).await;
    let qr = create_line(&server, "cli-timeout", "+972501110003", serde_json::json!({"pairing": "qr"})).await;
    // No server runs the line's session from here on: the request waits.
    server.shutdown().await;

    let mut not_qr = Pair::spawn(dir.path(), &[cloud.as_str()]);
    assert_eq!(not_qr.wait_exit().await.code(), Some(1));
    assert!(not_qr.stderr().contains("not paired by QR code"), "{}", not_qr.stderr());

    let mut unknown = Pair::spawn(dir.path(), &["line_00000000000000000000000000"]);
    assert_eq!(unknown.wait_exit().await.code(), Some(1));
    assert!(unknown.stderr().contains("not found"), "{}", unknown.stderr());

    let mut invalid = Pair::spawn(dir.path(), &["chk_1"]);
    assert_eq!(invalid.wait_exit().await.code(), Some(1));
    assert!(invalid.stderr().contains("not a line id"), "{}", invalid.stderr());

    let mut timeout = Pair::spawn(dir.path(), &[qr.as_str(), "--timeout-secs", "1"]);
    assert_eq!(timeout.wait_exit().await.code(), Some(1));
    assert!(timeout.stdout().contains("waiting for the server"), "{}", timeout.stdout());
    assert!(timeout.stderr().contains("not paired within 1 s"), "{}", timeout.stderr());

    let mut interrupted = Pair::spawn(dir.path(), &[qr.as_str()]);
    interrupted.wait_stdout("the waiting notice", |out| out.contains("waiting for the server")).await;
    let pid = interrupted.child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    assert_eq!(interrupted.wait_exit().await.code(), Some(130));
}
