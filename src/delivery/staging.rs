//! Staging and commit: a delivery is written into a hidden staging folder beside its output and
//! swapped into place only when complete; a lock keeps a second run off the same output.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The folder inside the staging folder where `link` writes what it reads back itself (the person
/// table, the CLK sources' tables under linkage pseudonyms), removed before the commit.
pub const LINKAGE_WORK_DIR: &str = ".linkage-work";

/// The staging folder of a delivery in progress; removed on drop unless committed.
pub struct Staging {
    final_dir: PathBuf,
    dir: PathBuf,
    committed: bool,
    /// Two descriptors kept in reserve and closed before a failed run removes its staging folder:
    /// a run that failed for want of file descriptors can still remove what it staged.
    reserve: Vec<File>,
    /// Held for the whole run: a second run on the same output is refused. The operating system
    /// releases it when the process ends, killed or not, so no stale lock survives a crash.
    _lock: File,
}

/// The hidden places beside an output folder `<parent>/<name>` that a run uses: the staging
/// folder, the lock file and the folder a replaced delivery passes through.
pub struct OutputPlaces {
    pub staging: PathBuf,
    pub lock: PathBuf,
    pub previous: PathBuf,
}

impl OutputPlaces {
    pub fn of(final_dir: &Path) -> Result<OutputPlaces> {
        let name = final_dir
            .file_name()
            .ok_or_else(|| Error::output(final_dir, "the output path must name a folder"))?
            .to_string_lossy()
            .to_string();
        let parent = parent_of(final_dir);
        Ok(OutputPlaces {
            staging: parent.join(format!(".{name}.staging")),
            lock: parent.join(format!(".{name}.lock")),
            previous: parent.join(format!(".{name}.old")),
        })
    }
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The file-system calls of a commit, behind a trait so that tests can make each of them fail
/// ([`Staging::commit_with`]).
pub trait CommitOps {
    fn sync_file(&self, path: &Path) -> std::io::Result<()>;
    fn sync_dir(&self, path: &Path) -> std::io::Result<()>;
    /// Swaps two paths atomically (`renameat2(RENAME_EXCHANGE)`); `Unsupported` where the
    /// file system cannot.
    fn exchange(&self, a: &Path, b: &Path) -> std::io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()>;
}

/// The real calls.
pub struct FileSystem;

impl CommitOps for FileSystem {
    fn sync_file(&self, path: &Path) -> std::io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn exchange(&self, a: &Path, b: &Path) -> std::io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| {
            std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other)
        };
        let (a, b) = (c(a)?, c(b)?);
        // SAFETY: both paths are NUL-terminated strings that live across the call.
        let status = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if status == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
                Err(std::io::Error::new(std::io::ErrorKind::Unsupported, e))
            }
            _ => Err(e),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_dir_all(path)
    }
}

impl Staging {
    /// Prepares `<parent>/.<name>.staging` for `final_dir`. An existing `final_dir` must be an
    /// earlier delivery of the same permit and holder (it is replaced on commit); anything else
    /// there is left alone. A previous delivery that a failed commit left in `.<name>.old` is
    /// put back first.
    pub fn create(final_dir: &Path, permit_id: &str, holder: &str) -> Result<Staging> {
        let places = OutputPlaces::of(final_dir)?;
        let parent = parent_of(final_dir);
        std::fs::create_dir_all(parent).map_err(|e| Error::output(parent, e))?;
        let lock = open_lock(&places.lock)?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => Error::output(
                final_dir,
                format!(
                    "another run is writing this output (it holds {}); wait for it to end",
                    places.lock.display()
                ),
            ),
            std::fs::TryLockError::Error(e) => Error::output(&places.lock, e),
        })?;
        if places.previous.exists() {
            if final_dir.symlink_metadata().is_err() {
                // A commit failed between its two renames and could not put the delivery back.
                std::fs::rename(&places.previous, final_dir).map_err(|e| {
                    Error::output(
                        final_dir,
                        format!(
                            "the previous delivery is in {} and cannot be put back: {e}; move it \
                             to the output path by hand",
                            places.previous.display()
                        ),
                    )
                })?;
                tracing::warn!(output = %final_dir.display(), "the previous delivery, left aside by a failed commit, was put back");
            } else {
                // Superseded by the delivery at the output path.
                std::fs::remove_dir_all(&places.previous)
                    .map_err(|e| Error::output(&places.previous, e))?;
            }
        }
        if final_dir.exists() {
            let (delivered, by) = super::manifest::delivered_permit(final_dir).ok_or_else(|| {
                Error::output(final_dir, "exists and is not an ehds-prep delivery; move it away or choose another output")
            })?;
            if delivered != permit_id {
                return Err(Error::output(
                    final_dir,
                    format!(
                        "holds a delivery of another permit ({delivered}); choose another output"
                    ),
                ));
            }
            if by != holder {
                return Err(Error::output(
                    final_dir,
                    "holds a delivery of this permit by another holder; each holder delivers \
                     to an output of its own",
                ));
            }
        }
        let dir = places.staging;
        if dir.symlink_metadata().is_ok() {
            // Left by a run that was killed (or the previous delivery a commit swapped out and
            // could not remove): nothing in it is a delivery any more.
            std::fs::remove_dir_all(&dir).map_err(|e| Error::output(&dir, e))?;
        }
        std::fs::create_dir(&dir).map_err(|e| Error::output(&dir, e))?;
        let mut staging = Staging {
            final_dir: final_dir.into(),
            dir,
            committed: false,
            reserve: Vec::new(),
            _lock: lock,
        };
        // On failure the staging folder is removed as the value drops.
        for _ in 0..2 {
            let spare = File::open(&staging.dir).map_err(|e| Error::output(&staging.dir, e))?;
            staging.reserve.push(spare);
        }
        Ok(staging)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Makes the staged files durable and moves them into place. Returns warnings about steps after
    /// the new delivery is in place (they do not undo it); an error means the new delivery is not in
    /// place and the previous one (if any) is whole at the output path, or is put back there by the
    /// next run.
    pub fn commit(self) -> Result<Vec<String>> {
        self.commit_with(&FileSystem)
    }

    pub fn commit_with(mut self, fs: &dyn CommitOps) -> Result<Vec<String>> {
        let output = |e: std::io::Error| Error::output(&self.final_dir, e);
        for entry in std::fs::read_dir(&self.dir).map_err(|e| Error::output(&self.dir, e))? {
            let path = entry.map_err(|e| Error::output(&self.dir, e))?.path();
            if path.is_file() {
                fs.sync_file(&path).map_err(|e| Error::output(&path, e))?;
            }
        }
        fs.sync_dir(&self.dir)
            .map_err(|e| Error::output(&self.dir, e))?;
        let parent = parent_of(&self.final_dir).to_path_buf();
        let mut warnings = Vec::new();
        let mut note = |what: &str, path: &Path, e: std::io::Error| {
            warnings.push(format!(
                "the delivery is committed, but {what} {}: {e}",
                path.display()
            ));
        };
        if self.final_dir.symlink_metadata().is_err() {
            fs.rename(&self.dir, &self.final_dir).map_err(output)?;
            self.committed = true;
            if let Err(e) = fs.sync_dir(&parent) {
                note("could not flush the folder", &parent, e);
            }
            return Ok(warnings);
        }
        match fs.exchange(&self.dir, &self.final_dir) {
            Ok(()) => {
                // The staging path now holds the previous delivery.
                self.committed = true;
                if let Err(e) = fs.sync_dir(&parent) {
                    note("could not flush the folder", &parent, e);
                }
                if let Err(e) = fs.remove_dir_all(&self.dir) {
                    note(
                        "the previous delivery (the next run removes it) is still in",
                        &self.dir,
                        e,
                    );
                }
                return Ok(warnings);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {}
            Err(e) => return Err(output(e)),
        }
        // Without an atomic exchange: the previous delivery steps aside, and comes back if the
        // new one cannot take its place.
        let previous = OutputPlaces::of(&self.final_dir)?.previous;
        fs.rename(&self.final_dir, &previous).map_err(output)?;
        if let Err(e) = fs.rename(&self.dir, &self.final_dir) {
            return Err(match fs.rename(&previous, &self.final_dir) {
                Ok(()) => Error::output(
                    &self.final_dir,
                    format!("{e}; the previous delivery is unchanged"),
                ),
                Err(back) => Error::output(
                    &self.final_dir,
                    format!(
                        "{e}; the previous delivery is in {} ({back}) and the next run puts it back",
                        previous.display()
                    ),
                ),
            });
        }
        self.committed = true;
        if let Err(e) = fs.sync_dir(&parent) {
            note("could not flush the folder", &parent, e);
        }
        if let Err(e) = fs.remove_dir_all(&previous) {
            note(
                "the previous delivery (the next run removes it) is still in",
                &previous,
                e,
            );
        }
        Ok(warnings)
    }
}

/// Opens (creating) the lock file without following a symbolic link and without truncating: a
/// lock path planted as a link to another file must not damage that file.
fn open_lock(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => Error::output(
                path,
                "the lock file is a symbolic link; remove it (a run creates its own)",
            ),
            _ => Error::output(path, e),
        })?;
    let regular = file.metadata().is_ok_and(|m| m.file_type().is_file());
    if !regular {
        return Err(Error::output(
            path,
            "the lock file is not a regular file; remove it",
        ));
    }
    Ok(file)
}

impl Drop for Staging {
    fn drop(&mut self) {
        self.reserve.clear();
        if !self.committed && std::fs::remove_dir_all(&self.dir).is_err() {
            // Removing an empty folder takes no descriptor.
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::manifest::*;
    use std::cell::Cell;

    /// The real calls, but the `fail_at`-th call (counting from 0) fails with EIO, and the exchange
    /// is unsupported when `exchange` is false.
    struct Faulty {
        calls: Cell<usize>,
        fail_at: usize,
        exchange: bool,
    }

    impl Faulty {
        fn call(&self, f: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
            let n = self.calls.get();
            self.calls.set(n + 1);
            if n == self.fail_at {
                return Err(std::io::Error::from_raw_os_error(libc::EIO));
            }
            f()
        }
    }

    impl CommitOps for Faulty {
        fn sync_file(&self, path: &Path) -> std::io::Result<()> {
            self.call(|| FileSystem.sync_file(path))
        }
        fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
            self.call(|| FileSystem.sync_dir(path))
        }
        fn exchange(&self, a: &Path, b: &Path) -> std::io::Result<()> {
            self.call(|| match self.exchange {
                true => FileSystem.exchange(a, b),
                false => Err(std::io::ErrorKind::Unsupported.into()),
            })
        }
        fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            self.call(|| FileSystem.rename(from, to))
        }
        fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
            self.call(|| FileSystem.remove_dir_all(path))
        }
    }

    fn manifest(holder: &str) -> String {
        serde_json::to_string(&Manifest {
            format: MANIFEST_FORMAT.into(),
            engine_version: "test".into(),
            permit: PermitRecord {
                id: "P".into(),
                purpose: String::new(),
                holder: holder.into(),
                recipient: String::new(),
                sha256: String::new(),
            },
            pseudonyms: PseudonymRecord {
                version: "v1".into(),
                encoding: "hex".into(),
                bits: 128,
                canonical_form: crate::kernels::identifier::CANONICAL_FORM.into(),
            },
            domains: Vec::new(),
            date_shift: None,
            persons_suppressed_elsewhere_kept: None,
            datasets: Vec::new(),
            inputs: Vec::new(),
            database: None,
        })
        .unwrap()
    }

    /// A delivery folder's content: its `data` file.
    fn content(dir: &Path) -> Option<String> {
        std::fs::read_to_string(dir.join("data")).ok()
    }

    fn stage(out: &Path, data: &str) -> Staging {
        let staging = Staging::create(out, "P", "h").unwrap();
        std::fs::write(staging.path(MANIFEST), manifest("h")).unwrap();
        std::fs::write(staging.path("data"), data).unwrap();
        staging
    }

    /// Every call of every commit path fails in turn: the output then holds the new delivery
    /// whole and the commit says so (warnings at most), or the commit fails and the previous
    /// delivery is whole at the output (or is put back there by the next run's start).
    #[test]
    fn a_failing_call_at_any_step_of_a_commit_loses_no_delivery() {
        for previous in [false, true] {
            for exchange in [true, false] {
                let mut outcomes = Vec::new();
                for fail_at in 0.. {
                    let tmp = tempfile::tempdir().unwrap();
                    let out = tmp.path().join("out");
                    if previous {
                        stage(&out, "old").commit().unwrap();
                    }
                    let fs = Faulty {
                        calls: Cell::new(0),
                        fail_at,
                        exchange,
                    };
                    let result = stage(&out, "new").commit_with(&fs);
                    let case = format!("previous {previous}, exchange {exchange}, call {fail_at}");
                    let places = OutputPlaces::of(&out).unwrap();
                    assert!(!places.staging.exists() || result.is_ok(), "{case}");
                    match &result {
                        Ok(_) => assert_eq!(content(&out).as_deref(), Some("new"), "{case}"),
                        Err(e) => {
                            assert!(matches!(e, Error::Output { .. }), "{case}: {e}");
                            // The next run's start puts a set-aside delivery back.
                            drop(Staging::create(&out, "P", "h").unwrap());
                            let expected = previous.then_some("old");
                            assert_eq!(content(&out).as_deref(), expected, "{case}: {e}");
                        }
                    }
                    outcomes.push(result.map(|w| w.len()).map_err(|_| ()));
                    if fs.calls.get() <= fail_at {
                        break; // every call succeeded: the last case was a clean commit
                    }
                }
                assert_eq!(outcomes.last(), Some(&Ok(0)));
                assert!(outcomes.iter().any(Result::is_err));
                // Steps after the delivery is in place warn instead of failing.
                if previous {
                    assert!(outcomes.iter().any(|o| o.is_ok_and(|w| w > 0)));
                }
            }
        }
    }

    #[test]
    fn another_holder_s_delivery_of_the_same_permit_is_never_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        stage(&out, "first").commit().unwrap();
        let e = Staging::create(&out, "P", "other holder").err().unwrap();
        assert!(e.to_string().contains("another holder"), "{e}");
        let e = Staging::create(&out, "Q", "h").err().unwrap();
        assert!(e.to_string().contains("another permit"), "{e}");
        assert_eq!(content(&out).as_deref(), Some("first"));
    }

    #[test]
    fn a_planted_lock_link_is_refused_and_its_target_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("precious.txt");
        std::fs::write(&target, "keep me").unwrap();
        std::os::unix::fs::symlink(&target, tmp.path().join(".out.lock")).unwrap();
        let e = Staging::create(&tmp.path().join("out"), "P", "h")
            .err()
            .unwrap();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    }
}
