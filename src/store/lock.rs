//! One writing process per namespace of a state file: an advisory lock held as long as the
//! store is open.
//!
//! Two `run` processes on one state file read the same cursors and sink offsets and know
//! nothing of each other: both poll every site and both deliver every event (a test saw
//! 112,844 duplicates out of 136,416 events in 40 s). So `run` and `backfill` lock their
//! namespace before they open the store, and a second process of the same namespace exits
//! with an error naming the holder's PID.
//!
//! * **One lock file per namespace**, beside the state file: `state.db.run.lock`,
//!   `state.db.backfill-<from>-<until>.lock`. Namespaces have their own cursors and offsets,
//!   so a backfill may run beside the service on the same file (SQLite takes their writes one
//!   at a time); only the same namespace twice is refused.
//! * **`flock(2)`** (through `fs4`; std's `File::try_lock` needs Rust 1.89): the kernel drops
//!   it when the process dies, `kill -9` included, so a restart is never refused because of a
//!   stale file. The file's content only names the holder in the message; it decides nothing.
//! * **Removed on a clean exit**, while still locked. A process that locked a file just
//!   removed by its previous holder sees that the path no longer names its file and tries
//!   again, so two processes can never each hold a lock on a different file of one path.
//! * The path is resolved first (symlinks, `./`), so every spelling of one state file shares
//!   its locks.
//!
//! `status` and `dead-letters list` take no lock (they only read, through SQLite's WAL
//! snapshots), nor does `dead-letters replay`: it is one SQLite transaction that appends rows
//! after every seq the service has read, which is how the running service is meant to pick
//! them up.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use fs4::{FileExt, TryLockError};

use super::{Store, StoreError};

/// Why a namespace's lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "{} is already running {} on the state file {} (lock {}); stop it first, or give \
         this one a state file of its own (`spool.path`)",
        holder.map_or_else(|| "another sigsci-export process".to_string(), |p| format!("sigsci-export process {p}")),
        describe(ns),
        state.display(),
        lock_file.display()
    )]
    Held {
        /// The state file.
        state: PathBuf,
        /// The namespace (`run`, `backfill:<from>-<until>`).
        ns: String,
        /// The holder's PID, as it wrote it in the lock file (`None` before it has).
        holder: Option<u32>,
        /// The lock file.
        lock_file: PathBuf,
    },
    /// The lock file (or its directory) cannot be created, opened or written.
    #[error(
        "cannot use the lock file {path} beside the state file: {source}; the state file's \
         directory must be writable"
    )]
    File {
        /// The lock file, or the directory it goes in.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
}

/// The namespace in words, for the message.
fn describe(ns: &str) -> String {
    match ns.strip_prefix("backfill:") {
        Some(_) => format!("a backfill of the same range (`{ns}`)"),
        None => format!("`{ns}`"),
    }
}

impl Store {
    /// [`Store::open`] for the one process that writes namespace `ns`: refuses a file that is
    /// not a sigsci-export state file (before writing anything, the lock file included), then
    /// takes the namespace's lock ([`LockError::Held`] when another process has it), then
    /// opens and migrates. The lock is held until the last clone of the store is dropped,
    /// after its connections are closed, or until the process dies.
    pub fn open_exclusive(path: &Path, ns: &str) -> Result<Store, StoreError> {
        super::schema::refuse_foreign_file(path)?;
        let lock = NamespaceLock::acquire(path, ns)?;
        let mut store = Store::open(path)?;
        if let Some(shared) = std::sync::Arc::get_mut(&mut store.shared) {
            shared.lock = Some(lock);
        }
        Ok(store)
    }
}

/// How often [`NamespaceLock::acquire`] starts over when the file it locked was removed by
/// the previous holder in between: once is the usual most, a second time needs a third
/// process racing for the same lock.
const ATTEMPTS: usize = 8;

/// The lock of one namespace of one state file; released (and its file removed) on drop, and
/// by the kernel when the process dies.
#[derive(Debug)]
pub(super) struct NamespaceLock {
    path: PathBuf,
    /// Holds the lock (never read: closing it releases the lock), closed after `drop` has
    /// removed the file.
    _file: File,
}

impl NamespaceLock {
    /// Takes the lock of namespace `ns` of the state file `state` (creating the file's
    /// directory), without waiting: [`LockError::Held`] when another process holds it.
    pub(super) fn acquire(state: &Path, ns: &str) -> Result<NamespaceLock, LockError> {
        let path = lock_path(state, ns)?;
        let io = |source| LockError::File {
            path: path.clone(),
            source,
        };
        for _ in 0..ATTEMPTS {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            // The trait's method by its path: std's inherent `File::try_lock` (Rust 1.89)
            // would otherwise be picked, above the crate's rust-version.
            match FileExt::try_lock(&file) {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(LockError::Held {
                        state: state.to_path_buf(),
                        ns: ns.to_string(),
                        holder: holder_pid(&path),
                        lock_file: path,
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
            if !still_named(&file, &path) {
                continue;
            }
            // For the message a second process prints; truncated first, as the previous
            // holder (killed) may have left a longer PID.
            file.set_len(0).map_err(io)?;
            (&file)
                .write_all(format!("{}\n", std::process::id()).as_bytes())
                .map_err(io)?;
            return Ok(NamespaceLock { path, _file: file });
        }
        Err(io(std::io::Error::other(
            "the lock file kept being removed while it was being locked",
        )))
    }

    /// The lock file.
    #[cfg(test)]
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for NamespaceLock {
    fn drop(&mut self) {
        // Locked still: whoever opens the path from now on gets a new file, and whoever
        // opened this one before sees it is gone once it gets the lock.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `<state>.<ns>.lock` beside the resolved state file; `:` and any other character that is
/// not a letter, digit, `-` or `_` become `-` (`backfill:1-2` → `backfill-1-2`).
fn lock_path(state: &Path, ns: &str) -> Result<PathBuf, LockError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LockError::File { path, source }
    };
    let dir = state
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let resolved = match std::fs::canonicalize(state) {
        Ok(p) => p,
        // Not created yet: its directory is.
        Err(_) => std::fs::canonicalize(dir)
            .map_err(io(dir))?
            .join(state.file_name().unwrap_or_default()),
    };
    let Some(name) = resolved.file_name() else {
        return Err(io(state)(std::io::Error::other(
            "the state file's path names no file",
        )));
    };
    let mut name = name.to_os_string();
    name.push(".");
    name.push(
        ns.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect::<String>(),
    );
    name.push(".lock");
    Ok(resolved.with_file_name(name))
}

/// The PID the holder wrote, if it has yet (it writes right after locking).
fn holder_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `path` still names the file `file` was opened as.
#[cfg(unix)]
fn still_named(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Elsewhere an open file cannot be removed, so the path always names it.
#[cfg(not(unix))]
fn still_named(_file: &File, _path: &Path) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_namespace_and_the_pid_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        let run = NamespaceLock::acquire(&state, "run").unwrap();
        assert_eq!(
            run.path(),
            dir.path().join("state.db.run.lock").canonicalize().unwrap()
        );
        // flock locks belong to the open file, so a second open in this process conflicts
        // just as another process's would.
        match NamespaceLock::acquire(&state, "run") {
            Err(LockError::Held { holder, ns, .. }) => {
                assert_eq!(holder, Some(std::process::id()));
                assert_eq!(ns, "run");
            }
            other => panic!("{other:?}"),
        }
        // Another namespace of the same file is free.
        let backfill = NamespaceLock::acquire(&state, "backfill:60-120").unwrap();
        assert!(backfill.path().ends_with("state.db.backfill-60-120.lock"));
        // Released and removed on drop; the next holder gets it.
        drop(run);
        assert!(!dir.path().join("state.db.run.lock").exists());
        let again = NamespaceLock::acquire(&state, "run").unwrap();
        drop((again, backfill));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn every_spelling_of_the_path_shares_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("sub").join("state.db");
        let _held = NamespaceLock::acquire(&state, "run").unwrap();
        assert!(dir.path().join("sub").is_dir(), "the directory is created");
        let dotted = dir.path().join("sub").join(".").join("state.db");
        assert!(matches!(
            NamespaceLock::acquire(&dotted, "run"),
            Err(LockError::Held { .. })
        ));
        std::fs::write(&state, b"").unwrap();
        let link = dir.path().join("link.db");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&state, &link).unwrap();
            assert!(matches!(
                NamespaceLock::acquire(&link, "run"),
                Err(LockError::Held { .. })
            ));
        }
    }

    #[test]
    fn a_file_removed_by_the_previous_holder_is_not_a_lock() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        let path = lock_path(&state, "run").unwrap();
        // A process that opened the file just before its holder removed it on exit locks a
        // file no path names any more: it must notice and lock the path's new file instead.
        let orphan = File::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        FileExt::try_lock(&orphan).unwrap();
        assert!(!still_named(&orphan, &path));
        let held = NamespaceLock::acquire(&state, "run").unwrap();
        assert!(still_named(&held._file, &path));
    }
}
