//! Validation of the sink's credentials: which `auth` applies when it is left unset, and where
//! they may be sent.

use serde_json::json;

use super::*;

fn validate_json(v: serde_json::Value) -> Result<EsConfig, ConfigError> {
    validate(1, serde_json::from_value(v).unwrap())
}

#[test]
fn one_kind_of_credential_without_auth_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "a2V5LWlkOmtleQ==\n").unwrap();
    let c = validate_json(json!({"url": "https://h", "api_key_file": key_file})).unwrap();
    assert!(matches!(&c.auth, EsAuth::ApiKey(k) if k.expose() == "a2V5LWlkOmtleQ=="));
    let c = validate_json(json!({"url": "https://h", "api_key": "k"})).unwrap();
    assert!(matches!(c.auth, EsAuth::ApiKey(_)));
    let c = validate_json(json!({"url": "https://h", "username": "u", "password": "p"})).unwrap();
    assert!(matches!(&c.auth, EsAuth::Basic { username, .. } if username == "u"));
    let c = validate_json(json!({"url": "https://h", "bearer_token": "t"})).unwrap();
    assert!(matches!(c.auth, EsAuth::Bearer(_)));
    let c = validate_json(json!({"url": "https://h"})).unwrap();
    assert!(matches!(c.auth, EsAuth::None));
    // Half of a basic pair is still basic: the missing half is named.
    let e =
        validate_json(json!({"url": "https://h", "name": "halfpw", "username": "u"})).unwrap_err();
    assert_eq!(e.key, "sinks[1].password");
}

#[test]
fn two_kinds_of_credential_without_auth_ask_to_choose() {
    for v in [
        json!({"url": "https://h", "api_key": "k-SECRET", "password": "p-SECRET", "username": "u"}),
        json!({"url": "https://h", "api_key": "k-SECRET", "bearer_token": "t-SECRET"}),
    ] {
        let e = validate_json(v.clone()).unwrap_err();
        assert_eq!(e.key, "sinks[1].auth", "{v}: {e}");
        assert!(e.reason.contains("auth = \"basic\""), "{e}");
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }
    // An explicit auth still refuses a credential it does not use.
    let e = validate_json(
        json!({"url": "https://h", "auth": "bearer", "bearer_token": "t", "api_key": "k"}),
    )
    .unwrap_err();
    assert_eq!(e.key, "sinks[1].api_key");
}

#[test]
fn credentials_never_go_over_http_to_another_host() {
    for v in [
        json!({"url": "http://es.example.com:9200", "api_key": "k"}),
        json!({"url": "http://10.1.2.3:9200", "auth": "basic", "username": "u", "password": "p"}),
        json!({"url": "http://es:9200", "auth": "bearer", "bearer_token": "t"}),
    ] {
        let e = validate_json(v.clone()).unwrap_err();
        assert_eq!(e.key, "sinks[1].url", "{v}: {e}");
        assert!(e.reason.contains("https://"), "{e}");
    }
    // Without credentials nothing secret crosses the network; on loopback nothing leaves.
    validate_json(json!({"url": "http://es.example.com:9200"})).unwrap();
    validate_json(json!({"url": "http://127.0.0.1:9200", "api_key": "k"})).unwrap();
    validate_json(json!({"url": "http://localhost:9200", "username": "u", "password": "p"}))
        .unwrap();
}
