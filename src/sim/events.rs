//! The request objects the feed serves, built from a request's hash.
//!
//! A request first gets a cheap [`Profile`] (what kind of traffic it is, which signals it
//! carries): that is all the `tags` filter needs. The full object, with every field of the real
//! API (go-sigsci `Request`), is only built for requests that end up on a page. Attacks correlate
//! with attack-looking paths, user agents and a small pool of attacker addresses, like real feeds.

use serde::Serialize;

use super::data::{EventRef, Generator, Rng64, SiteInfo, hash_str, mix};

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

/// One tag (signal) on a request, as the API sends it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Tag {
    #[serde(rename = "type")]
    kind: &'static str,
    location: String,
    value: String,
    detector: &'static str,
    redaction: u8,
}

/// One request record, field for field as the real feed sends it, plus `ja3`: a field the
/// client does not know, so tests can prove unknown fields pass through untouched.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Event {
    pub(crate) id: String,
    server_hostname: String,
    #[serde(rename = "remoteIP")]
    remote_ip: String,
    remote_hostname: String,
    remote_country_code: &'static str,
    user_agent: String,
    pub(crate) timestamp: String,
    method: &'static str,
    server_name: String,
    protocol: &'static str,
    tls_protocol: &'static str,
    tls_cipher: &'static str,
    scheme: &'static str,
    path: String,
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

/// Build the full request object for `ev` of `site`.
pub(crate) fn build(g: &Generator, site: &SiteInfo, ev: &EventRef) -> Event {
    let p = profile(ev.hash);
    let mut r = Rng64::new(mix(ev.hash ^ 0x000B_111D));
    let attacker = p.is_attack() || p.kind == Kind::Scanner;

    let user_agent = if p.scanner_ua {
        r.pick(SCANNERS).to_string()
    } else if attacker || (site.is_api && r.chance(0.5)) || r.chance(0.08) {
        r.pick(CLIENTS).to_string()
    } else {
        r.pick(BROWSERS).to_string()
    };
    let (remote_ip, remote_country_code) = if attacker {
        // A handful of addresses per site: attack traffic comes in bursts from few sources.
        let n = (site.key ^ r.below(6)) % 250 + 2;
        (format!("203.0.113.{n}"), *r.pick(ATTACK_COUNTRIES))
    } else if r.chance(0.15) {
        (
            format!("2001:db8::{:x}:{:x}", r.below(0xffff), r.below(0xffff)),
            *r.pick(COUNTRIES),
        )
    } else {
        let net = if r.chance(0.5) {
            "192.0.2"
        } else {
            "198.51.100"
        };
        (format!("{net}.{}", r.range(1, 254)), *r.pick(COUNTRIES))
    };
    let remote_hostname = if r.chance(0.3) && !remote_ip.contains(':') {
        format!("host-{}.example.net", remote_ip.replace('.', "-"))
    } else {
        String::new()
    };

    let (mut method, path, query, tags) = request_line(&p, site, &user_agent, &mut r);
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
    let uri = format!("{path}{query}");
    let headers_in = (!r.chance(0.08)).then(|| {
        let mut h = vec![
            ("Host".to_string(), site.server_name.clone()),
            ("User-Agent".to_string(), user_agent.clone()),
            ("Accept".to_string(), "*/*".to_string()),
        ];
        if !attacker {
            h.push(("Accept-Encoding".into(), "gzip, deflate, br".into()));
        }
        if r.chance(0.3) {
            h.push(("X-Forwarded-For".into(), remote_ip.clone()));
        }
        h
    });
    let headers_out = (!r.chance(0.08)).then(|| {
        vec![
            ("Content-Type".to_string(), content_type.to_string()),
            ("Content-Length".to_string(), response_size.to_string()),
        ]
    });
    let ja3 = if https {
        format!(
            "{:016x}{:016x}",
            mix(hash_str(&user_agent)),
            hash_str(&user_agent)
        )
    } else {
        String::new()
    };
    let ts = ev.minute + i64::from(ev.second);
    Event {
        id: g.id(site, ev),
        server_hostname: format!("web-{}", r.range(1, 4)),
        remote_ip,
        remote_hostname,
        remote_country_code,
        user_agent,
        timestamp: rfc3339(ts),
        method,
        server_name: site.server_name.clone(),
        protocol,
        tls_protocol,
        tls_cipher,
        scheme,
        path,
        uri,
        response_code,
        response_size,
        response_millis,
        agent_response_code,
        headers_in,
        headers_out,
        tags,
        ja3,
    }
}

/// Path, query and tags for a profile; the attack payload shows in the path or query, and the
/// tag's `value` quotes it like the real detectors do.
fn request_line(
    p: &Profile,
    site: &SiteInfo,
    user_agent: &str,
    r: &mut Rng64,
) -> (&'static str, String, String, Vec<Tag>) {
    let tag = |kind, location: &str, value: &str, detector| Tag {
        kind,
        location: location.to_string(),
        value: value.to_string(),
        detector,
        redaction: 0,
    };
    let page = || {
        if site.is_api { API_PAGES } else { WWW_PAGES }
    };
    let (method, path, query, mut tags) = match p.kind {
        Kind::Page => {
            let (path, q) = *r.pick(page());
            ("GET", path.to_string(), q.to_string(), vec![])
        }
        Kind::Static => ("GET", r.pick(STATIC).to_string(), String::new(), vec![]),
        Kind::NotFound => {
            let path = r.pick(MISSING).to_string();
            ("GET", path, String::new(), vec![tag("HTTP404", "", "", "")])
        }
        Kind::Sqli => {
            let payload = *r.pick(&["1' OR 1=1", "1 UNION SELECT username,password FROM users--"]);
            let q = format!("?q={}", payload.replace(' ', "%20").replace('\'', "%27"));
            let path = if site.is_api { "/v1/search" } else { "/search" };
            let mut t = tag("SQLI", "QUERY_STRING", &format!("q={payload}"), "SQLiRule");
            if r.chance(0.1) {
                // Some corps redact matched values; the tag stays, the value goes.
                t.value.clear();
                t.redaction = 1;
            }
            ("GET", path.to_string(), q, vec![t])
        }
        Kind::Xss => {
            let payload = "<script>alert(document.cookie)</script>";
            let q = "?q=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E".to_string();
            let t = tag("XSS", "QUERY_STRING", &format!("q={payload}"), "XSSRule");
            ("GET", "/search".to_string(), q, vec![t])
        }
        Kind::Traversal => {
            let path = "/static/../../../../etc/passwd".to_string();
            let t = tag(
                "TRAVERSAL",
                "PATH",
                "/../../../../etc/passwd",
                "TraversalRule",
            );
            ("GET", path, String::new(), vec![t])
        }
        Kind::CmdExe => {
            let t = tag(
                "CMDEXE",
                "POST",
                "host=127.0.0.1;cat /etc/passwd",
                "CMDEXERule",
            );
            ("POST", "/tools/ping".to_string(), String::new(), vec![t])
        }
        Kind::Backdoor => {
            let path = r.pick(SHELLS).to_string();
            let t = tag("BACKDOOR", "PATH", &path, "BackdoorRule");
            (
                "GET",
                path,
                "?cmd=id".to_string(),
                vec![t, tag("HTTP404", "", "", "")],
            )
        }
        Kind::Scanner => {
            let path = r.pick(PROBES).to_string();
            ("GET", path, String::new(), vec![tag("HTTP404", "", "", "")])
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
}
