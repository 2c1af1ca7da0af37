//! The request objects the feed serves, built from a request's hash.
//!
//! A request first gets a cheap [`Profile`] (what kind of traffic it is, which signals it
//! carries): that is all the `tags` filter needs. The full object, with every field of the real
//! API (go-sigsci `Request`), is only built for requests that end up on a page. Attacks correlate
//! with attack-looking paths, user agents and a small pool of attacker addresses, like real feeds.

use serde::Serialize;

use super::data::{EventRef, Generator, Rng64, SiteInfo, hash_str, mix};
use super::json;

/// What kind of traffic a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Page,
    Static,
    NotFound,
    Sqli,
    Xss,
    Traversal,
    CmdExe,
    Backdoor,
    Scanner,
}

/// The cheap part of a request: enough to decide which signals (tags) it has.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Profile {
    pub(crate) kind: Kind,
    /// The WAF blocked it (adds `BLOCKED`, answers 406).
    pub(crate) blocked: bool,
    /// Sent by a known scanning tool (adds `SCANNER`).
    pub(crate) scanner_ua: bool,
}

impl Profile {
    /// Signal names in the order they appear in `tags`.
    pub(crate) fn tag_types(&self) -> Vec<&'static str> {
        let mut t = Vec::with_capacity(3);
        match self.kind {
            Kind::Page | Kind::Static => {}
            Kind::NotFound => t.push("HTTP404"),
            Kind::Sqli => t.push("SQLI"),
            Kind::Xss => t.push("XSS"),
            Kind::Traversal => t.push("TRAVERSAL"),
            Kind::CmdExe => t.push("CMDEXE"),
            Kind::Backdoor => t.extend(["BACKDOOR", "HTTP404"]),
            Kind::Scanner => t.push("HTTP404"),
        }
        if self.scanner_ua {
            t.push("SCANNER");
        }
        if self.blocked {
            t.push("BLOCKED");
        }
        t
    }

    fn is_attack(&self) -> bool {
        matches!(
            self.kind,
            Kind::Sqli | Kind::Xss | Kind::Traversal | Kind::CmdExe | Kind::Backdoor
        )
    }
}

/// Decide a request's profile from its hash. Must stay cheap: the tag filter calls it for every
/// request in a window.
pub(crate) fn profile(hash: u64) -> Profile {
    let mut r = Rng64::new(hash ^ 0x9F0F);
    let kind = match r.below(100) {
        0..=49 => Kind::Page,
        50..=67 => Kind::Static,
        68..=77 => Kind::NotFound,
        78..=83 => Kind::Sqli,
        84..=88 => Kind::Xss,
        89..=91 => Kind::Traversal,
        92..=93 => Kind::CmdExe,
        94..=95 => Kind::Backdoor,
        _ => Kind::Scanner,
    };
    let mut p = Profile {
        kind,
        blocked: false,
        scanner_ua: kind == Kind::Scanner,
    };
    if p.is_attack() {
        p.scanner_ua = r.chance(0.4);
        p.blocked = r.chance(if p.scanner_ua { 0.7 } else { 0.45 });
    }
    p
}

/// One tag (signal) on a request, as the API sends it. Every part is a constant of the
/// generator, so tags cost no allocation.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Tag {
    #[serde(rename = "type")]
    kind: &'static str,
    location: &'static str,
    value: &'static str,
    detector: &'static str,
    redaction: u8,
}

const NO_TAG: Tag = Tag {
    kind: "",
    location: "",
    value: "",
    detector: "",
    redaction: 0,
};

/// A request's tags: at most four (a backdoor probe's two, `SCANNER` and `BLOCKED`).
#[derive(Clone, Copy, Debug)]
struct Tags {
    items: [Tag; 4],
    len: usize,
}

impl Tags {
    fn new() -> Tags {
        Tags {
            items: [NO_TAG; 4],
            len: 0,
        }
    }

    fn push(&mut self, t: Tag) {
        debug_assert!(
            self.len < self.items.len(),
            "more tags than any profile has"
        );
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = t;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[Tag] {
        &self.items[..self.len]
    }
}

/// One request record, field for field as the real feed sends it, plus `ja3`: a field the
/// client does not know, so tests can prove unknown fields pass through untouched.
///
/// The feed writes records with [`write_json`]; this serde form is the reference that writer
/// is tested against.
#[cfg(test)]
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Event {
    pub(crate) id: String,
    server_hostname: String,
    #[serde(rename = "remoteIP")]
    remote_ip: String,
    remote_hostname: String,
    remote_country_code: &'static str,
    user_agent: &'static str,
    pub(crate) timestamp: String,
    method: &'static str,
    server_name: String,
    protocol: &'static str,
    tls_protocol: &'static str,
    tls_cipher: &'static str,
    scheme: &'static str,
    path: &'static str,
    uri: String,
    response_code: u16,
    response_size: u64,
    response_millis: u64,
    agent_response_code: u16,
    headers_in: Option<Vec<(String, String)>>,
    headers_out: Option<Vec<(String, String)>>,
    tags: Vec<Tag>,
    ja3: String,
}

/// The client address: a constant network plus numbers, so it is only formatted when written.
#[derive(Clone, Copy, Debug)]
enum Ip {
    /// `{net}.{host}`; `dashed` is `net` with `-` for `.`, for the reverse-DNS name.
    V4 {
        net: &'static str,
        dashed: &'static str,
        host: u64,
    },
    /// `2001:db8::{a:x}:{b:x}`.
    V6(u64, u64),
}

impl Ip {
    fn write(&self, out: &mut Vec<u8>) {
        match *self {
            Ip::V4 { net, host, .. } => {
                out.extend_from_slice(net.as_bytes());
                out.push(b'.');
                json::push_u64(out, host);
            }
            Ip::V6(a, b) => {
                out.extend_from_slice(b"2001:db8::");
                json::push_hex(out, a, 0);
                out.push(b':');
                json::push_hex(out, b, 0);
            }
        }
    }

    /// `host-192-0-2-7.example.net` (IPv4 only).
    fn write_hostname(&self, out: &mut Vec<u8>) {
        if let Ip::V4 { dashed, host, .. } = *self {
            out.extend_from_slice(b"host-");
            out.extend_from_slice(dashed.as_bytes());
            out.push(b'-');
            json::push_u64(out, host);
            out.extend_from_slice(b".example.net");
        }
    }
}

/// Which request headers a record carries (`Host`, `User-Agent` and `Accept` always).
#[derive(Clone, Copy, Debug)]
struct HeadersIn {
    accept_encoding: bool,
    forwarded_for: bool,
}

/// Everything decided about one request, in the order the random draws are made. It holds
/// only constants and numbers: deciding allocates nothing, and text is produced once, straight
/// into the page being written.
#[derive(Clone, Copy, Debug)]
struct Parts {
    id: [u8; 24],
    server_hostname: u64,
    ip: Ip,
    remote_hostname: bool,
    remote_country_code: &'static str,
    user_agent: &'static str,
    ts: i64,
    method: &'static str,
    protocol: &'static str,
    tls_protocol: &'static str,
    tls_cipher: &'static str,
    scheme: &'static str,
    path: &'static str,
    query: &'static str,
    response_code: u16,
    response_size: u64,
    response_millis: u64,
    agent_response_code: u16,
    headers_in: Option<HeadersIn>,
    headers_out: bool,
    content_type: &'static str,
    tags: Tags,
    https: bool,
}

const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];
const CLIENTS: &[&str] = &[
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Go-http-client/2.0",
    "okhttp/4.12.0",
];
const SCANNERS: &[&str] = &[
    "sqlmap/1.7.2#stable (https://sqlmap.org)",
    "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000003)",
    "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
    "WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)",
    "gobuster/3.6",
    "python-requests/2.31.0",
];
const COUNTRIES: &[&str] = &[
    "US", "US", "US", "DE", "NL", "GB", "FR", "JP", "BR", "IN", "CA", "AU", "SE", "SG",
];
const ATTACK_COUNTRIES: &[&str] = &["CN", "RU", "NL", "US", "VN", "BR", "RO"];
const WWW_PAGES: &[(&str, &str)] = &[
    ("/", ""),
    ("/products", ""),
    ("/products/shoes", "?color=red&size=42"),
    ("/cart", ""),
    ("/search", "?q=running+shoes"),
    ("/blog/2026/winter-sale", ""),
    ("/account/orders", "?page=2"),
];
const API_PAGES: &[(&str, &str)] = &[
    ("/v1/users/8412", ""),
    ("/v1/orders", "?status=open&limit=50"),
    ("/v1/search", "?q=widgets"),
    ("/v1/products/1337", ""),
    ("/health", ""),
];
const STATIC: &[&str] = &[
    "/static/app.4f9c2b.js",
    "/static/style.css",
    "/images/logo.png",
    "/favicon.ico",
    "/fonts/inter.woff2",
];
const MISSING: &[&str] = &[
    "/old-page.html",
    "/products/discontinued",
    "/apple-touch-icon.png",
    "/v2/users",
    "/sitemap_index.xml",
];
const PROBES: &[&str] = &[
    "/.env",
    "/.git/config",
    "/admin/config.php",
    "/phpmyadmin/",
    "/server-status",
    "/actuator/env",
];
const SHELLS: &[&str] = &[
    "/wp-content/plugins/shell.php",
    "/c99.php",
    "/uploads/cmd.aspx",
];

/// The two SQL injection payloads: as sent (percent-encoded in the query) and as the detector
/// quotes them in the tag's `value`.
const SQLI: &[(&str, &str, &str)] = &[
    ("1' OR 1=1", "?q=1%27%20OR%201=1", "q=1' OR 1=1"),
    (
        "1 UNION SELECT username,password FROM users--",
        "?q=1%20UNION%20SELECT%20username,password%20FROM%20users--",
        "q=1 UNION SELECT username,password FROM users--",
    ),
];

/// Decide everything about request `ev` of `site`. The order of the random draws is what
/// makes the data: changing it changes every page served for a seed.
fn decide(g: &Generator, site: &SiteInfo, ev: &EventRef) -> Parts {
    let p = profile(ev.hash);
    let mut r = Rng64::new(mix(ev.hash ^ 0x000B_111D));
    let attacker = p.is_attack() || p.kind == Kind::Scanner;

    let user_agent = if p.scanner_ua {
        *r.pick(SCANNERS)
    } else if attacker || (site.is_api && r.chance(0.5)) || r.chance(0.08) {
        *r.pick(CLIENTS)
    } else {
        *r.pick(BROWSERS)
    };
    let (ip, remote_country_code) = if attacker {
        // A handful of addresses per site: attack traffic comes in bursts from few sources.
        let n = (site.key ^ r.below(6)) % 250 + 2;
        let ip = Ip::V4 {
            net: "203.0.113",
            dashed: "203-0-113",
            host: n,
        };
        (ip, *r.pick(ATTACK_COUNTRIES))
    } else if r.chance(0.15) {
        let (a, b) = (r.below(0xffff), r.below(0xffff));
        (Ip::V6(a, b), *r.pick(COUNTRIES))
    } else {
        let (net, dashed) = if r.chance(0.5) {
            ("192.0.2", "192-0-2")
        } else {
            ("198.51.100", "198-51-100")
        };
        let host = r.range(1, 254);
        (Ip::V4 { net, dashed, host }, *r.pick(COUNTRIES))
    };
    let remote_hostname = r.chance(0.3) && matches!(ip, Ip::V4 { .. });

    let (mut method, path, query, tags) = request_line(&p, site, user_agent, &mut r);
    if p.kind == Kind::Page && (path == "/cart" || path == "/v1/orders") && r.chance(0.3) {
        method = "POST";
    }
    let https = attacker || r.chance(0.9);
    let scheme = if https { "https" } else { "http" };
    let protocol = if https && r.chance(0.45) {
        "HTTP/2.0"
    } else {
        "HTTP/1.1"
    };
    let (tls_protocol, tls_cipher) = if !https {
        ("", "")
    } else if r.chance(0.8) {
        let c = [
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256",
        ];
        ("TLSv1.3", *r.pick(&c))
    } else {
        ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256")
    };

    let (response_code, agent_response_code, response_size, response_millis) = if p.blocked {
        (406, 406, r.range(0, 300), r.range(0, 3))
    } else {
        let code = match p.kind {
            Kind::NotFound | Kind::Backdoor | Kind::Scanner => 404,
            Kind::Static if r.chance(0.3) => 304,
            Kind::Page if method == "POST" => 201,
            Kind::Page if r.chance(0.03) => 302,
            Kind::Page if r.chance(0.01) => 500,
            _ => 200,
        };
        let size = match code {
            304 => 0,
            404 => r.range(150, 1200),
            _ => r.range(300, 120_000),
        };
        (code, 200, size, r.range(1, 450))
    };
    let content_type = if site.is_api {
        "application/json"
    } else {
        "text/html; charset=utf-8"
    };
    let headers_in = (!r.chance(0.08)).then(|| HeadersIn {
        accept_encoding: !attacker,
        forwarded_for: r.chance(0.3),
    });
    let headers_out = !r.chance(0.08);
    Parts {
        id: g.id_bytes(site, ev),
        server_hostname: r.range(1, 4),
        ip,
        remote_hostname,
        remote_country_code,
        user_agent,
        ts: ev.minute + i64::from(ev.second),
        method,
        protocol,
        tls_protocol,
        tls_cipher,
        scheme,
        path,
        query,
        response_code,
        response_size,
        response_millis,
        agent_response_code,
        headers_in,
        headers_out,
        content_type,
        tags,
        https,
    }
}

/// The `ja3` of a user agent (empty without TLS): both hashes, 16 hex digits each.
fn write_ja3(user_agent: &str, out: &mut Vec<u8>) {
    let h = hash_str(user_agent);
    json::push_hex(out, mix(h), 16);
    json::push_hex(out, h, 16);
}

/// Appends request `ev` of `site` as one JSON object: byte for byte what serde_json makes of
/// [`build`]'s [`Event`] (same keys, same order, same escaping), without building it.
pub(crate) fn write_json(g: &Generator, site: &SiteInfo, ev: &EventRef, out: &mut Vec<u8>) {
    let p = decide(g, site, ev);
    let quoted = |out: &mut Vec<u8>, f: &dyn Fn(&mut Vec<u8>)| {
        out.push(b'"');
        f(out);
        out.push(b'"');
    };
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(&p.id);
    out.extend_from_slice(b"\",\"serverHostname\":\"web-");
    json::push_u64(out, p.server_hostname);
    out.extend_from_slice(b"\",\"remoteIP\":");
    quoted(out, &|o| p.ip.write(o));
    out.extend_from_slice(b",\"remoteHostname\":");
    if p.remote_hostname {
        quoted(out, &|o| p.ip.write_hostname(o));
    } else {
        out.extend_from_slice(b"\"\"");
    }
    out.extend_from_slice(b",\"remoteCountryCode\":");
    push_const(out, p.remote_country_code);
    out.extend_from_slice(b",\"userAgent\":");
    push_const(out, p.user_agent);
    out.extend_from_slice(b",\"timestamp\":");
    quoted(out, &|o| push_rfc3339(o, p.ts));
    out.extend_from_slice(b",\"method\":");
    push_const(out, p.method);
    out.extend_from_slice(b",\"serverName\":");
    json::push_str(out, &site.server_name);
    out.extend_from_slice(b",\"protocol\":");
    push_const(out, p.protocol);
    out.extend_from_slice(b",\"tlsProtocol\":");
    push_const(out, p.tls_protocol);
    out.extend_from_slice(b",\"tlsCipher\":");
    push_const(out, p.tls_cipher);
    out.extend_from_slice(b",\"scheme\":");
    push_const(out, p.scheme);
    out.extend_from_slice(b",\"path\":");
    push_const(out, p.path);
    out.extend_from_slice(b",\"uri\":");
    // The constants need no escaping, so the two halves can share one pair of quotes.
    debug_assert!(!needs_escape(p.path) && !needs_escape(p.query));
    quoted(out, &|o| {
        o.extend_from_slice(p.path.as_bytes());
        o.extend_from_slice(p.query.as_bytes());
    });
    out.extend_from_slice(b",\"responseCode\":");
    json::push_u64(out, u64::from(p.response_code));
    out.extend_from_slice(b",\"responseSize\":");
    json::push_u64(out, p.response_size);
    out.extend_from_slice(b",\"responseMillis\":");
    json::push_u64(out, p.response_millis);
    out.extend_from_slice(b",\"agentResponseCode\":");
    json::push_u64(out, u64::from(p.agent_response_code));
    out.extend_from_slice(b",\"headersIn\":");
    match p.headers_in {
        None => out.extend_from_slice(b"null"),
        Some(h) => {
            out.extend_from_slice(b"[[\"Host\",");
            json::push_str(out, &site.server_name);
            out.extend_from_slice(b"],[\"User-Agent\",");
            push_const(out, p.user_agent);
            out.extend_from_slice(b"],[\"Accept\",\"*/*\"]");
            if h.accept_encoding {
                out.extend_from_slice(b",[\"Accept-Encoding\",\"gzip, deflate, br\"]");
            }
            if h.forwarded_for {
                out.extend_from_slice(b",[\"X-Forwarded-For\",");
                quoted(out, &|o| p.ip.write(o));
                out.push(b']');
            }
            out.push(b']');
        }
    }
    out.extend_from_slice(b",\"headersOut\":");
    if p.headers_out {
        out.extend_from_slice(b"[[\"Content-Type\",");
        push_const(out, p.content_type);
        out.extend_from_slice(b"],[\"Content-Length\",\"");
        json::push_u64(out, p.response_size);
        out.extend_from_slice(b"\"]]");
    } else {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b",\"tags\":[");
    for (i, t) in p.tags.as_slice().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"type\":");
        push_const(out, t.kind);
        out.extend_from_slice(b",\"location\":");
        push_const(out, t.location);
        out.extend_from_slice(b",\"value\":");
        push_const(out, t.value);
        out.extend_from_slice(b",\"detector\":");
        push_const(out, t.detector);
        out.extend_from_slice(b",\"redaction\":");
        json::push_u64(out, u64::from(t.redaction));
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"ja3\":\"");
    if p.https {
        write_ja3(p.user_agent, out);
    }
    out.extend_from_slice(b"\"}");
}

fn needs_escape(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Appends one of the generator's constants as a JSON string. They need no escaping (a test
/// checks every table), so they skip [`json::push_str`]'s scan: there are a dozen per record.
fn push_const(out: &mut Vec<u8>, s: &'static str) {
    debug_assert!(!needs_escape(s), "{s:?}");
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Build the full request object for `ev` of `site`: the serde form of [`write_json`].
#[cfg(test)]
pub(crate) fn build(g: &Generator, site: &SiteInfo, ev: &EventRef) -> Event {
    let p = decide(g, site, ev);
    let text = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).expect("ASCII")
    };
    let remote_ip = text(&|o| p.ip.write(o));
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    Event {
        id: text(&|o| o.extend_from_slice(&p.id)),
        server_hostname: format!("web-{}", p.server_hostname),
        remote_hostname: text(&|o| {
            if p.remote_hostname {
                p.ip.write_hostname(o)
            }
        }),
        remote_country_code: p.remote_country_code,
        user_agent: p.user_agent,
        timestamp: rfc3339(p.ts),
        method: p.method,
        server_name: site.server_name.clone(),
        protocol: p.protocol,
        tls_protocol: p.tls_protocol,
        tls_cipher: p.tls_cipher,
        scheme: p.scheme,
        path: p.path,
        uri: format!("{}{}", p.path, p.query),
        response_code: p.response_code,
        response_size: p.response_size,
        response_millis: p.response_millis,
        agent_response_code: p.agent_response_code,
        headers_in: p.headers_in.map(|h| {
            let mut v = vec![
                pair("Host", &site.server_name),
                pair("User-Agent", p.user_agent),
                pair("Accept", "*/*"),
            ];
            if h.accept_encoding {
                v.push(pair("Accept-Encoding", "gzip, deflate, br"));
            }
            if h.forwarded_for {
                v.push(pair("X-Forwarded-For", &remote_ip));
            }
            v
        }),
        headers_out: p.headers_out.then(|| {
            vec![
                pair("Content-Type", p.content_type),
                pair("Content-Length", &p.response_size.to_string()),
            ]
        }),
        tags: p.tags.as_slice().to_vec(),
        ja3: text(&|o| {
            if p.https {
                write_ja3(p.user_agent, o)
            }
        }),
        remote_ip,
    }
}

/// Path, query and tags for a profile; the attack payload shows in the path or query, and the
/// tag's `value` quotes it like the real detectors do.
fn request_line(
    p: &Profile,
    site: &SiteInfo,
    user_agent: &'static str,
    r: &mut Rng64,
) -> (&'static str, &'static str, &'static str, Tags) {
    let tag = |kind, location, value, detector| Tag {
        kind,
        location,
        value,
        detector,
        redaction: 0,
    };
    let page = || {
        if site.is_api { API_PAGES } else { WWW_PAGES }
    };
    let mut tags = Tags::new();
    let (method, path, query) = match p.kind {
        Kind::Page => {
            let (path, q) = *r.pick(page());
            ("GET", path, q)
        }
        Kind::Static => ("GET", *r.pick(STATIC), ""),
        Kind::NotFound => {
            tags.push(tag("HTTP404", "", "", ""));
            ("GET", *r.pick(MISSING), "")
        }
        Kind::Sqli => {
            let (_, q, value) = *r.pick(SQLI);
            let path = if site.is_api { "/v1/search" } else { "/search" };
            let mut t = tag("SQLI", "QUERY_STRING", value, "SQLiRule");
            if r.chance(0.1) {
                // Some corps redact matched values; the tag stays, the value goes.
                t.value = "";
                t.redaction = 1;
            }
            tags.push(t);
            ("GET", path, q)
        }
        Kind::Xss => {
            tags.push(tag(
                "XSS",
                "QUERY_STRING",
                "q=<script>alert(document.cookie)</script>",
                "XSSRule",
            ));
            (
                "GET",
                "/search",
                "?q=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E",
            )
        }
        Kind::Traversal => {
            tags.push(tag(
                "TRAVERSAL",
                "PATH",
                "/../../../../etc/passwd",
                "TraversalRule",
            ));
            ("GET", "/static/../../../../etc/passwd", "")
        }
        Kind::CmdExe => {
            tags.push(tag(
                "CMDEXE",
                "POST",
                "host=127.0.0.1;cat /etc/passwd",
                "CMDEXERule",
            ));
            ("POST", "/tools/ping", "")
        }
        Kind::Backdoor => {
            let path = *r.pick(SHELLS);
            tags.push(tag("BACKDOOR", "PATH", path, "BackdoorRule"));
            tags.push(tag("HTTP404", "", "", ""));
            ("GET", path, "?cmd=id")
        }
        Kind::Scanner => {
            tags.push(tag("HTTP404", "", "", ""));
            ("GET", *r.pick(PROBES), "")
        }
    };
    if p.scanner_ua {
        tags.push(tag("SCANNER", "USERAGENT", user_agent, "ScannerRule"));
    }
    if p.blocked {
        tags.push(tag("BLOCKED", "", "", ""));
    }
    (method, path, query, tags)
}

/// Appends `ts` as [`rfc3339`] does, without chrono's format-string machinery (the feed writes
/// one per record).
fn push_rfc3339(out: &mut Vec<u8>, ts: i64) {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian, as chrono).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        // Signs, extra digits and chrono's range limit: rare enough to leave to chrono.
        out.extend_from_slice(rfc3339(ts).as_bytes());
        return;
    }
    let two = |out: &mut Vec<u8>, n: i64| {
        out.push(b'0' + (n / 10) as u8);
        out.push(b'0' + (n % 10) as u8);
    };
    two(out, year / 100);
    two(out, year % 100);
    out.push(b'-');
    two(out, month);
    out.push(b'-');
    two(out, day);
    out.push(b'T');
    two(out, secs / 3600);
    out.push(b':');
    two(out, secs / 60 % 60);
    out.push(b':');
    two(out, secs % 60);
    out.push(b'Z');
}

/// `2026-11-24T01:02:03Z`: RFC 3339 in UTC with whole seconds, as the API sends it.
pub(crate) fn rfc3339(ts: i64) -> String {
    match chrono::DateTime::from_timestamp(ts, 0) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => "1970-01-01T00:00:00Z".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_in_objects_agree_with_profiles() {
        let g = Generator::new(3, "demo", &["www".into()], 60, 0.0, true);
        let site = &g.sites[0];
        let l = g.layout(site, 1_700_000_000 / 60 * 60);
        let mut blocked = 0;
        for k in 0..l.len() as u32 {
            let ev = l.event(k);
            let e = build(&g, site, &ev);
            let json = serde_json::to_value(&e).expect("serialisable");
            let types: Vec<&str> = json["tags"]
                .as_array()
                .expect("tags array")
                .iter()
                .filter_map(|t| t["type"].as_str())
                .collect();
            assert_eq!(types, profile(ev.hash).tag_types());
            if types.contains(&"BLOCKED") {
                blocked += 1;
                assert_eq!(json["agentResponseCode"], 406);
            }
            assert_eq!(json["uri"].as_str().map(|u| u.starts_with('/')), Some(true));
        }
        assert!(blocked <= l.len());
        assert_eq!(rfc3339(1_795_482_123), "2026-11-24T01:02:03Z");
    }

    /// The feed's writer against serde's rendering of the same request, over enough traffic
    /// to meet every kind, tag combination and optional part.
    #[test]
    fn writer_matches_serde_for_every_shape() {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for seed in [1, 7, 12_345] {
            // A site name that needs escaping, and an API site (its own paths and headers).
            let sites = [
                "www".into(),
                "my-api".into(),
                "we\"ird\\\u{1}\n\u{7f}ß".into(),
            ];
            let g = Generator::new(seed, "demo", &sites, 60, 0.01, true);
            for site in &g.sites {
                for m in 0..40 {
                    let l = g.layout(site, 1_700_000_000 / 60 * 60 + m * 60);
                    for k in 0..l.len() as u32 {
                        let ev = l.event(k);
                        out.clear();
                        write_json(&g, site, &ev, &mut out);
                        let want = serde_json::to_vec(&build(&g, site, &ev)).expect("serialisable");
                        assert_eq!(
                            String::from_utf8_lossy(&out),
                            String::from_utf8_lossy(&want)
                        );
                        let e = build(&g, site, &ev);
                        let p = profile(ev.hash);
                        seen.insert(format!("{:?}", p.kind));
                        seen.insert(format!("tags:{}", p.tag_types().join("+")));
                        for (cond, name) in [
                            (e.remote_ip.contains(':'), "ipv6"),
                            (!e.remote_hostname.is_empty(), "hostname"),
                            (e.headers_in.is_none(), "no headers in"),
                            (e.headers_out.is_none(), "no headers out"),
                            (e.ja3.is_empty(), "plain http"),
                            (e.tags.iter().any(|t| t.redaction == 1), "redacted"),
                            (e.uri != e.path, "query"),
                            (e.method == "POST", "post"),
                            (
                                e.headers_in.as_ref().is_some_and(|h| h.len() == 5),
                                "forwarded",
                            ),
                        ] {
                            if cond {
                                seen.insert(name.to_string());
                            }
                        }
                    }
                }
            }
        }
        for want in [
            "Page",
            "Static",
            "NotFound",
            "Sqli",
            "Xss",
            "Traversal",
            "CmdExe",
            "Backdoor",
            "Scanner",
            "ipv6",
            "hostname",
            "no headers in",
            "no headers out",
            "plain http",
            "redacted",
            "query",
            "post",
            "forwarded",
            "tags:BACKDOOR+HTTP404+SCANNER+BLOCKED",
            "tags:SQLI+BLOCKED",
            "tags:XSS+SCANNER",
        ] {
            assert!(seen.contains(want), "never generated: {want}");
        }
    }

    #[test]
    fn timestamps_format_like_chrono() {
        let mut cases = vec![
            0,
            -1,
            59,
            86_399,
            86_400,
            951_782_400,   // 2000-02-29
            4_107_542_399, // 2100-02-28T23:59:59
            4_107_542_400,
            253_402_300_799, // 9999-12-31T23:59:59
            253_402_300_800, // year 10000: chrono's form
            -62_167_219_200, // 0000-01-01
            -62_167_219_201, // year -1
            i64::MAX,
            i64::MIN,
        ];
        let mut r = Rng64::new(5);
        cases.extend((0..20_000).map(|_| r.below(260_000_000_000) as i64 - 62_200_000_000));
        for ts in cases {
            let mut out = Vec::new();
            push_rfc3339(&mut out, ts);
            assert_eq!(String::from_utf8(out).unwrap(), rfc3339(ts), "{ts}");
        }
    }

    #[test]
    fn constants_need_no_escaping() {
        let tables: [&[&str]; 8] = [
            BROWSERS,
            CLIENTS,
            SCANNERS,
            COUNTRIES,
            ATTACK_COUNTRIES,
            STATIC,
            MISSING,
            PROBES,
        ];
        let pages = WWW_PAGES
            .iter()
            .chain(API_PAGES)
            .flat_map(|(p, q)| [*p, *q]);
        let sqli = SQLI.iter().flat_map(|(a, b, c)| [*a, *b, *c]);
        for s in tables
            .into_iter()
            .flatten()
            .copied()
            .chain(SHELLS.iter().copied())
            .chain(pages)
            .chain(sqli)
        {
            assert!(!needs_escape(s), "{s:?}");
        }
    }

    #[test]
    fn sqli_table_is_the_payload_encoded() {
        for (payload, query, value) in SQLI {
            let q = format!("?q={}", payload.replace(' ', "%20").replace('\'', "%27"));
            assert_eq!(*query, q);
            assert_eq!(*value, format!("q={payload}"));
        }
    }
}
