//! Requests to the API that got no HTTP reply at all, put in words: most (timeouts, refused or
//! reset connections) are transient; a TLS certificate that does not verify is not, and is
//! refused with what is wrong with it and what to do.
//!
//! The sinks have their own wording of the same failures (`sink::http`); the feed's differs in
//! the fields it names (`api.ca_file`, `api.base_url`) and in that an untrusted API certificate
//! needs an operator rather than a retry.

use url::Url;

use super::FeedError;

/// [`FeedError`] for a request that failed before a reply: [`FeedError::Refused`] for a
/// certificate that does not verify, [`FeedError::Transient`] for everything else.
pub(crate) fn send_error(e: reqwest::Error, base: &Url) -> FeedError {
    if let Some(problem) = certificate_problem(&e) {
        let (why, fix) = explain_certificate(&problem, base);
        return FeedError::Refused {
            reason: format!("the API's TLS certificate is not trusted: {why}; {fix}"),
        };
    }
    let (timeout, connect) = (e.is_timeout(), e.is_connect());
    let text = describe(e);
    FeedError::Transient {
        reason: if timeout {
            format!("request timed out: {text}")
        } else if connect {
            format!("cannot connect to {base}: {text}")
        } else {
            text
        },
    }
}

/// reqwest's message and its causes, without the request's URL (a `next` URI is long and says
/// nothing a reader needs; the messages name the server where it matters).
pub(crate) fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// rustls's words for the certificate error, when the error is one: the text after `invalid
/// peer certificate: ` in whichever cause says it. The causes' texts are the only portable
/// signal: the rustls error is boxed inside hyper's and the OS's, with no type to match.
fn certificate_problem(e: &reqwest::Error) -> Option<String> {
    const MARK: &str = "invalid peer certificate: ";
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        let text = c.to_string();
        if let Some(at) = text.find(MARK) {
            return Some(text[at + MARK.len()..].to_string());
        }
        cur = c.source();
    }
    None
}

/// What is wrong with the certificate, in words, and what to do about it.
fn explain_certificate(problem: &str, base: &Url) -> (String, String) {
    let host = base.host_str().unwrap_or("?");
    let default_fix = "set api.ca_file or fix the server".to_string();
    if problem.contains("UnknownIssuer") {
        return (
            "it is signed by a certificate authority this host does not trust".into(),
            "set api.ca_file to that authority's certificate (a private CA, or a proxy that \
             inspects TLS) or fix the server"
                .into(),
        );
    }
    if problem.contains("CaUsedAsEndEntity") {
        return (
            "the server presents a CA certificate as its own (as `openssl req -x509` makes by \
             default)"
                .into(),
            "give the server a certificate without CA:TRUE, issued by a CA in api.ca_file, or \
             fix the server"
                .into(),
        );
    }
    if problem.contains("expired") || problem.contains("Expired") {
        let when = epoch_after(problem, "not valid after ")
            .map(|t| format!(" on {}", crate::time::rfc3339(t)))
            .unwrap_or_default();
        return (
            format!("it expired{when}"),
            "renew the server's certificate (or correct this host's clock)".into(),
        );
    }
    if problem.contains("not valid yet") || problem.contains("NotValidYet") {
        let when = epoch_after(problem, "not valid before ")
            .map(|t| format!(" until {}", crate::time::rfc3339(t)))
            .unwrap_or_default();
        return (
            format!("it is not valid yet{when}"),
            "correct this host's clock (NTP) or fix the server".into(),
        );
    }
    if problem.contains("not valid for name") || problem.contains("NotValidForName") {
        // rustls's own text goes on with the names the certificate covers.
        let covers = problem
            .split_once("; certificate ")
            .map(|(_, rest)| format!(" (it {})", plain_names(rest)))
            .unwrap_or_default();
        return (
            format!("it is not valid for `{host}`, the host in api.base_url{covers}"),
            "use a host name the certificate covers in api.base_url, or fix the server".into(),
        );
    }
    if problem.contains("Revoked") {
        return ("it has been revoked".into(), default_fix);
    }
    (format!("it does not verify ({problem})"), default_fix)
}

/// webpki's names (`DnsName("api.example.com")`, `IpAddress(192.0.2.1)`) as `` `api.example.com` ``.
fn plain_names(text: &str) -> String {
    let mut out = text.to_string();
    for (open, close) in [("DnsName(\"", "\")"), ("IpAddress(", ")")] {
        while let Some(at) = out.find(open) {
            let Some(len) = out[at + open.len()..].find(close) else {
                break;
            };
            let name = out[at + open.len()..at + open.len() + len].to_string();
            out.replace_range(
                at..at + open.len() + len + close.len(),
                &format!("`{name}`"),
            );
        }
    }
    out
}

/// The Unix time rustls writes after `label` (`... not valid after 1609459200 (UNIX) ...`).
fn epoch_after(text: &str, label: &str) -> Option<i64> {
    let rest = &text[text.find(label)? + label.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://127.0.0.1:8443/api/v0").unwrap()
    }

    #[test]
    fn rustls_certificate_errors_are_put_in_words() {
        let cases = [
            ("UnknownIssuer", "does not trust", "api.ca_file"),
            (
                "Other(OtherError(CaUsedAsEndEntity))",
                "CA certificate as its own",
                "CA:TRUE",
            ),
            (
                "certificate expired: verification time 1796000000 (UNIX), but certificate is \
                 not valid after 1609459200 (186540800 seconds ago)",
                "expired on 2021-01-01T00:00:00Z",
                "renew",
            ),
            (
                "certificate not valid yet: verification time 1 (UNIX), but certificate is not \
                 valid before 1609459200 (1609459199 seconds in future)",
                "not valid yet until 2021-01-01T00:00:00Z",
                "clock",
            ),
            (
                "certificate not valid for name \"127.0.0.1\"; certificate is only valid for \
                 DnsName(\"other.example\") or IpAddress(192.0.2.1)",
                "not valid for `127.0.0.1`, the host in api.base_url (it is only valid for \
                 `other.example` or `192.0.2.1`)",
                "api.base_url",
            ),
            ("Revoked", "revoked", "api.ca_file"),
            (
                "BadSignature",
                "does not verify (BadSignature)",
                "api.ca_file",
            ),
        ];
        for (problem, why_part, fix_part) in cases {
            let (why, fix) = explain_certificate(problem, &base());
            assert!(why.contains(why_part), "{problem}: {why}");
            assert!(fix.contains(fix_part), "{problem}: {fix}");
            assert!(!why.contains("OtherError"), "{why}");
        }
    }
}
