//! Deliveries: Parquet files written into a staging folder and renamed into place only when complete,
//! with a `manifest.json` of checksums and schemas, and `inspect`, which verifies one.
//!
//! A consumer never sees a partial delivery: a run that fails, or is killed, leaves at most a hidden
//! staging folder (`.<name>.staging`), removed by the next run.

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
use crate::hex;

pub const MANIFEST: &str = "manifest.json";
pub const MANIFEST_FORMAT: &str = "ehds-prep delivery manifest v1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub engine_version: String,
    pub permit: PermitRecord,
    pub pseudonyms: PseudonymRecord,
    pub domains: Vec<DomainRecord>,
    pub datasets: Vec<DatasetRecord>,
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
    /// Held for the whole run: a second run on the same output is refused. The operating system
    /// releases it when the process ends, killed or not, so no stale lock survives a crash.
    _lock: File,
}

impl Staging {
    /// Prepares `<parent>/.<name>.staging` for `final_dir`. An existing `final_dir` must be an earlier
    /// delivery of the same permit (it is replaced on commit); anything else there is left alone.
    pub fn create(final_dir: &Path, permit_id: &str) -> Result<Staging> {
        let name = final_dir
            .file_name()
            .ok_or_else(|| Error::output(final_dir, "the output path must name a folder"))?
            .to_string_lossy()
            .to_string();
        let parent = final_dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| Error::output(parent, e))?;
        let lock_path = parent.join(format!(".{name}.lock"));
        let lock = File::create(&lock_path).map_err(|e| Error::output(&lock_path, e))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => Error::output(
                final_dir,
                format!(
                    "another run is writing this output (it holds {}); wait for it to end",
                    lock_path.display()
                ),
            ),
            std::fs::TryLockError::Error(e) => Error::output(&lock_path, e),
        })?;
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
        }
        let dir = parent.join(format!(".{name}.staging"));
        if dir.exists() {
            // Left by a run that was killed: nothing in it was ever visible as a delivery.
            std::fs::remove_dir_all(&dir).map_err(|e| Error::output(&dir, e))?;
        }
        std::fs::create_dir(&dir).map_err(|e| Error::output(&dir, e))?;
        Ok(Staging {
            final_dir: final_dir.into(),
            dir,
            committed: false,
            _lock: lock,
        })
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Makes the staged files durable and moves them into place.
    pub fn commit(mut self) -> Result<()> {
        for entry in std::fs::read_dir(&self.dir).map_err(|e| Error::output(&self.dir, e))? {
            let path = entry.map_err(|e| Error::output(&self.dir, e))?.path();
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::output(&path, e))?;
        }
        let old = self.dir.with_extension("old");
        if self.final_dir.exists() {
            if old.exists() {
                std::fs::remove_dir_all(&old).map_err(|e| Error::output(&old, e))?;
            }
            std::fs::rename(&self.final_dir, &old)
                .map_err(|e| Error::output(&self.final_dir, e))?;
        }
        std::fs::rename(&self.dir, &self.final_dir)
            .map_err(|e| Error::output(&self.final_dir, e))?;
        self.committed = true;
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::output(&old, e))?;
        }
        if let Some(parent) = self
            .final_dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            File::open(parent)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::output(parent, e))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
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
            options: crate::row_group::write_options(compression, statistics),
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
        let pages = crate::row_group::encode(&df, &self.fields, self.options)
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

/// Checks every file of a delivery against its manifest: checksum, size, row count and footer metadata.
/// Parquet files that the manifest does not list are an error too.
pub fn verify(dir: &Path) -> Result<Manifest> {
    let manifest = read_manifest(dir)?;
    let domains_json = serde_json::to_string(&manifest.domains).expect("serialisable");
    for d in &manifest.datasets {
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
        if name.ends_with(".parquet") && !manifest.datasets.iter().any(|d| d.file == name) {
            return Err(Error::verify(
                dir.join(&name),
                "Parquet file not listed in the manifest",
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
