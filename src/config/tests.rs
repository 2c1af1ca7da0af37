//! Unit tests of loading and validation.

use std::path::Path;

use super::load::load_inner;
use super::*;

fn parse(toml: &str) -> Result<Config, ConfigError> {
    load_inner(Source::Embedded(toml), &[], &|_| None)
}

const MINIMAL: &str = r#"
        [api]
        email = "soc@example.com"
        token = "t0k"
        corp = "acme"
        sites = ["www"]
        [[sinks]]
        type = "stdout"
    "#;

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.api.base_url.as_str(), DEFAULT_BASE_URL);
    assert_eq!(c.api.requests_per_minute.get(), 60);
    assert_eq!(c.api.retention_secs, 86_700);
    assert_eq!(c.poll.delay_secs, 300);
    assert_eq!(c.poll.max_window_secs, 3600);
    assert_eq!(c.sinks[0].name(), "stdout");
    assert_eq!(c.api.sites, Sites::List(vec!["www".into()]));
}

#[test]
fn example_and_default_configs_parse() {
    let example = include_str!("../../config/example.toml");
    // The example points at files that exist only in production; drop those lines.
    let example: String = example
        .lines()
        .filter(|l| {
            !l.trim_start().starts_with("token_file") && !l.trim_start().starts_with("ca_file")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let example = example.replace("[api]", "[api]\ntoken = \"x\"");
    parse(&example).unwrap();
    parse(DEMO_DEFAULT).unwrap();
    parse(include_str!("../../config/simulator.toml")).unwrap();
    parse(include_str!("../../config/simulator-es.toml")).unwrap();
}

#[test]
fn unknown_key_is_named() {
    let e =
        parse(&MINIMAL.replace("corp = \"acme\"", "corp = \"acme\"\ntokn = \"x\"")).unwrap_err();
    assert_eq!(e.key, "api.tokn", "{e}");
    let e = parse(&format!("{MINIMAL}\n[pol]\nx = 1")).unwrap_err();
    assert!(e.to_string().contains("pol"), "{e}");
    let e =
        parse(&MINIMAL.replace("type = \"stdout\"", "type = \"stdout\"\nbogus = 1")).unwrap_err();
    assert!(e.to_string().contains("bogus"), "{e}");
}

#[test]
fn each_bad_value_names_its_key() {
    let cases = [
        (
            "requests_per_minute",
            "requests_per_minute = 0",
            "api.requests_per_minute",
        ),
        ("page_limit", "page_limit = 1001", "api.page_limit"),
        ("sites", "sites = [\"WWW Production\"]", "api.sites"),
        ("base_url", "base_url = \"ftp://x\"", "api.base_url"),
        ("retention", "retention_secs = 10", "api.retention_secs"),
    ];
    for (what, line, key) in cases {
        let toml = MINIMAL.replace("corp = \"acme\"", &format!("corp = \"acme\"\n{line}"));
        let toml = if what == "sites" {
            toml.replace("sites = [\"www\"]\n", "")
        } else {
            toml
        };
        let e = parse(&toml).unwrap_err();
        assert_eq!(e.key, key, "{what}: {e}");
    }
    let e = parse(&format!("{MINIMAL}\n[poll]\ndelay_secs = 60")).unwrap_err();
    assert_eq!(e.key, "poll.delay_secs");
    let e = parse(&format!("{MINIMAL}\n[poll]\nmax_window_secs = 90")).unwrap_err();
    assert_eq!(e.key, "poll.max_window_secs");
    let e = parse(&format!("{MINIMAL}\n[poll]\nstart_at = \"yesterday\"")).unwrap_err();
    assert_eq!(e.key, "poll.start_at");
    let e = parse(&MINIMAL.replace("[[sinks]]\n        type = \"stdout\"", "")).unwrap_err();
    assert_eq!(e.key, "sinks");
    let e = parse(&MINIMAL.replace("token = \"t0k\"", "")).unwrap_err();
    assert_eq!(e.key, "api.token");
    let e = parse(&format!("{MINIMAL}\n[[sinks]]\ntype = \"stdout\"")).unwrap_err();
    assert_eq!(e.key, "sinks[1].name");
    let e = parse(&format!("{MINIMAL}\n[[sinks]]\ntype = \"kafka\"")).unwrap_err();
    assert!(e.to_string().contains("kafka"), "{e}");
}

#[test]
fn token_file_and_env_fallbacks() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tok");
    std::fs::write(&f, "from-file\n").unwrap();
    let toml = MINIMAL.replace("token = \"t0k\"", &format!("token_file = {:?}", f));
    let c = parse(&toml).unwrap();
    assert_eq!(c.api.auth.token.expose(), "from-file");

    let toml = MINIMAL
        .replace("token = \"t0k\"", "")
        .replace("email = \"soc@example.com\"", "");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, &toml).unwrap();
    let env = |k: &str| match k {
        "SIGSCI_EMAIL" => Some("env@example.com".to_string()),
        "SIGSCI_TOKEN" => Some("env-token".to_string()),
        _ => None,
    };
    let c = load_inner(Source::File(&path), &[], &env).unwrap();
    assert_eq!(c.api.auth.email, "env@example.com");
    assert_eq!(c.api.auth.token.expose(), "env-token");
}

#[test]
fn debug_output_hides_the_token() {
    let c = parse(&MINIMAL.replace("t0k", "very-secret-token-123")).unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("very-secret-token-123"), "{shown}");
}

#[test]
fn filters_parse_and_validate() {
    let c = parse(MINIMAL).unwrap();
    assert!(c.filters.for_site("www").is_empty());
    assert!(c.filters.server_side());
    let toml = format!(
        "{MINIMAL}\n[filters]\ninclude_tags = [\"SQLI\", \" XSS\", \"SQLI\"]\nexclude_tags = [\"HTTP404\"]\n\
         [filters.sites.www]\nexclude_tags = [\"BLOCKED\"]"
    );
    let c = parse(&toml).unwrap();
    assert!(c.filters.for_site("www").include().is_empty());
    assert_eq!(c.filters.for_site("www").exclude(), ["BLOCKED"]);
    assert_eq!(c.filters.for_site("other").include(), ["SQLI", "XSS"]);
    assert_eq!(c.filters.for_site("other").exclude(), ["HTTP404"]);
    let cases = [
        (
            "[filters]\ninclude_tags = [\"sqli\"]",
            "filters.include_tags",
        ),
        ("[filters]\nexclude_tags = [\"\"]", "filters.exclude_tags"),
        (
            "[filters]\ninclude_tags = [\"XSS\"]\nexclude_tags = [\"XSS\"]",
            "filters.exclude_tags",
        ),
        (
            "[filters.sites.api]\ninclude_tags = [\"XSS\"]",
            "filters.sites.api",
        ),
        (
            "[filters.sites.www]\ninclude_tags = [\"A B\"]",
            "filters.sites.www.include_tags",
        ),
    ];
    for (extra, key) in cases {
        let e = parse(&format!("{MINIMAL}\n{extra}")).unwrap_err();
        assert_eq!(e.key, key, "{extra}: {e}");
    }
    let e = parse(&format!("{MINIMAL}\n[filters]\ninclude = [\"XSS\"]")).unwrap_err();
    assert!(e.to_string().contains("include"), "{e}");
}

#[test]
fn the_state_view_needs_no_secret_and_names_sinks_as_validation_does() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[spool]\npath = \"/var/lib/x/state.db\"\n\
         [[sinks]]\ntype = \"splunk_hec\"\nurl = \"https://splunk.example.com:8088\"\ntoken_file = \"{missing}\"\n\
         [[sinks]]\ntype = \"elasticsearch\"\nurl = \"https://es.example.com:9200\"\n\
         [[sinks]]\ntype = \"stdout\"\nname = \"copy\"\n",
        MINIMAL.replace(
            "token = \"t0k\"",
            &format!("token_file = \"{missing}\"", missing = "/nonexistent/token")
        ),
        missing = "/nonexistent/hec-token",
    );
    let path = dir.path().join("c.toml");
    std::fs::write(&path, &text).unwrap();
    let view = load_state_view(&path).unwrap();
    assert_eq!(view.spool_path, Path::new("/var/lib/x/state.db"));
    assert_eq!(
        view.sinks,
        ["stdout", "splunk_hec", "elasticsearch", "copy"]
    );
    // With the secrets present, full validation names the sinks the same way.
    let full = parse(
        &text
            .replace("token_file = \"/nonexistent/token\"", "token = \"t\"")
            .replace("token_file = \"/nonexistent/hec-token\"", "token = \"h\""),
    )
    .unwrap();
    let names: Vec<&str> = full.sinks.iter().map(SinkConfig::name).collect();
    assert_eq!(view.sinks, names);
    // A misspelt key is still an error, naming the file.
    std::fs::write(&path, format!("{text}\n[spool2]\n")).unwrap();
    let e = load_state_view(&path).unwrap_err();
    assert_eq!(e.file.as_deref(), Some(path.as_path()));
}

#[test]
fn a_world_readable_secret_is_found_whatever_the_toml_syntax() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[api]\ntoken = \"s3cr3t\"\n", Some("api.token")),
        ("api.token = \"s3cr3t\"\n", Some("api.token")),
        (
            "api = { corp = \"acme\", token = \"s3cr3t\" }\n",
            Some("api.token"),
        ),
        (
            "sinks = [{ type = \"stdout\" }, { type = \"elasticsearch\", api_key = \"s3cr3t\" }]\n",
            Some("sinks[1].api_key"),
        ),
        (
            "[[sinks]]\ntype = \"splunk_hec\"\nauth.token = \"s3cr3t\"\n",
            Some("sinks[0].auth.token"),
        ),
        ("[api]\ntoken_file = \"/run/credentials/x\"\n", None),
        ("# token = \"s3cr3t\"\n[api]\ncorp = \"acme\"\n", None),
    ];
    for (i, (text, key)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warning = secret_permissions_warning(&path);
        match key {
            Some(key) => {
                let w = warning.unwrap_or_else(|| panic!("{text}: no warning"));
                assert!(w.contains(&format!("(`{key}`)")), "{text}: {w}");
                assert!(!w.contains("s3cr3t"), "{w}");
            }
            None => assert_eq!(warning, None, "{text}"),
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(secret_permissions_warning(&path), None, "{text}: mode 600");
    }
}

#[test]
fn missing_file_is_a_config_error() {
    let e = load(Source::File(Path::new("/nonexistent/x.toml")), &[]).unwrap_err();
    assert_eq!(e.key, "config");
}

#[test]
fn a_start_in_the_future_is_refused_and_now_is_not() {
    let now = 1_796_000_000;
    let poll = |start: &str| RawPoll {
        start_at: Some(start.to_string()),
        ..RawPoll::default()
    };
    let e = validate_poll(poll("2099-01-01T00:00:00Z"), now).unwrap_err();
    assert_eq!(e.key, "poll.start_at");
    assert!(e.reason.contains("in the future"), "{e}");
    assert_eq!(
        validate_poll(poll("now"), now).unwrap().start_at,
        Some(now - now % 60)
    );
    assert_eq!(
        validate_poll(poll("-2h"), now).unwrap().start_at,
        Some(now - 7200 - now % 60)
    );
}
