//! Writing a delivery's data files: one Parquet file per dataset, a row group per batch, zstd, hashed
//! as written.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use polars::io::parquet::write::BatchedWriter;
use polars::prelude::{
    CompatLevel, DataFrame, KeyValueMetadata, ParquetCompression, ParquetWriter, Schema, SchemaExt,
    StatisticsOptions,
};
use polars_parquet::write::{ParquetType, WriteOptions};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::kernels::hex;

/// zstd level of deliveries. Measured on the 10M-row comparison extract (`scripts/compare.sh`):
/// level 2 writes files about 2 % smaller than the default 3 for a fifth less compression time.
const DELIVERY_ZSTD_LEVEL: i32 = 2;

/// A Parquet file being written batch by batch (one row group per batch), zstd-compressed.
pub struct DatasetWriter {
    writer: BatchedWriter<HashingFile>,
    /// The Parquet columns and options the row groups are encoded with (`row_group::encode`).
    fields: Vec<ParquetType>,
    options: WriteOptions,
    checksum: Arc<Mutex<Checksum>>,
    schema: Schema,
    pub path: PathBuf,
    pub rows: u64,
}

/// A finished file: where, how many rows, and for a delivery its checksum.
pub struct WrittenFile {
    pub path: PathBuf,
    pub rows: u64,
    /// SHA-256 (hex) and size of the bytes written.
    pub checksum: (String, u64),
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
    checksum: Arc<Mutex<Checksum>>,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        let mut c = self.checksum.lock().expect("checksum lock");
        c.hasher.update(&buf[..n]);
        c.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The Arrow schema of the footer (what Arrow readers take types from), with text as
/// `large_string` where polars writes `string_view`: readers before pyarrow 15 cannot open a
/// file whose schema holds a view type. The pages are the same either way (UTF-8 byte arrays).
fn plain_arrow_schema(schema: &Schema) -> (String, String) {
    use polars_arrow::datatypes::ArrowDataType;
    let plain = schema
        .to_arrow(CompatLevel::newest())
        .iter_values()
        .map(|f| {
            let mut f = f.clone();
            f.dtype = match f.dtype {
                ArrowDataType::Utf8View => ArrowDataType::LargeUtf8,
                ArrowDataType::BinaryView => ArrowDataType::LargeBinary,
                other => other,
            };
            (f.name.clone(), f)
        })
        .collect();
    let entry = polars_parquet::arrow::write::schema_to_metadata_key(&plain);
    (entry.key, entry.value.unwrap_or_default())
}

impl DatasetWriter {
    pub fn create(
        path: PathBuf,
        schema: &Schema,
        footer: Vec<(String, String)>,
    ) -> Result<DatasetWriter> {
        let level = polars_utils::compression::ZstdLevel::try_new(DELIVERY_ZSTD_LEVEL);
        let compression = ParquetCompression::Zstd(Some(level.expect("a zstd level")));
        let statistics = StatisticsOptions::default();
        let mut footer = footer;
        footer.push(plain_arrow_schema(schema));
        let file = File::create(&path).map_err(|e| Error::output(&path, e))?;
        let checksum = Arc::default();
        let file = HashingFile {
            file,
            checksum: Arc::clone(&checksum),
        };
        let mut writer = ParquetWriter::new(file)
            .with_compression(compression)
            .with_statistics(statistics)
            .with_key_value_metadata(Some(KeyValueMetadata::from_static(footer)))
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

    /// The delivered columns.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Writes one batch as one row group.
    pub fn write(&mut self, mut df: DataFrame) -> Result<()> {
        if df.height() == 0 {
            return Ok(());
        }
        // A batch that differs from the declared schema would be written with wrong statistics.
        check_schema(&self.path, &df, &self.schema, "delivery")?;
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
        let c = Arc::into_inner(self.checksum)
            .expect("the writer is dropped")
            .into_inner()
            .expect("checksum lock");
        let checksum = (hex::encode(&c.hasher.finalize()), c.bytes);
        Ok(WrittenFile {
            path: self.path,
            rows: self.rows,
            checksum,
        })
    }
}

/// Refuses a batch whose columns or types differ from those the file at `path` (a `kind`: delivery
/// or spill) was opened with.
pub(super) fn check_schema(path: &Path, df: &DataFrame, schema: &Schema, kind: &str) -> Result<()> {
    if df.schema().as_ref() == schema {
        return Ok(());
    }
    Err(Error::Internal(format!(
        "{}: a batch's schema {:?} differs from the {kind}'s {:?}",
        path.display(),
        df.schema(),
        schema
    )))
}
