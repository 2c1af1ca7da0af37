//! Shared helpers: start the simulator, write a config, run the binary, read what it printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sigsci_export::sim::{SimConfig, Simulator};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sigsci-export")
}

pub(crate) async fn start_sim(cfg: SimConfig) -> Simulator {
    Simulator::start(cfg, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator starts")
}

/// The end of the newest window the API serves, with a minute of margin.
pub(crate) fn latest(sim: &Simulator) -> i64 {
    align(sim.now() - 360)
}

pub(crate) fn align(t: i64) -> i64 {
    t - t.rem_euclid(60)
}

pub(crate) fn rfc3339(t: i64) -> String {
    sigsci_export::time::rfc3339(t)
}

/// Writes a config for `sim` into `dir`; `extra_api` and `extra` are spliced into `[api]` and
/// appended at the end.
pub(crate) fn write_config(
    dir: &Path,
    sim: &Simulator,
    token: &str,
    extra_api: &str,
    extra: &str,
) -> PathBuf {
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let text = format!(
        r#"
[api]
base_url = "{base}"
email = "demo@example.com"
token_file = "{tf}"
corp = "demo"
sites = ["www", "api"]
requests_per_minute = 6000
burst = 100
{extra_api}

[spool]
path = "{db}"

[admin]
listen = "127.0.0.1:0"

[[sinks]]
type = "stdout"
{extra}
"#,
        base = sim.base_url(),
        tf = token_file.display(),
        db = dir.join("state.db").display(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) struct Output {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// The binary with piped output, no stdin, and none of the developer's SIGSCI_* variables.
fn command(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("SIGSCI_EMAIL")
        .env_remove("SIGSCI_TOKEN")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// Runs the binary to completion (at most `limit`), capturing both streams.
pub(crate) async fn run(args: &[&str], envs: &[(&str, &str)], limit: Duration) -> Output {
    let child = command(args, envs).spawn().expect("binary starts");
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "`sigsci-export {}` did not finish within {limit:?}",
                args.join(" ")
            )
        })
        .unwrap();
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A running binary whose stdout lines and stderr are collected in the background.
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) stderr: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

pub(crate) fn spawn(args: &[&str], lines: Arc<Mutex<Vec<String>>>) -> Running {
    spawn_env(args, &[], lines)
}

/// [`spawn`] with extra environment variables.
pub(crate) fn spawn_env(
    args: &[&str],
    envs: &[(&str, &str)],
    lines: Arc<Mutex<Vec<String>>>,
) -> Running {
    let mut child = command(args, envs).spawn().expect("binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let l = lines.clone();
    let r1 = tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            l.lock().unwrap().push(line);
        }
    });
    let e = stderr.clone();
    let r2 = tokio::spawn(async move {
        let mut buf = String::new();
        let _ = stderr_pipe.read_to_string(&mut buf).await;
        e.lock().unwrap().push_str(&buf);
    });
    Running {
        child,
        stderr,
        readers: vec![r1, r2],
    }
}

impl Running {
    /// SIGKILL, then wait for the pipes to drain.
    pub(crate) async fn kill9(mut self) -> String {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
        for r in self.readers.drain(..) {
            let _ = r.await;
        }
        self.stderr.lock().unwrap().clone()
    }

    /// SIGKILL, then wait for the pipes to drain; also says whether the process was still
    /// running when the signal hit (it died of SIGKILL rather than exiting on its own), so a
    /// test cannot mistake a finished run for an interrupted one.
    pub(crate) async fn kill9_mid_run(mut self) -> (bool, String) {
        use std::os::unix::process::ExitStatusExt;
        // A process that already exited is reaped by try_wait and cannot be signalled.
        let killed = match self.child.try_wait().unwrap() {
            Some(_) => false,
            None => {
                self.child.start_kill().unwrap();
                self.child.wait().await.unwrap().signal() == Some(9)
            }
        };
        for r in self.readers.drain(..) {
            let _ = r.await;
        }
        (killed, self.stderr.lock().unwrap().clone())
    }

    /// SIGTERM, then wait (at most `limit`) and return the exit code and stderr.
    pub(crate) async fn terminate(mut self, limit: Duration) -> (Option<i32>, String) {
        let pid = self.child.id().expect("still running");
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("exits after SIGTERM within the limit")
            .unwrap();
        for r in self.readers.drain(..) {
            let _ = r.await;
        }
        let s = self.stderr.lock().unwrap().clone();
        (status.code(), s)
    }
}

/// Parses NDJSON event lines into (site, id) pairs; lines that are not complete JSON objects
/// (a line cut by SIGKILL) are skipped: they were never acknowledged, so they are sent again.
pub(crate) fn events(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            let site = v["sigsci_export"]["site"]
                .as_str()
                .expect("every event says its site")
                .to_string();
            let id = v["id"]
                .as_str()
                .expect("every event has its id")
                .to_string();
            (site, id)
        })
        .collect()
}

/// Count of each (site, id).
pub(crate) fn counts(events: &[(String, String)]) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for e in events {
        *m.entry(e.clone()).or_insert(0) += 1;
    }
    m
}

/// Waits until `pred` holds or `limit` passes.
pub(crate) async fn wait_until(limit: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if pred() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pred()
}
