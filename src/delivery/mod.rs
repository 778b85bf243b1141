//! Deliveries: Parquet files written into a staging folder and renamed into place only when complete,
//! with a `manifest.json` of checksums and schemas, and `inspect`, which verifies one.
//!
//! A consumer never sees a partial delivery: a run that fails, or is killed, leaves at most a hidden
//! staging folder (`.<name>.staging`), removed by the next run.

pub mod row_group;

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use polars::io::parquet::write::BatchedWriter;
use polars::prelude::{
    DataFrame, KeyValueMetadata, ParquetCompression, ParquetWriter, Schema, StatisticsOptions,
};
use polars_parquet::write::{ParquetType, WriteOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::kernels::hex;

pub const MANIFEST: &str = "manifest.json";
/// The run report, for machines (`report.json`) and people (`report.html`).
pub const REPORT_JSON: &str = "report.json";
pub const REPORT_HTML: &str = "report.html";
/// A linked delivery's linkage report (masked) and its summary in words.
pub const LINKAGE_REPORT: &str = "linkage.json";
pub const LINKAGE_SUMMARY: &str = "linkage.txt";
/// Every file a delivery holds besides its datasets' Parquet files.
const COMPANION_FILES: [&str; 5] = [
    MANIFEST,
    REPORT_JSON,
    REPORT_HTML,
    LINKAGE_REPORT,
    LINKAGE_SUMMARY,
];
pub const MANIFEST_FORMAT: &str = "ehds-prep delivery manifest v1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub engine_version: String,
    pub permit: PermitRecord,
    pub pseudonyms: PseudonymRecord,
    pub domains: Vec<DomainRecord>,
    pub datasets: Vec<DatasetRecord>,
    /// Every file the run read (sources, opt-out list, hierarchies, dictionaries): size,
    /// modification time and SHA-256 of the bytes read.
    #[serde(default)]
    pub inputs: Vec<crate::source::inputs::InputRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PermitRecord {
    pub id: String,
    pub purpose: String,
    pub holder: String,
    pub recipient: String,
    /// SHA-256 of the permit file.
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PseudonymRecord {
    pub version: String,
    pub encoding: String,
    pub bits: u16,
    /// How identifiers were normalised before they were pseudonymised
    /// ([`crate::kernels::identifier::CANONICAL_FORM`]); deliveries made before it was recorded are `v1`.
    #[serde(default = "first_canonical_form")]
    pub canonical_form: String,
}

fn first_canonical_form() -> String {
    "v1".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DomainRecord {
    pub name: String,
    pub context: String,
    pub key_fingerprint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatasetRecord {
    pub name: String,
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    pub rows: u64,
    pub schema: Vec<FieldRecord>,
    /// The privacy models the dataset was anonymised under, and the levels chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacyRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PrivacyRecord {
    /// The models in words.
    pub models: String,
    pub k: Option<u32>,
    pub l: Option<f64>,
    pub l_diversity: Option<String>,
    pub t: Option<f64>,
    pub t_closeness: Option<String>,
    pub sensitive: Option<String>,
    /// The column whose distinct values count as persons (rows are counted without one).
    pub persons_counted_by: Option<String>,
    pub suppression_limit: f64,
    pub rows_suppressed: u64,
    pub suppressed_rows_are: String,
    pub metric: String,
    pub levels: Vec<LevelRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LevelRecord {
    pub column: String,
    pub level: u8,
    pub meaning: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FieldRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub dtype: String,
    /// What was done to produce this column.
    pub transformation: String,
}

/// Footer keys every delivered Parquet file carries.
pub mod footer {
    pub const PERMIT_ID: &str = "ehds.permit_id";
    pub const PERMIT_SHA256: &str = "ehds.permit_sha256";
    pub const ENGINE_VERSION: &str = "ehds.engine_version";
    pub const PSEUDONYM_VERSION: &str = "ehds.pseudonym_version";
    pub const DOMAINS: &str = "ehds.domains";
    pub const DATASET: &str = "ehds.dataset";
}

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
            let manifest = read_manifest(final_dir).map_err(|_| {
                Error::output(final_dir, "exists and is not an ehds-prep delivery; move it away or choose another output")
            })?;
            if manifest.permit.id != permit_id {
                return Err(Error::output(
                    final_dir,
                    format!(
                        "holds a delivery of another permit ({}); choose another output",
                        manifest.permit.id
                    ),
                ));
            }
            if manifest.permit.holder != holder {
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

/// zstd level of deliveries. Measured on the 10M-row comparison extract (`scripts/compare.sh`):
/// level 2 writes files about 2 % smaller than the default 3 for a fifth less compression time.
const DELIVERY_ZSTD_LEVEL: i32 = 2;

/// A Parquet file being written batch by batch (one row group per batch), zstd-compressed.
pub struct DatasetWriter {
    writer: BatchedWriter<HashingFile>,
    /// The Parquet columns and options the row groups are encoded with (`row_group::encode`).
    fields: Vec<ParquetType>,
    options: WriteOptions,
    checksum: Option<Arc<Mutex<Checksum>>>,
    schema: Schema,
    pub path: PathBuf,
    pub rows: u64,
}

/// A finished file: where, how many rows, and for a delivery its checksum.
pub struct WrittenFile {
    pub path: PathBuf,
    pub rows: u64,
    /// SHA-256 (hex) and size of the bytes written; `None` for a spill.
    pub checksum: Option<(String, u64)>,
}

/// SHA-256 of the bytes written so far, and their count.
#[derive(Default)]
struct Checksum {
    hasher: Sha256,
    bytes: u64,
}

/// The file under a writer, hashing each byte on its way to disk: the manifest's checksum without
/// reading the file again. (The Parquet writer only appends, so these are the file's bytes.)
struct HashingFile {
    file: File,
    checksum: Option<Arc<Mutex<Checksum>>>,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        if let Some(checksum) = &self.checksum {
            let mut c = checksum.lock().expect("checksum lock");
            c.hasher.update(&buf[..n]);
            c.bytes += n as u64;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl DatasetWriter {
    pub fn create(
        path: PathBuf,
        schema: &Schema,
        footer: Vec<(String, String)>,
    ) -> Result<DatasetWriter> {
        let level = polars_utils::compression::ZstdLevel::try_new(DELIVERY_ZSTD_LEVEL);
        let compression = ParquetCompression::Zstd(Some(level.expect("a zstd level")));
        Self::open(
            path,
            schema,
            true,
            compression,
            StatisticsOptions::default(),
            Some(KeyValueMetadata::from_static(footer)),
        )
    }

    /// An intermediate file of the run (pass 1's transformed batches): uncompressed, no footer, no
    /// checksum.
    pub fn spill(path: PathBuf, schema: &Schema) -> Result<DatasetWriter> {
        let (compression, statistics) =
            (ParquetCompression::Uncompressed, StatisticsOptions::empty());
        Self::open(path, schema, false, compression, statistics, None)
    }

    fn open(
        path: PathBuf,
        schema: &Schema,
        hashed: bool,
        compression: ParquetCompression,
        statistics: StatisticsOptions,
        footer: Option<KeyValueMetadata>,
    ) -> Result<DatasetWriter> {
        let file = File::create(&path).map_err(|e| Error::output(&path, e))?;
        let checksum = hashed.then(Arc::default);
        let file = HashingFile {
            file,
            checksum: checksum.clone(),
        };
        let mut writer = ParquetWriter::new(file)
            .with_compression(compression)
            .with_statistics(statistics)
            .with_key_value_metadata(footer)
            .batched(schema)
            .map_err(|e| Error::output(&path, e))?;
        Ok(DatasetWriter {
            fields: writer.parquet_schema().fields().to_vec(),
            options: crate::delivery::row_group::write_options(compression, statistics),
            writer,
            checksum,
            schema: schema.clone(),
            path,
            rows: 0,
        })
    }

    /// Writes one batch as one row group.
    pub fn write(&mut self, mut df: DataFrame) -> Result<()> {
        if df.height() == 0 {
            return Ok(());
        }
        // A batch that differs from the declared schema would be written with wrong statistics.
        if df.schema().as_ref() != &self.schema {
            return Err(Error::Internal(format!(
                "{}: a batch's schema {:?} differs from the delivery's {:?}",
                self.path.display(),
                df.schema(),
                self.schema
            )));
        }
        // The encoder needs every column in one aligned chunk.
        df.rechunk_mut_par();
        let pages = crate::delivery::row_group::encode(&df, &self.fields, self.options)
            .map_err(|e| Error::output(&self.path, e))?;
        self.writer
            .write_row_group(df.height() as u64, &pages)
            .map_err(|e| Error::output(&self.path, e))?;
        self.rows += df.height() as u64;
        Ok(())
    }

    pub fn finish(self) -> Result<WrittenFile> {
        self.writer
            .finish()
            .map_err(|e| Error::output(&self.path, e))?;
        // The writer (and with it the file) is closed here, so the checksum is complete.
        drop(self.writer);
        let checksum = self.checksum.map(|c| {
            let c = Arc::into_inner(c)
                .expect("the writer is dropped")
                .into_inner()
                .expect("checksum lock");
            (hex::encode(&c.hasher.finalize()), c.bytes)
        });
        Ok(WrittenFile {
            path: self.path,
            rows: self.rows,
            checksum,
        })
    }
}

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

/// SHA-256 and size of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((hex::encode(&hasher.finalize()), bytes))
}

pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::verify(&path, format!("cannot read manifest: {e}")))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| Error::verify(&path, format!("not a valid manifest: {e}")))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(Error::verify(
            &path,
            format!("unknown manifest format `{}`", manifest.format),
        ));
    }
    Ok(manifest)
}

/// Checks every file of a delivery against its manifest: checksum, size, row count and footer
/// metadata. A manifest that names a file outside the folder, and any file or folder in the
/// delivery that is neither a listed dataset nor one of its reports, are errors too: what the
/// recipient receives is exactly what the manifest accounts for.
pub fn verify(dir: &Path) -> Result<Manifest> {
    let manifest = read_manifest(dir)?;
    let domains_json = serde_json::to_string(&manifest.domains).expect("serialisable");
    for d in &manifest.datasets {
        let plain = {
            let mut parts = Path::new(&d.file).components();
            matches!(parts.next(), Some(std::path::Component::Normal(_))) && parts.next().is_none()
        };
        if !plain || d.file.starts_with('.') || COMPANION_FILES.contains(&d.file.as_str()) {
            return Err(Error::verify(
                dir.join(MANIFEST),
                format!(
                    "dataset `{}` names a file outside the delivery or not a data file",
                    d.name
                ),
            ));
        }
        let path = dir.join(&d.file);
        let fail = |m: String| Error::verify(&path, m);
        let (sha, bytes) = sha256_file(&path).map_err(|e| fail(format!("cannot read: {e}")))?;
        if bytes != d.bytes {
            return Err(fail(format!(
                "size is {bytes} bytes; the manifest says {}",
                d.bytes
            )));
        }
        if sha != d.sha256 {
            return Err(fail(
                "SHA-256 differs from the manifest: the file was altered or damaged".into(),
            ));
        }
        let footer = read_footer(&path)?;
        if footer.rows != d.rows {
            return Err(fail(format!(
                "footer says {} rows; the manifest says {}",
                footer.rows, d.rows
            )));
        }
        let expected = [
            (footer::PERMIT_ID, manifest.permit.id.as_str()),
            (footer::PERMIT_SHA256, &manifest.permit.sha256),
            (footer::ENGINE_VERSION, &manifest.engine_version),
            (footer::PSEUDONYM_VERSION, &manifest.pseudonyms.version),
            (footer::DOMAINS, &domains_json),
            (footer::DATASET, &d.name),
        ];
        for (key, want) in expected {
            let got = footer
                .metadata
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str());
            if got != Some(want) {
                return Err(fail(format!(
                    "footer key `{key}` does not match the manifest"
                )));
            }
        }
    }
    for entry in std::fs::read_dir(dir).map_err(|e| Error::verify(dir, e.to_string()))? {
        let name = entry
            .map_err(|e| Error::verify(dir, e.to_string()))?
            .file_name()
            .to_string_lossy()
            .to_string();
        let listed = manifest.datasets.iter().any(|d| d.file == name)
            || COMPANION_FILES.contains(&name.as_str());
        if !listed {
            return Err(Error::verify(
                dir.join(&name),
                "is in the delivery but not in its manifest: a delivery holds its datasets and \
                 reports only",
            ));
        }
    }
    Ok(manifest)
}

pub struct Footer {
    pub rows: u64,
    pub metadata: Vec<(String, String)>,
}

/// Reads a Parquet footer with arrow-rs's reader, independent of the polars writer that produced it.
pub fn read_footer(path: &Path) -> Result<Footer> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = File::open(path).map_err(|e| Error::verify(path, format!("cannot open: {e}")))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| Error::verify(path, format!("unreadable Parquet footer: {e}")))?;
    let meta = reader.metadata().file_metadata();
    let metadata = meta
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Footer {
        rows: meta.num_rows() as u64,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
            datasets: Vec::new(),
            inputs: Vec::new(),
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
