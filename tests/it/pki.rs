//! Test certificates made at run time (rcgen), each wrong in one way a client must refuse, and
//! the rustls acceptor that presents one. No key is checked in: every run makes its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate authority. Its own certificate also names 127.0.0.1, so it can be misused as a
/// server's (the case rustls reports as `CaUsedAsEndEntity`).
pub(crate) struct Ca {
    pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

/// A server's certificate and key.
pub(crate) struct Leaf {
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
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

    /// A server certificate for `name` (an IP address or a DNS name); an expired one ended on
    /// 2021-01-01T00:00:00Z.
    pub(crate) fn leaf(&self, name: &str, expired: bool) -> Leaf {
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// The CA's own certificate, presented as a server's.
    pub(crate) fn as_leaf(&self) -> Leaf {
        Leaf {
            der: self.der.clone(),
            key_der: self.key_der.clone(),
        }
    }

    /// Writes the CA's certificate into `dir` for a `ca_file` setting and returns its path.
    pub(crate) fn write_pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join("test-ca.pem");
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

/// A rustls acceptor (ring, as reqwest uses) presenting `leaf`.
pub(crate) fn acceptor(leaf: &Leaf) -> TlsAcceptor {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der.clone()],
        PrivateKeyDer::try_from(leaf.key_der.clone()).unwrap(),
    )
    .unwrap();
    TlsAcceptor::from(Arc::new(config))
}
