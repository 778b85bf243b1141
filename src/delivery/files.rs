//! Files written whole or not at all, outside a delivery: reports, descriptions, keys and
//! re-identified identifiers.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A temporary file beside `path`, created new with `mode`, holding `bytes` flushed to disk.
fn write_temporary(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let mut temporary = std::ffi::OsString::from(".");
    temporary.push(name);
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    match written {
        Ok(()) => Ok(temporary),
        Err(e) => {
            let _ = std::fs::remove_file(&temporary);
            Err(e)
        }
    }
}

/// Writes `bytes` to `path` whole or not at all: a temporary file beside it, flushed, then renamed
/// over it. A reader never sees a truncated or half-written file, and a failed write leaves the
/// previous file as it was.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = write_temporary(path, bytes, 0o644)?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

/// Creates `path` holding `bytes`, readable by its owner only, refusing to replace anything there:
/// the file appears whole (linked from a flushed temporary file) or not at all, so a full disk
/// leaves no empty file behind.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = write_temporary(path, bytes, 0o600)?;
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    linked
}
