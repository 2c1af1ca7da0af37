//! Configuration mistakes through the real binary: each is refused with exit 2 by `check
//! --offline` (systemd's ExecStartPre) and `run` alike, naming the key or file and never a
//! secret; or, when it can still work, warned about.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sigsci_export::sim::SimConfig;

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(30);

/// A working config in `dir` (the API token in a file); `api` is spliced into `[api]`, `extra`
/// appended. Nothing listens on its base URL: `check --offline` contacts nothing.
fn config_text(dir: &Path, api: &str, extra: &str) -> String {
    let token = dir.join("api-token");
    if !token.exists() {
        std::fs::write(&token, "api-token-value\n").unwrap();
    }
    format!(
        "[api]\nbase_url = \"http://127.0.0.1:9/api/v0\"\nemail = \"demo@example.com\"\n\
         token_file = \"{}\"\ncorp = \"demo\"\nsites = [\"www\"]\n{api}\n\n\
         [spool]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[sinks]]\ntype = \"stdout\"\n{extra}\n",
        token.display(),
        dir.join("state.db").display()
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn check_offline(cfg: &Path, env: &[(&str, &str)]) -> Output {
    run(
        &["check", "--offline", "-c", cfg.to_str().unwrap()],
        env,
        LIMIT,
    )
    .await
}

/// `check --offline` and `run` both exit 2, the error names `key` and shows none of `hidden`.
async fn refused(cfg: &Path, env: &[(&str, &str)], key: &str, hidden: &[&str]) -> String {
    let mut stderr = String::new();
    for cmd in ["check", "run"] {
        let mut args = vec![cmd, "-c", cfg.to_str().unwrap()];
        if cmd == "check" {
            args.push("--offline");
        }
        let out = run(&args, env, LIMIT).await;
        let what = format!("{cmd} with {}", cfg.display());
        assert_eq!(out.code, Some(2), "{what}:\n{}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(key),
            "{what}: {key} not named:\n{}",
            out.stderr
        );
        for h in hidden {
            assert!(
                !out.stderr.contains(h) && !out.stdout.contains(h),
                "{what}: `{h}` printed:\n{}{}",
                out.stdout,
                out.stderr
            );
        }
        stderr = out.stderr;
    }
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_to_another_host_is_refused_and_loopback_works() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), "", "").replace(
        "http://127.0.0.1:9/api/v0",
        "http://dashboard.signalsciences.net/api/v0",
    );
    let e = refused(
        &write(dir.path(), "a.toml", &text),
        &[],
        "api.base_url",
        &[],
    )
    .await;
    assert!(e.contains("https://"), "{e}");
    // Sinks that send credentials follow the same rule.
    let hec = "[[sinks]]\ntype = \"splunk_hec\"\nurl = \"http://splunk.example.com:8088\"\ntoken = \"hec-tok\"";
    let cfg = write(dir.path(), "h.toml", &config_text(dir.path(), "", hec));
    refused(&cfg, &[], "sinks[1].url", &["hec-tok"]).await;
    let es = "[[sinks]]\ntype = \"elasticsearch\"\nurl = \"http://es.example.com:9200\"\nauth = \"basic\"\nusername = \"u\"\npassword = \"es-pw\"";
    let cfg = write(dir.path(), "e.toml", &config_text(dir.path(), "", es));
    refused(&cfg, &[], "sinks[1].url", &["es-pw"]).await;
    // The simulator and receivers on this machine keep working.
    let local = hec.replace("splunk.example.com", "127.0.0.1");
    for (name, text) in [
        ("ok.toml", config_text(dir.path(), "", "")),
        ("okh.toml", config_text(dir.path(), "", &local)),
        (
            "okl.toml",
            config_text(dir.path(), "", "").replace("127.0.0.1:9", "localhost:9"),
        ),
    ] {
        let out = check_offline(&write(dir.path(), name, &text), &[]).await;
        assert_eq!(out.code, Some(0), "{name}:\n{}{}", out.stdout, out.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_base_url_are_refused_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    for (i, url) in [
        "https://soc%40example.com:TOKEN-in-url-77@dashboard.signalsciences.net/api/v0",
        "https://TOKEN-in-url-77@dashboard.signalsciences.net/api/v0",
        "https://dashboard.signalsciences.net/api/v0?token=TOKEN-in-url-77",
        "https://dashboard.signalsciences.net/api/v0?TOKEN-in-url-77",
        // Even a URL that does not parse is not echoed.
        "https://user:TOKEN-in-url-77@dashboard.signalsciences.net:99999/api/v0",
    ]
    .into_iter()
    .enumerate()
    {
        let text = config_text(dir.path(), "", "").replace("http://127.0.0.1:9/api/v0", url);
        let cfg = write(dir.path(), &format!("c{i}.toml"), &text);
        refused(&cfg, &[], "api.base_url", &["TOKEN-in-url-77"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_errors_show_the_position_and_never_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    const S: &str = "Zx9-SECRET-q7";
    // Where a secret sits: a line of `[api]`, of a HEC sink, of an ES sink (key and password).
    let base = config_text(dir.path(), "", "");
    let token_line = format!(
        "token_file = \"{}\"",
        dir.path().join("api-token").display()
    );
    let place = |place: &str, line: &str| -> String {
        match place {
            "api.token" => base.replace(&token_line, line),
            "hec token" => format!(
                "{base}[[sinks]]\ntype = \"splunk_hec\"\nurl = \"https://splunk:8088\"\n{line}\n"
            ),
            "es api_key" => format!(
                "{base}[[sinks]]\ntype = \"elasticsearch\"\nurl = \"https://es:9200\"\n{}\n",
                line.replace("token", "api_key")
            ),
            _ => format!(
                "{base}[[sinks]]\ntype = \"elasticsearch\"\nurl = \"https://es:9200\"\nusername = \"u\"\n{}\n",
                line.replace("token", "password")
            ),
        }
    };
    let mistakes = [
        ("unterminated string", format!("token = \"{S}")),
        ("unterminated literal string", format!("token = '{S}")),
        ("unquoted string", format!("token = {S}")),
        ("duplicate key", format!("token = \"{S}\"\ntoken = \"{S}\"")),
        (
            "trailing junk",
            format!("token = \"{S}\" # ok\ntoken2 = \"{S}\" {S}"),
        ),
        ("junk glued to the value", format!("token = \"{S}\"{S}")),
    ];
    for where_ in ["api.token", "hec token", "es api_key", "es password"] {
        for (mistake, line) in &mistakes {
            let text = place(where_, line);
            assert!(text.contains(S), "{where_}, {mistake}");
            let cfg = write(dir.path(), "syntax.toml", &text);
            let out = check_offline(&cfg, &[]).await;
            let what = format!("{where_}, {mistake}");
            assert_eq!(out.code, Some(2), "{what}:\n{}", out.stderr);
            assert!(
                out.stderr.contains("TOML syntax error at line "),
                "{what}:\n{}",
                out.stderr
            );
            assert!(out.stderr.contains(", column "), "{what}:\n{}", out.stderr);
            assert!(
                !out.stderr.contains("SECRET") && !out.stdout.contains("SECRET"),
                "{what}: the secret is printed:\n{}",
                out.stderr
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_in_the_future_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        dir.path(),
        "",
        "[poll]\nstart_at = \"2099-01-01T00:00:00Z\"",
    );
    let e = refused(
        &write(dir.path(), "f.toml", &text),
        &[],
        "poll.start_at",
        &[],
    )
    .await;
    assert!(e.contains("in the future"), "{e}");
    for start in ["now", "-2h"] {
        let text = config_text(dir.path(), "", &format!("[poll]\nstart_at = \"{start}\""));
        let out = check_offline(&write(dir.path(), "n.toml", &text), &[]).await;
        assert_eq!(out.code, Some(0), "{start}: {}", out.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_secret_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret-file");
    let f = file.display().to_string();
    // Which secret file, and the key its error names.
    let places = [
        ("api.token_file", String::new()),
        (
            "sinks[1].token_file",
            format!(
                "[[sinks]]\ntype = \"splunk_hec\"\nurl = \"https://splunk:8088\"\ntoken_file = \"{f}\""
            ),
        ),
        (
            "sinks[1].password_file",
            format!(
                "[[sinks]]\ntype = \"elasticsearch\"\nurl = \"https://es:9200\"\nusername = \"u\"\npassword_file = \"{f}\""
            ),
        ),
        (
            "sinks[1].api_key_file",
            format!(
                "[[sinks]]\ntype = \"elasticsearch\"\nurl = \"https://es:9200\"\napi_key_file = \"{f}\""
            ),
        ),
    ];
    let contents = [
        "",
        "\n",
        "   \t \n",
        "first-line-HIDDEN\nsecond-line-HIDDEN\n",
        "HIDDEN-value \n",
    ];
    for (key, sink) in &places {
        let mut text = config_text(dir.path(), "", sink);
        if key.starts_with("api") {
            text = text.replace(&dir.path().join("api-token").display().to_string(), &f);
        }
        let cfg = write(dir.path(), "s.toml", &text);
        for content in contents {
            std::fs::write(&file, content).unwrap();
            let e = refused(&cfg, &[], key, &["HIDDEN"]).await;
            assert!(
                e.contains(&f),
                "{key} {content:?}: the file is not named:\n{e}"
            );
        }
        // The same file with the secret alone on one line works.
        std::fs::write(&file, "c2VjcmV0\n").unwrap();
        let out = check_offline(&cfg, &[]).await;
        assert_eq!(out.code, Some(0), "{key}:\n{}{}", out.stdout, out.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let text = config_text(dir.path(), "", "").replace(
        &dir.path().join("state.db").display().to_string(),
        &state_dir.display().to_string(),
    );
    let e = refused(&write(dir.path(), "d.toml", &text), &[], "spool.path", &[]).await;
    assert!(e.contains("is a directory"), "{e}");
    // `-c DIR` says what it is, not "not found".
    for cmd in [&["check", "--offline"][..], &["run"][..], &["status"][..]] {
        let mut args = cmd.to_vec();
        args.extend(["-c", dir.path().to_str().unwrap()]);
        let out = run(&args, &[], LIMIT).await;
        assert_eq!(out.code, Some(2), "{cmd:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("is a directory"),
            "{cmd:?}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("not found"), "{cmd:?}: {}", out.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_types_in_the_file_are_refused_and_environment_strings_still_parse() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "requests_per_minute = \"60\"",
            "api.requests_per_minute",
            "must be an integer",
        ),
        (
            "requests_per_minute = 1.5",
            "api.requests_per_minute",
            "must be an integer",
        ),
        ("burst = true", "api.burst", "must be an integer"),
        ("sites_all = 1", "sites_all", "unknown field"),
    ];
    for (line, key, reason) in cases {
        let cfg = write(dir.path(), "t.toml", &config_text(dir.path(), line, ""));
        let e = refused(&cfg, &[], key, &[]).await;
        assert!(e.contains(reason), "{line}: {e}");
    }
    // A number where a secret belongs: refused, and the number never shown.
    let text = config_text(dir.path(), "", "").replace(
        &format!(
            "token_file = \"{}\"",
            dir.path().join("api-token").display()
        ),
        "token = 918273645",
    );
    let e = refused(
        &write(dir.path(), "n.toml", &text),
        &[],
        "api.token",
        &["918273645"],
    )
    .await;
    assert!(e.contains("must be a string"), "{e}");
    let hec = "[[sinks]]\ntype = \"splunk_hec\"\nurl = \"https://splunk:8088\"\ntoken = 918273645";
    let cfg = write(dir.path(), "h.toml", &config_text(dir.path(), "", hec));
    refused(&cfg, &[], "sinks[1].token", &["918273645"]).await;
    // Environment overrides are text, and still converted.
    let cfg = write(dir.path(), "ok.toml", &config_text(dir.path(), "", ""));
    let out = check_offline(&cfg, &[("SIGSCI_EXPORT__API__REQUESTS_PER_MINUTE", "60")]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // ... and applied: a value out of range there is refused.
    refused(
        &cfg,
        &[("SIGSCI_EXPORT__API__REQUESTS_PER_MINUTE", "0")],
        "api.requests_per_minute",
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misspelt_environment_variables_are_warned_about_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let hec = "[[sinks]]\ntype = \"splunk_hec\"\nname = \"splunk\"\nurl = \"https://splunk:8088\"";
    let cfg = write(dir.path(), "e.toml", &config_text(dir.path(), "", hec));
    let misspelt = [
        "SIGSCI_EXPORT_API_CORP",
        "sigsci_export_sink_splunk_token",
        "SIGSCI_EXPORT_SINK_SPLUNKK_TOKEN",
        "SIGSCI_EXPORTT__API__CORP",
    ];
    let mut env: Vec<(&str, &str)> = misspelt.iter().map(|v| (*v, "VALUE-NOT-SHOWN")).collect();
    env.extend([
        ("SIGSCI_EXPORT_CONFIG", cfg.to_str().unwrap()),
        ("SIGSCI_EXPORT__API__CORP", "demo"),
        ("SIGSCI_EXPORT_SINK_SPLUNK_TOKEN", "hec-token"),
        ("SIGSCI_EXPORT_SERVICE_HOST", "10.0.0.1"),
    ]);
    // The config file comes from SIGSCI_EXPORT_CONFIG here.
    let out = run(&["check", "--offline"], &env, LIMIT).await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    for var in misspelt {
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains(&format!("`{var}`")))
            .unwrap_or_else(|| panic!("{var} not warned about:\n{}", out.stdout));
        assert!(line.starts_with("WARN environment"), "{line}");
    }
    assert!(
        out.stdout
            .contains("did you mean SIGSCI_EXPORT__API__CORP?"),
        "{}",
        out.stdout
    );
    for read in [
        "SIGSCI_EXPORT_CONFIG`",
        "SIGSCI_EXPORT__API__CORP`",
        "SIGSCI_EXPORT_SINK_SPLUNK_TOKEN`",
        "SERVICE_HOST",
    ] {
        assert!(
            !out.stdout.contains(read),
            "{read} warned about:\n{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("VALUE-NOT-SHOWN") && !out.stderr.contains("VALUE-NOT-SHOWN"));

    // `run` warns too, before the error a misspelling caused (the corp set where nothing reads it).
    let no_corp = config_text(dir.path(), "", "").replace("corp = \"demo\"\n", "");
    let cfg = write(dir.path(), "nc.toml", &no_corp);
    let out = run(
        &["run", "-c", cfg.to_str().unwrap()],
        &[("SIGSCI_EXPORT_API_CORP", "VALUE-NOT-SHOWN")],
        LIMIT,
    )
    .await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    let warn = out
        .stderr
        .find("`SIGSCI_EXPORT_API_CORP`")
        .expect(&out.stderr);
    let error = out.stderr.find("api.corp").expect(&out.stderr);
    assert!(warn < error, "{}", out.stderr);
    assert!(!out.stderr.contains("VALUE-NOT-SHOWN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_es_sink_takes_the_one_credential_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let key = write(dir.path(), "es-key", "a2V5LWlkOmtleQ==\n");
    let es = format!(
        "[[sinks]]\ntype = \"elasticsearch\"\nurl = \"https://es.example.com:9200\"\napi_key_file = \"{}\"",
        key.display()
    );
    let cfg = write(dir.path(), "k.toml", &config_text(dir.path(), "", &es));
    let out = check_offline(&cfg, &[]).await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    // With two kinds and no `auth`, the operator chooses.
    let both = format!("{es}\nusername = \"u\"\npassword = \"pw-HIDDEN\"");
    let cfg = write(dir.path(), "b.toml", &config_text(dir.path(), "", &both));
    let e = refused(&cfg, &[], "sinks[1].auth", &["pw-HIDDEN"]).await;
    assert!(
        e.contains("auth = \\\"basic\\\"") || e.contains("auth = \"basic\""),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_endpoint_beyond_loopback_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let open = config_text(dir.path(), "", "").replace("127.0.0.1:0", "0.0.0.0:0");
    let cfg = write(dir.path(), "a.toml", &open);
    let out = check_offline(&cfg, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout
            .contains("WARN admin: admin.listen = 0.0.0.0:0 is not a loopback address"),
        "{}",
        out.stdout
    );
    let local = write(dir.path(), "l.toml", &config_text(dir.path(), "", ""));
    let out = check_offline(&local, &[]).await;
    assert!(!out.stdout.contains("WARN admin"), "{}", out.stdout);

    // `run` says it at start-up.
    let sim = start_sim(SimConfig::default()).await;
    let cfg = write_config(
        dir.path(),
        &sim,
        "demo-token",
        "",
        "[poll]\nstart_at = \"-1h\"",
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("127.0.0.1:0", "0.0.0.0:0");
    std::fs::write(&cfg, text).unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let child = spawn(&["run", "-c", cfg.to_str().unwrap()], lines.clone());
    // Events flowing means start-up is over, and with it the warning.
    let flowing = wait_until(LIMIT, || !lines.lock().unwrap().is_empty()).await;
    let (code, stderr) = child.terminate(LIMIT).await;
    assert!(flowing, "{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("admin.listen = 0.0.0.0:0 is not a loopback address"),
        "{stderr}"
    );
}
