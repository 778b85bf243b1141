//! What a run reads, on the record: every input file is read through one open descriptor, hashed
//! as it is read, and described in the manifest by its size, modification time and SHA-256. A
//! source that changes while it is read (appended to, truncated, rewritten) stops the run: its
//! rows would be a mixture of two files.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::kernels::hex;

/// One input file as the run read it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputRecord {
    /// What the file is to the run: `source of stays`, `opt-out list`, `hierarchy of stays.age`…
    pub role: String,
    pub path: String,
    pub bytes: u64,
    /// Modification time (UTC, RFC 3339 with nanoseconds) when the run opened it.
    pub modified: String,
    /// SHA-256 of the bytes the run read.
    pub sha256: String,
}

/// A file's identity and state, from `fstat` of an open descriptor.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stamp {
    device: u64,
    inode: u64,
    bytes: u64,
    modified_ns: i128,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            device: meta.dev(),
            inode: meta.ino(),
            bytes: meta.len(),
            modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }

    fn modified(&self) -> String {
        let seconds = self.modified_ns.div_euclid(1_000_000_000) as i64;
        let nanos = self.modified_ns.rem_euclid(1_000_000_000) as u32;
        chrono::DateTime::from_timestamp(seconds, nanos).map_or_else(
            || "unknown".into(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        )
    }
}

/// An input file open for one sequential read, hashed as it is read; [`TrackedFile::finish`]
/// checks that it did not change meanwhile.
pub struct TrackedFile {
    file: File,
    path: PathBuf,
    start: Stamp,
    hashing: Hashing,
    read: u64,
}

/// Where a tracked file's SHA-256 is computed.
enum Hashing {
    /// On the bytes as they are read.
    Inline(Sha256),
    /// On a thread of its own, reading the same open file at its own offsets, so that hashing a
    /// large source does not lengthen the reading stage; [`TrackedFile::finish`] checks the file
    /// did not change, so both read the same bytes.
    Apart(std::thread::JoinHandle<std::io::Result<(Vec<u8>, u64)>>),
}

impl TrackedFile {
    pub fn open(path: &Path) -> std::io::Result<TrackedFile> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        Ok(TrackedFile {
            start: Stamp::of(&meta),
            file,
            path: path.into(),
            hashing: Hashing::Inline(Sha256::new()),
            read: 0,
        })
    }

    /// [`TrackedFile::open`], the SHA-256 computed apart, on a thread of its own.
    pub fn open_hashed_apart(path: &Path) -> std::io::Result<TrackedFile> {
        use std::os::unix::fs::FileExt;
        let mut tracked = Self::open(path)?;
        let file = tracked.file.try_clone()?;
        let bytes = tracked.start.bytes;
        tracked.hashing = Hashing::Apart(std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut at = 0u64;
            while at < bytes {
                let n = file.read_at(&mut buf, at)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                at += n as u64;
            }
            Ok((hasher.finalize().to_vec(), at))
        }));
        Ok(tracked)
    }

    /// The open file, for readers that read it apart (Parquet decoding): through this descriptor,
    /// never by the path again.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The file's size when it was opened.
    pub fn len(&self) -> u64 {
        self.start.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.start.bytes == 0
    }

    /// Reads (and hashes) the rest of the file without keeping it, for inputs another reader
    /// decodes (Parquet).
    pub fn hash_rest(&mut self) -> std::io::Result<()> {
        std::io::copy(self, &mut std::io::sink()).map(drop)
    }

    /// The record of a file read to its end; an error (naming the file, never its content) if it
    /// changed since it was opened or was not read whole.
    pub fn finish(self, role: &str) -> Result<InputRecord> {
        let changed = |what: String| {
            Error::input(
                &self.path,
                "file",
                format!(
                    "the file changed while it was read ({what}); rerun once the export that \
                     writes it has finished"
                ),
            )
        };
        let now = self.file.metadata().map(|m| Stamp::of(&m));
        let at_path = std::fs::metadata(&self.path).map(|m| Stamp::of(&m));
        match (now, at_path) {
            (Ok(now), _) if now != self.start => {
                return Err(changed(format!(
                    "{} bytes and modified {} when opened, {} bytes and modified {} now",
                    self.start.bytes,
                    self.start.modified(),
                    now.bytes,
                    now.modified()
                )));
            }
            (_, Ok(at_path)) if at_path != self.start => {
                return Err(changed("another file now has its name".into()));
            }
            (Err(e), _) | (_, Err(e)) => return Err(changed(e.to_string())),
            _ => {}
        }
        if self.read != self.start.bytes {
            return Err(changed(format!(
                "{} bytes read of {}",
                self.read, self.start.bytes
            )));
        }
        let sha256 = match self.hashing {
            Hashing::Inline(hasher) => hex::encode(&hasher.finalize()),
            Hashing::Apart(thread) => {
                let (digest, hashed) = thread
                    .join()
                    .map_err(|_| Error::Internal("the hashing thread panicked".into()))?
                    .map_err(|e| changed(e.to_string()))?;
                if hashed != self.read {
                    return Err(changed(format!("{hashed} bytes hashed of {}", self.read)));
                }
                hex::encode(&digest)
            }
        };
        Ok(InputRecord {
            role: role.into(),
            path: self.path.display().to_string(),
            bytes: self.read,
            modified: self.start.modified(),
            sha256,
        })
    }
}

impl Read for TrackedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        if let Hashing::Inline(hasher) = &mut self.hashing {
            hasher.update(&buf[..n]);
        }
        self.read += n as u64;
        Ok(n)
    }
}

/// `path` with symbolic links resolved as far as it exists (the rest appended as written, `.` and
/// `..` folded), so that two spellings of one place compare equal.
pub fn real_path(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in rest.iter().rev() {
                match part {
                    std::path::Component::ParentDir => {
                        out.pop();
                    }
                    std::path::Component::CurDir => {}
                    other => out.push(other),
                }
            }
            return out;
        }
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// Refuses to write `out` where it would replace one of `inputs` (what, path): a report or a
/// description written over the extract it describes destroys it.
pub fn refuse_to_overwrite(out: &Path, inputs: &[(String, PathBuf)]) -> Result<()> {
    let target = real_path(out);
    match inputs.iter().find(|(_, input)| real_path(input) == target) {
        Some((what, _)) => Err(Error::output(
            out,
            format!("is `{what}`, an input of this command: write elsewhere"),
        )),
        None => Ok(()),
    }
}

/// Reads a whole (small) input file once: its bytes and its record.
pub fn read_whole(path: &Path, role: &str) -> Result<(Vec<u8>, InputRecord)> {
    let mut file = TrackedFile::open(path)
        .map_err(|e| Error::input(path, "file", format!("cannot read {role}: {e}")))?;
    let mut bytes = Vec::with_capacity(file.len() as usize);
    file.read_to_end(&mut bytes)
        .map_err(|e| Error::input(path, "file", format!("cannot read {role}: {e}")))?;
    let record = file.finish(role)?;
    Ok((bytes, record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_read_whole_is_recorded_with_its_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("list.txt");
        std::fs::write(&path, b"abc").unwrap();
        let (bytes, record) = read_whole(&path, "opt-out list").unwrap();
        assert_eq!(bytes, b"abc");
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            record.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!((record.bytes, record.role.as_str()), (3, "opt-out list"));
        assert!(record.modified.ends_with('Z'), "{}", record.modified);
    }

    #[test]
    fn a_file_that_changes_while_read_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("source.csv");
        std::fs::write(&path, b"a\n1\n2\n3\n").unwrap();
        // Truncated at a line boundary while being read.
        let mut tracked = TrackedFile::open(&path).unwrap();
        let mut head = [0u8; 4];
        tracked.read_exact(&mut head).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4)
            .unwrap();
        tracked.hash_rest().unwrap();
        let e = tracked.finish("source").err().unwrap().to_string();
        assert!(e.contains("changed while it was read"), "{e}");
        // Appended to.
        let mut tracked = TrackedFile::open(&path).unwrap();
        tracked.hash_rest().unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"5\n").unwrap();
        assert!(tracked.finish("source").is_err());
        // Replaced by another file under its name.
        let mut tracked = TrackedFile::open(&path).unwrap();
        tracked.hash_rest().unwrap();
        let other = tmp.path().join("other.csv");
        std::fs::write(&other, b"a\n1\n").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert!(tracked.finish("source").is_err());
        // Left alone: recorded.
        let mut tracked = TrackedFile::open(&path).unwrap();
        tracked.hash_rest().unwrap();
        assert_eq!(tracked.finish("source").unwrap().bytes, 4);
    }

    /// Hashed apart (on a thread of its own), a file read whole has the same record as hashed
    /// inline; a file truncated while read is refused either way.
    #[test]
    fn hashing_apart_gives_the_same_record() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("big.csv");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let (_, inline) = read_whole(&path, "source").unwrap();
        let mut apart = TrackedFile::open_hashed_apart(&path).unwrap();
        std::io::copy(&mut apart, &mut std::io::sink()).unwrap();
        assert_eq!(apart.finish("source").unwrap(), inline);
        let mut apart = TrackedFile::open_hashed_apart(&path).unwrap();
        let mut head = vec![0u8; 1000];
        apart.read_exact(&mut head).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(1000)
            .unwrap();
        std::io::copy(&mut apart, &mut std::io::sink()).unwrap();
        assert!(apart.finish("source").is_err());
    }
}
