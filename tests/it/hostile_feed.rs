//! A hostile or broken feed API, through the real binary: `next` URIs that lead to another
//! server or out of the site's feed, redirects, endless paging, oversized pages, compressed
//! replies nobody asked for, and TLS certificates that do not verify. Each is refused as a site
//! error needing an operator, the credentials never reach another server, and nothing another
//! server sends is exported as the site's own.
//!
//! The servers here are a few lines of HTTP/1.1 over tokio (optionally behind rustls), so a test
//! can answer anything, byte for byte, and see every connection made to it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::pki::{Ca, Leaf, acceptor};
use crate::support::*;

const FEED: &str = "/api/v0/corps/demo/sites/www/feed/requests";
const TOKEN: &str = "demo-token-7c1f";

/// One request as a hostile server read it.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    /// Path and query, as sent.
    target: String,
    /// Header lines, names lower-cased.
    headers: Vec<(String, String)>,
}

impl Req {
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn query(&self, key: &str) -> Option<String> {
        let (_, q) = self.target.split_once('?')?;
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n == name)
    }
}

/// What a hostile server answers.
enum Reply {
    /// A status, extra headers, and a body sent with its length.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// 200 with `prefix`, then `fill` bytes of `x`, then `suffix`, written 64 KiB at a time
    /// until done or the client goes away; `declared` sends a `Content-Length` (else the body
    /// ends when the connection closes).
    Huge {
        prefix: String,
        fill: usize,
        suffix: String,
        declared: bool,
    },
}

impl Reply {
    fn json(body: String) -> Reply {
        Reply::Full {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into_bytes(),
        }
    }
}

type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

/// A loopback server that answers every request with `handler`'s reply and records it.
struct Hostile {
    port: u16,
    /// Connections accepted (TLS or not, whether a request followed or not).
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Req>>>,
    /// Body bytes of `Reply::Huge` actually written to clients.
    huge_written: Arc<AtomicUsize>,
}

impl Hostile {
    async fn start(ip: &str, port: u16, handler: Handler) -> Hostile {
        Self::start_tls(ip, port, None, handler).await
    }

    async fn start_tls(ip: &str, port: u16, tls: Option<TlsAcceptor>, handler: Handler) -> Hostile {
        let listener = TcpListener::bind((ip, port)).await.expect("bind");
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let huge_written = Arc::new(AtomicUsize::new(0));
        let (c, r, w) = (connections.clone(), requests.clone(), huge_written.clone());
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (h, r, w, tls) = (handler.clone(), r.clone(), w.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve(sock, h, r, w).await,
                        Some(acceptor) => {
                            // A client that refuses our certificate ends the handshake here.
                            if let Ok(s) = acceptor.accept(sock).await {
                                serve(s, h, r, w).await;
                            }
                        }
                    }
                });
            }
        });
        Hostile {
            port,
            connections,
            requests,
            huge_written,
        }
    }

    fn base_url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}/api/v0", self.port)
    }

    fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// One request per connection (every reply says `connection: close`).
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    handler: Handler,
    requests: Arc<Mutex<Vec<Req>>>,
    huge_written: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    // Read (and drop) a request body, such as the POST form of `next`.
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + 4 + length {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let req = Req {
        method,
        target,
        headers,
    };
    let reply = handler(&req);
    requests.lock().unwrap().push(req);
    match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut out = format!(
                "HTTP/1.1 {status} Hostile\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (n, v) in headers {
                out.push_str(&format!("{n}: {v}\r\n"));
            }
            out.push_str("\r\n");
            let _ = sock.write_all(out.as_bytes()).await;
            let _ = sock.write_all(&body).await;
        }
        Reply::Huge {
            prefix,
            fill,
            suffix,
            declared,
        } => {
            let total = prefix.len() + fill + suffix.len();
            let length = if declared {
                format!("content-length: {total}\r\n")
            } else {
                String::new()
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{length}connection: close\r\n\r\n"
            );
            if sock.write_all(head.as_bytes()).await.is_err()
                || sock.write_all(prefix.as_bytes()).await.is_err()
            {
                return;
            }
            huge_written.fetch_add(prefix.len(), Ordering::SeqCst);
            let block = vec![b'x'; 64 << 10];
            let mut left = fill;
            while left > 0 {
                let n = left.min(block.len());
                if sock.write_all(&block[..n]).await.is_err() {
                    return;
                }
                huge_written.fetch_add(n, Ordering::SeqCst);
                left -= n;
            }
            if sock.write_all(suffix.as_bytes()).await.is_ok() {
                huge_written.fetch_add(suffix.len(), Ordering::SeqCst);
            }
        }
    }
    let _ = sock.shutdown().await;
}

/// A feed page of records `{prefix}-1` .. `{prefix}-{n}` at `ts`, with `next` (`""` = last).
fn page(prefix: &str, n: usize, ts: i64, next: &str) -> String {
    let records: Vec<String> = (1..=n)
        .map(|i| {
            format!(
                r#"{{"id":"{prefix}-{i}","timestamp":"{}","serverHostname":"h","tags":[]}}"#,
                rfc3339(ts)
            )
        })
        .collect();
    format!(
        r#"{{"next":{{"uri":{}}},"data":[{}]}}"#,
        serde_json::to_string(next).unwrap(),
        records.join(",")
    )
}

/// A ten-minute range the binary accepts for a backfill (ended well over five minutes ago).
fn range() -> (i64, i64) {
    let until = align(sigsci_export::time::now() - 900);
    (until - 600, until)
}

/// A config for one site, `www`, of the API at `base_url`.
fn config(dir: &Path, base_url: &str, extra_api: &str, extra: &str) -> PathBuf {
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let text = format!(
        r#"
[api]
base_url = "{base_url}"
email = "demo@example.com"
token_file = "{tf}"
corp = "demo"
sites = ["www"]
requests_per_minute = 6000
burst = 200
max_attempts = 2
{extra_api}

[spool]
path = "{db}"

[admin]
listen = "127.0.0.1:0"

[[sinks]]
type = "stdout"
{extra}
"#,
        tf = token_file.display(),
        db = dir.join("state.db").display(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn backfill(cfg: &Path, limit: Duration) -> Output {
    try_backfill(cfg, limit)
        .await
        .unwrap_or_else(|| panic!("the backfill did not finish within {limit:?}"))
}

/// [`backfill`], `None` if it is still running after `limit` (it is killed then).
async fn try_backfill(cfg: &Path, limit: Duration) -> Option<Output> {
    let (from, until) = range();
    let (from, until) = (rfc3339(from), rfc3339(until));
    let args = [
        "backfill",
        "-c",
        cfg.to_str().unwrap(),
        "--from",
        &from,
        "--until",
        &until,
    ];
    // Dropping the run kills the binary.
    let run = run(&args, &[], limit + Duration::from_secs(60));
    tokio::time::timeout(limit, run).await.ok()
}

/// The JSON log lines of `stderr` at `level` whose text (message and fields) contains `needle`.
fn logged(stderr: &str, level: &str, needle: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["level"] == level && l.contains(needle))
        })
        .map(String::from)
        .collect()
}

/// Ids of the events the binary exported.
fn exported(stdout: &str) -> Vec<String> {
    let lines: Vec<String> = stdout.lines().map(String::from).collect();
    events(&lines).into_iter().map(|(_, id)| id).collect()
}

/// Records `other-*` with the last page's `next`, whatever is asked.
fn other_server() -> Handler {
    Arc::new(|_req: &Req| Reply::json(page("other", 3, range().0 + 60, "")))
}

/// The first page of the window carries `own-*` records and `next`; anything else asked of
/// this server gets `other-*` records, so a `next` that leaves the feed would export them.
fn first_page_then_other(next: String) -> Handler {
    Arc::new(move |req: &Req| {
        let ts = range().0 + 60;
        if req.path() == FEED && req.query("from").is_some() {
            Reply::json(page("own", 3, ts, &next))
        } else {
            Reply::json(page("other", 3, ts, ""))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_uri_to_another_server_or_out_of_the_feed_is_refused_without_credentials() {
    // Where the `next` points, given the main server's port and the other server's port; the
    // other server listens on 127.0.0.2 at the main server's port (another host, same port)
    // unless `localhost` says it is at 127.0.0.1 on a port of its own.
    struct Case {
        name: &'static str,
        uri: fn(u16, u16) -> String,
        localhost: bool,
        shown: fn(u16, u16) -> String,
    }
    let cases = [
        Case {
            name: "http, another host on the same port",
            uri: |p, _| format!("http://127.0.0.2:{p}{FEED}?next=t0k"),
            localhost: false,
            shown: |p, _| format!("http://127.0.0.2:{p}{FEED}?next=…"),
        },
        Case {
            name: "https, another host",
            uri: |p, _| format!("https://127.0.0.2:{p}{FEED}?next=t0k"),
            localhost: false,
            shown: |p, _| format!("https://127.0.0.2:{p}{FEED}?next=…"),
        },
        Case {
            name: "localhost on another port",
            uri: |_, o| format!("http://localhost:{o}{FEED}?next=t0k"),
            localhost: true,
            shown: |_, o| format!("http://localhost:{o}{FEED}?next=…"),
        },
        Case {
            name: "protocol-relative",
            uri: |p, _| format!("//127.0.0.2:{p}{FEED}?next=t0k"),
            localhost: false,
            shown: |p, _| format!("http://127.0.0.2:{p}{FEED}?next=…"),
        },
        Case {
            name: "userinfo on the same server",
            uri: |p, _| format!("http://x:y@127.0.0.1:{p}{FEED}?next=t0k"),
            localhost: false,
            shown: |p, _| format!("http://127.0.0.1:{p}{FEED}?next=…"),
        },
        Case {
            name: "another site's feed",
            uri: |_, _| "/api/v0/corps/demo/sites/api/feed/requests?next=t0k".into(),
            localhost: false,
            shown: |_, _| "/api/v0/corps/demo/sites/api/feed/requests?next=…".into(),
        },
        Case {
            name: "out of the feed by dot segments",
            uri: |_, _| format!("{FEED}/../../../../users?next=t0k"),
            localhost: false,
            shown: |_, _| "/api/v0/corps/demo/users?next=…".into(),
        },
    ];
    // Every case is tried, and every way it went wrong reported together.
    let mut failures = Vec::new();
    for case in cases {
        // The main server's port first (the next URI names it), then its handler.
        let handler_next: Arc<Mutex<String>> = Arc::default();
        let h = handler_next.clone();
        let main = Hostile::start(
            "127.0.0.1",
            0,
            Arc::new(move |req: &Req| first_page_then_other(h.lock().unwrap().clone())(req)),
        )
        .await;
        let other = if case.localhost {
            Hostile::start("127.0.0.1", 0, other_server()).await
        } else {
            Hostile::start("127.0.0.2", main.port, other_server()).await
        };
        *handler_next.lock().unwrap() = (case.uri)(main.port, other.port);
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), &main.base_url("http"), "", "");
        let out = try_backfill(&cfg, Duration::from_secs(30)).await;
        let mut fail = |what: String| failures.push(format!("{}: {what}", case.name));
        if other.connections() > 0 {
            let token = other.requests().iter().any(|r| r.has_header("x-api-token"));
            fail(format!(
                "the other server was reached (x-api-token sent: {token})"
            ));
        }
        let reqs = main.requests();
        if reqs.len() != 1 || reqs[0].method != "GET" {
            fail(format!(
                "the main server was asked more than the first page: {reqs:?}"
            ));
        }
        let Some(out) = out else {
            fail("the backfill did not end".into());
            continue;
        };
        if out.code != Some(1) {
            fail(format!("exit code {:?}", out.code));
        }
        let shown = (case.shown)(main.port, other.port);
        let errors = logged(&out.stderr, "ERROR", "refused the feed's next URI");
        if !errors.iter().any(|l| l.contains(&shown)) {
            fail(format!("no ERROR names `{shown}`"));
        }
        for secret in [TOKEN, "t0k", "x:y@"] {
            if out.stderr.contains(secret) {
                fail(format!("`{secret}` in the log"));
            }
        }
        if exported(&out.stdout)
            .iter()
            .any(|id| id.starts_with("other-"))
        {
            fail("records of the other server were exported".into());
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_marks_the_site_failing_when_next_leads_to_another_server() {
    let other = Hostile::start("127.0.0.1", 0, other_server()).await;
    let main = Hostile::start(
        "127.0.0.1",
        0,
        first_page_then_other(format!("http://localhost:{}{FEED}?next=t0k", other.port)),
    )
    .await;
    let (readyz, stderr) = run_until_not_ready(&main.base_url("http"), "").await;
    assert!(
        readyz.contains("site:www") && readyz.contains("another server"),
        "{readyz}"
    );
    assert!(
        !logged(&stderr, "ERROR", "refused the feed's next URI").is_empty(),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN));
    assert_eq!(other.connections(), 0);
}

/// Starts `run` against `base_url`, waits until `/readyz` answers 503, stops it; returns the
/// `/readyz` body and the log.
async fn run_until_not_ready(base_url: &str, extra_api: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = config(dir.path(), base_url, extra_api, "")
        .to_str()
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&cfg, text).unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let running = spawn(&["run", "-c", &cfg], lines);
    let readyz = Arc::new(Mutex::new(String::new()));
    let r = readyz.clone();
    let probe = async move {
        for _ in 0..300 {
            if let Ok(resp) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await
                && resp.status() == 503
            {
                *r.lock().unwrap() = resp.text().await.unwrap_or_default();
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    let not_ready = probe.await;
    let (code, stderr) = running.terminate(Duration::from_secs(30)).await;
    assert!(not_ready, "/readyz never said not ready:\n{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
    let body = readyz.lock().unwrap().clone();
    (body, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_server_is_not_followed() {
    let main_port = Arc::new(AtomicUsize::new(0));
    let p = main_port.clone();
    let main = Hostile::start(
        "127.0.0.1",
        0,
        Arc::new(move |req: &Req| Reply::Full {
            status: 302,
            headers: vec![(
                "location".into(),
                format!(
                    "http://127.0.0.2:{}{}",
                    p.load(Ordering::SeqCst),
                    req.target
                ),
            )],
            body: Vec::new(),
        }),
    )
    .await;
    main_port.store(main.port.into(), Ordering::SeqCst);
    let other = Hostile::start("127.0.0.2", main.port, other_server()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &main.base_url("http"), "", "");
    let out = backfill(&cfg, Duration::from_secs(60)).await;
    let token = other.requests().iter().any(|r| r.has_header("x-api-token"));
    assert_eq!(
        other.connections(),
        0,
        "the redirect was followed (x-api-token sent: {token})"
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        !logged(
            &out.stderr,
            "ERROR",
            "HTTP 302 redirect to `http://127.0.0.2"
        )
        .is_empty(),
        "{}",
        out.stderr
    );
    assert_eq!(main.requests().len(), 1, "a redirect is not retried");
    assert!(main.requests()[0].has_header("x-api-token"));
    assert!(exported(&out.stdout).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_paging_fails_the_window() {
    // The same `next` again and again.
    let repeat = Hostile::start(
        "127.0.0.1",
        0,
        Arc::new(|_req: &Req| {
            Reply::json(page(
                "own",
                1,
                range().0 + 60,
                &format!("{FEED}?next=again"),
            ))
        }),
    )
    .await;
    // Empty pages, each with a fresh `next`.
    let served = Arc::new(AtomicUsize::new(0));
    let s = served.clone();
    let empty = Hostile::start(
        "127.0.0.1",
        0,
        Arc::new(move |_req: &Req| {
            let n = s.fetch_add(1, Ordering::SeqCst);
            Reply::json(page("own", 0, 0, &format!("{FEED}?next=n{n}")))
        }),
    )
    .await;
    for (server, needle, most) in [
        (&repeat, "a next URI this window has already followed", 2),
        (&empty, "100 empty pages in a row", 100),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), &server.base_url("http"), "", "");
        let out = backfill(&cfg, Duration::from_secs(60)).await;
        assert_eq!(out.code, Some(1), "{needle}: {}", out.stderr);
        let errors = logged(&out.stderr, "ERROR", needle);
        assert!(
            errors.iter().any(|l| l.contains("endless paging")),
            "{needle}:\n{}",
            out.stderr
        );
        assert_eq!(server.requests().len(), most, "{needle}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_over_the_size_cap_is_refused_without_reading_it_whole() {
    let total_fill = 100 << 20;
    for declared in [false, true] {
        let server = Hostile::start(
            "127.0.0.1",
            0,
            Arc::new(move |_req: &Req| Reply::Huge {
                prefix: format!(
                    r#"{{"next":{{"uri":""}},"data":[{{"id":"big-1","timestamp":"{}","pad":""#,
                    rfc3339(range().0 + 60)
                ),
                fill: total_fill,
                suffix: "\"}]}".into(),
                declared,
            }),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), &server.base_url("http"), "", "");
        let out = backfill(&cfg, Duration::from_secs(120)).await;
        assert_eq!(out.code, Some(1), "declared {declared}: {}", out.stderr);
        assert!(
            !logged(&out.stderr, "ERROR", "larger than the 64 MiB cap").is_empty(),
            "declared {declared}: {}",
            out.stderr
        );
        assert_eq!(server.requests().len(), 1, "not retried");
        // Read in chunks and dropped at the cap: the server could not send it all.
        let written = server.huge_written.load(Ordering::SeqCst);
        assert!(written < total_fill, "declared {declared}: {written} bytes");
        assert!(exported(&out.stdout).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_records_than_the_limit_are_kept_with_a_warning() {
    let server = Hostile::start(
        "127.0.0.1",
        0,
        Arc::new(|_req: &Req| Reply::json(page("own", 8, range().0 + 60, ""))),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &server.base_url("http"), "page_limit = 5", "");
    let out = backfill(&cfg, Duration::from_secs(60)).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let warned = logged(&out.stderr, "WARN", "more records than the page limit");
    assert_eq!(warned.len(), 1, "{}", out.stderr);
    let line: serde_json::Value = serde_json::from_str(&warned[0]).unwrap();
    assert_eq!(
        (line["records"].as_u64(), line["limit"].as_u64()),
        (Some(8), Some(5))
    );
    assert_eq!(exported(&out.stdout).len(), 8);
    assert_eq!(server.requests()[0].query("limit").as_deref(), Some("5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_reply_nobody_asked_for_needs_the_operator() {
    let server = Hostile::start(
        "127.0.0.1",
        0,
        Arc::new(|_req: &Req| {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(page("own", 2, range().0 + 60, "").as_bytes())
                .unwrap();
            Reply::Full {
                status: 200,
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    ("content-encoding".into(), "gzip".into()),
                ],
                body: gz.finish().unwrap(),
            }
        }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &server.base_url("http"), "", "");
    let out = backfill(&cfg, Duration::from_secs(60)).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        !logged(&out.stderr, "ERROR", "Content-Encoding: gzip").is_empty(),
        "{}",
        out.stderr
    );
    // Not retried: the same request gets the same bytes.
    assert_eq!(server.requests().len(), 1);
    assert!(!server.requests()[0].has_header("accept-encoding"));
}

/// A TLS feed server presenting `leaf`: the first page, last.
async fn tls_server(leaf: &Leaf) -> Hostile {
    Hostile::start_tls(
        "127.0.0.1",
        0,
        Some(acceptor(leaf)),
        Arc::new(|_req: &Req| Reply::json(page("own", 2, range().0 + 60, ""))),
    )
    .await
}

fn ca_file(path: &Path) -> String {
    format!("ca_file = \"{}\"", path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_api_certificates_are_errors_a_person_understands() {
    let ca = Ca::new("sigsci-export test CA");
    let stranger = Ca::new("a CA nobody trusts");
    let cases = [
        (
            "self_signed",
            stranger.leaf("127.0.0.1", false),
            false,
            "signed by a certificate authority this host does not trust",
        ),
        (
            "ca_as_leaf",
            ca.as_leaf(),
            true,
            "the server presents a CA certificate as its own",
        ),
        (
            "expired",
            ca.leaf("127.0.0.1", true),
            true,
            "it expired on 2021-01-01T00:00:00Z",
        ),
        (
            "wrong_name",
            ca.leaf("other.example", false),
            true,
            "it is not valid for `127.0.0.1`, the host in api.base_url",
        ),
    ];
    for (cert, leaf, trusted, words) in cases {
        let server = tls_server(&leaf).await;
        let dir = tempfile::tempdir().unwrap();
        let extra = if trusted {
            ca_file(&ca.write_pem(dir.path()))
        } else {
            String::new()
        };
        let cfg = config(dir.path(), &server.base_url("https"), &extra, "");
        let out = backfill(&cfg, Duration::from_secs(60)).await;
        assert_eq!(out.code, Some(1), "{cert}: {}", out.stderr);
        let errors = logged(
            &out.stderr,
            "ERROR",
            "the API's TLS certificate is not trusted: ",
        );
        assert!(
            errors.iter().any(|l| l.contains(words)),
            "{cert}: an ERROR says `{words}`:\n{}",
            out.stderr
        );
        assert!(!out.stderr.contains("OtherError"), "{cert}: {}", out.stderr);
        assert!(
            logged(&out.stderr, "WARN", "certificate").is_empty(),
            "{cert}: retried at WARN:\n{}",
            out.stderr
        );
        // Refused at the handshake: no request got through, and it was not retried.
        assert!(server.requests().is_empty());
        assert_eq!(server.connections(), 1, "{cert}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_marks_the_site_failing_on_an_untrusted_certificate() {
    let ca = Ca::new("sigsci-export test CA");
    let server = tls_server(&ca.as_leaf()).await;
    let dir = tempfile::tempdir().unwrap();
    let (readyz, stderr) = run_until_not_ready(
        &server.base_url("https"),
        &ca_file(&ca.write_pem(dir.path())),
    )
    .await;
    assert!(
        readyz.contains("site:www") && readyz.contains("the API's TLS certificate is not trusted"),
        "{readyz}"
    );
    assert!(
        !logged(&stderr, "ERROR", "CA certificate as its own").is_empty(),
        "{stderr}"
    );
    assert!(!stderr.contains("OtherError"), "{stderr}");
}
