//! The files the configuration is about: the config file itself (`-c FILE`) and the state file
//! (`spool.path`). A directory, or something else that is not a regular file, in either place
//! is a configuration error (exit 2) with the fix, in `check --offline` as in `run`, rather
//! than "not found" or a runtime failure to open the database.

use std::path::Path;

use super::ConfigError;

/// The text of the config file, or an error that says what is wrong with the path.
pub(super) fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::new(
                "config",
                format!("file `{shown}` not found (pass --config or set SIGSCI_EXPORT_CONFIG)"),
            ));
        }
        Err(e) => {
            return Err(ConfigError::new(
                "config",
                format!("cannot read `{shown}`: {e}"),
            ));
        }
    };
    if meta.is_dir() {
        return Err(ConfigError::new(
            "config",
            format!(
                "`{shown}` is a directory: pass the config file itself, e.g. --config {}",
                path.join("sigsci-export.toml").display()
            ),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::new("config", format!("cannot read `{shown}`: {e}")))?;
    // No excerpt of the bytes: the file may hold secrets.
    String::from_utf8(bytes).map_err(|e| {
        ConfigError::new(
            "config",
            format!(
                "`{shown}` is not UTF-8 text (invalid byte at offset {}): save it as UTF-8",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// `spool.path` must be a file (it need not exist yet: the first `run` creates it).
pub(super) fn check_spool_path(path: &Path) -> Result<(), ConfigError> {
    const KEY: &str = "spool.path";
    if path.as_os_str().is_empty() {
        return Err(ConfigError::new(KEY, "must not be empty"));
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(ConfigError::new(
            KEY,
            format!(
                "`{}` is a directory: give the state file's path, e.g. {}",
                path.display(),
                path.join("state.db").display()
            ),
        )),
        Ok(meta) if !meta.is_file() => Err(ConfigError::new(
            KEY,
            format!(
                "`{}` is not a regular file: give the path of the SQLite state file",
                path.display()
            ),
        )),
        // Missing is fine (created on first run); an unreadable parent is `check`'s state
        // line and `run`'s open error, which name the directory.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_neither_a_config_file_nor_a_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_config_file(dir.path()).unwrap_err();
        assert!(e.reason.contains("is a directory"), "{e}");
        let e = check_spool_path(dir.path()).unwrap_err();
        assert_eq!(e.key, "spool.path");
        assert!(e.reason.contains("is a directory"), "{e}");
        check_spool_path(&dir.path().join("state.db")).unwrap();
        std::fs::write(dir.path().join("state.db"), "").unwrap();
        check_spool_path(&dir.path().join("state.db")).unwrap();
        assert!(check_spool_path(Path::new("/dev/null")).is_err());
        assert!(check_spool_path(Path::new("")).is_err());
    }

    #[test]
    fn missing_and_binary_config_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_config_file(&dir.path().join("nope.toml")).unwrap_err();
        assert!(e.reason.contains("not found"), "{e}");
        let bin = dir.path().join("bin.toml");
        std::fs::write(&bin, b"token = \"s3cr3t\xff\"").unwrap();
        let e = read_config_file(&bin).unwrap_err();
        assert!(
            e.reason.contains("UTF-8") && !e.reason.contains("s3cr3t"),
            "{e}"
        );
    }
}
