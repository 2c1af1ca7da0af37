//! What a refused server certificate means, in words.
//!
//! rustls reports a certificate it refused as `invalid peer certificate: <reason>`, with
//! reasons such as `UnknownIssuer` or `Other(OtherError(CaUsedAsEndEntity))`. Retrying does
//! not change a certificate, so such a failure needs the operator: the sink is blocked (ERROR,
//! `/readyz`) with a sentence that says what is wrong with the certificate and what to do, and
//! keeps probing its health, so it resumes by itself once the certificate is fixed.

/// The marker rustls puts before the reason it refused the server's certificate.
const REFUSED: &str = "invalid peer certificate: ";

/// Why the server's certificate was refused and what to do, when one of `causes` (an error
/// chain's texts) says it was; `None` for any other failure. `untrusted` is the sink's own
/// advice for a certificate signed by a CA this host does not trust (where its `ca_file` is).
pub(super) fn refused_certificate<'a>(
    causes: impl IntoIterator<Item = &'a str>,
    untrusted: &str,
) -> Option<String> {
    let cause = causes.into_iter().find_map(|c| {
        let at = c.find(REFUSED)?;
        Some(&c[at + REFUSED.len()..])
    })?;
    let what = if cause.contains("CaUsedAsEndEntity") {
        "the server presents a CA certificate (its certificate authority's own) as its \
         certificate, and a CA certificate cannot identify a server: configure the server \
         with a server certificate issued by that CA"
            .to_string()
    } else if cause.starts_with("UnknownIssuer") {
        format!(
            "the server's certificate is signed by a certificate authority this host does not \
             trust (a self-signed certificate, or a private CA); {untrusted}"
        )
    } else if cause.starts_with("certificate expired") || cause.starts_with("Expired") {
        format!(
            "the server's certificate expired{}: renew it on the server (or, if it is still \
             valid, check this host's clock)",
            date_after(cause, "not valid after ").map_or_else(String::new, |d| format!(" on {d}"))
        )
    } else if cause.starts_with("certificate not valid yet") || cause.starts_with("NotValidYet") {
        format!(
            "the server's certificate is not valid yet{}: check this host's clock",
            date_after(cause, "not valid before ")
                .map_or_else(String::new, |d| format!(" (it is valid from {d})"))
        )
    } else if cause.starts_with("certificate not valid for name")
        || cause.starts_with("NotValidForName")
    {
        name_mismatch(cause)
    } else if cause.starts_with("Revoked") {
        "the server's certificate was revoked: install a new one on the server".to_string()
    } else if cause.contains("extended key usage") || cause.starts_with("InvalidPurpose") {
        "the server's certificate is not meant for a TLS server (its extended key usage \
         lacks serverAuth): issue it as a server certificate"
            .to_string()
    } else {
        format!(
            "the server's certificate did not verify ({}); {untrusted}",
            cause.trim()
        )
    };
    Some(format!("TLS certificate refused: {what}"))
}

/// The RFC 3339 form of the Unix time after `marker` in rustls's text.
fn date_after(cause: &str, marker: &str) -> Option<String> {
    let rest = &cause[cause.find(marker)? + marker.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(crate::time::rfc3339(digits.parse().ok()?))
}

/// `certificate not valid for name "h"; certificate is only valid for DnsName("a") or ...`
fn name_mismatch(cause: &str) -> String {
    let host = cause
        .split('"')
        .nth(1)
        .map_or_else(String::new, |h| format!(" ({h})"));
    let names = match cause.split_once("is only valid for ") {
        Some((_, list)) => format!(
            "; it names {}",
            list.replace("DnsName(", "")
                .replace("IpAddress(", "")
                .replace(['"', ')'], "")
                .trim()
        ),
        None if cause.contains("not valid for any names") => "; it names no host".to_string(),
        None => String::new(),
    };
    format!(
        "the server's certificate does not name the host in `url`{host}{names}: use a host \
         name the certificate names, or issue one that names this host"
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::test_pki::{ca, serve};
    use super::*;
    use crate::sink::SinkError;
    use crate::sink::http::{TransportHints, transport_error_with_hint};

    const HINTS: TransportHints = TransportHints {
        untrusted_certificate: "set `ca_file` to the CA that signed it",
        https_to_plain: "plain",
        refused: "refused",
        http_to_tls: "tls",
        timeout: "timeout",
    };

    #[test]
    fn rustls_reasons_become_sentences() {
        let say = |cause: &str| refused_certificate([cause], "set ca_file").unwrap();
        for (cause, want) in [
            (
                "invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
                "presents a CA certificate",
            ),
            ("invalid peer certificate: UnknownIssuer", "does not trust"),
            ("invalid peer certificate: UnknownIssuer", "set ca_file"),
            (
                "invalid peer certificate: certificate expired: verification time 1796349886 (UNIX), but certificate is not valid after 1609459200 (186890686 seconds ago)",
                "expired on 2021-01-01T00:00:00Z: renew it",
            ),
            (
                "invalid peer certificate: certificate not valid yet: verification time 1609459200 (UNIX), but certificate is not valid before 1796349886 (1 seconds in future)",
                "not valid yet (it is valid from 2026-",
            ),
            (
                "invalid peer certificate: certificate not valid for name \"127.0.0.1\"; certificate is only valid for DnsName(\"other.example\") or DnsName(\"b.example\")",
                "does not name the host in `url` (127.0.0.1); it names other.example or b.example",
            ),
            (
                "invalid peer certificate: certificate not valid for name \"h\"; certificate is not valid for any names (according to its subjectAltName extension)",
                "it names no host",
            ),
            ("invalid peer certificate: Revoked", "was revoked"),
            (
                "invalid peer certificate: BadSignature",
                "did not verify (BadSignature); set ca_file",
            ),
        ] {
            let s = say(cause);
            assert!(s.contains(want), "{cause}: {s}");
            assert!(!s.contains("OtherError"), "{s}");
        }
        assert_eq!(refused_certificate(["connection refused"], "x"), None);
        assert_eq!(
            refused_certificate(["received fatal alert: CertificateRequired"], "x"),
            None,
            "the server refusing us is another matter"
        );
    }

    /// The error of a request to a TLS server presenting `leaf`, trusting only `ca_pem`.
    async fn refused(leaf: super::test_pki::Leaf, ca_pem: &str) -> SinkError {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        let addr = serve(leaf).await;
        let client =
            crate::sink::http::client("s", Duration::from_secs(5), Some(&ca_file)).unwrap();
        let url = url::Url::parse(&format!("https://{addr}/")).unwrap();
        let e = client.get(url.clone()).send().await.unwrap_err();
        transport_error_with_hint(e, &url, &HINTS)
    }

    /// Each way a server certificate is refused blocks the sink with a sentence: retrying does
    /// not change a certificate.
    #[tokio::test]
    async fn refused_certificates_block_with_a_sentence() {
        let trusted = ca("trusted test CA");
        let other = ca("unknown test CA");
        for (leaf, want) in [
            (trusted.as_leaf(), "presents a CA certificate"),
            (other.leaf("127.0.0.1", false), "set `ca_file` to the CA"),
            (
                trusted.leaf("127.0.0.1", true),
                "expired on 2021-01-01T00:00:00Z",
            ),
            (
                trusted.leaf("other.example", false),
                "it names other.example",
            ),
        ] {
            match refused(leaf, &trusted.pem).await {
                SinkError::Blocked { reason } => {
                    assert!(
                        reason.starts_with("cannot connect: TLS certificate refused"),
                        "{reason}"
                    );
                    assert!(reason.contains(want), "{reason}");
                    assert!(
                        !reason.contains("OtherError") && !reason.contains("127.0.0.1:"),
                        "{reason}"
                    );
                }
                other => panic!("{want}: {other:?}"),
            }
        }
        // The same CA's good certificate is accepted: the refusals are about the certificates.
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &trusted.pem).unwrap();
        let addr = serve(trusted.leaf("127.0.0.1", false)).await;
        let client =
            crate::sink::http::client("s", Duration::from_secs(5), Some(&ca_file)).unwrap();
        let resp = client.get(format!("https://{addr}/")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
}

/// Test certificates made at run time, and a TLS server presenting one.
#[cfg(test)]
pub(crate) mod test_pki {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    /// A certificate authority, valid for 127.0.0.1 too (so it can be misused as a server's).
    pub(crate) struct Ca {
        /// Its certificate, for a `ca_file`.
        pub(crate) pem: String,
        der: CertificateDer<'static>,
        key_der: Vec<u8>,
        issuer: Issuer<'static, KeyPair>,
    }

    pub(crate) fn ca(name: &str) -> Ca {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server's certificate chain and key.
    pub(crate) struct Leaf {
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    }

    impl Ca {
        /// A server certificate for `name` (an IP address or a DNS name), expired or not.
        pub(crate) fn leaf(&self, name: &str, expired: bool) -> Leaf {
            let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
            if expired {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            Leaf {
                chain: vec![cert.der().clone()],
                key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            }
        }

        /// The CA's own certificate, presented as a server's.
        pub(crate) fn as_leaf(&self) -> Leaf {
            Leaf {
                chain: vec![self.der.clone()],
                key: PrivateKeyDer::try_from(self.key_der.clone()).unwrap(),
            }
        }
    }

    /// A TLS server presenting `leaf`, answering any request with `200 {}`.
    pub(crate) async fn serve(leaf: Leaf) -> SocketAddr {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain, leaf.key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let mut buf = [0u8; 4096];
                        let _ = tls.read(&mut buf).await;
                        let _ = tls
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                            .await;
                    }
                });
            }
        });
        addr
    }
}
