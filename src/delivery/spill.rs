//! The run's own intermediate files (spills): batches that wait for a later step — rows waiting
//! for the delivery's order, rows of classes not yet known to reach k, transformed rows waiting for
//! pass 2 — written as uncompressed Arrow IPC and read back by the same run, then deleted.
//!
//! Arrow IPC, not Parquet: a spill is read once, by this process, soon after; its columns are
//! written as their memory is (no encoding, no dictionary, no statistics) and read back into the
//! same arrays, where Parquet spent a third of the row order's time encoding and decoding.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use polars::io::ipc::{BatchedWriter, IpcReader, IpcWriter};
use polars::prelude::*;
use polars_arrow::io::ipc::read;

use super::rebatch::Rebatch;
use super::writer::check_schema;
use crate::error::{Error, Result};

/// A spill being written batch by batch.
pub struct SpillWriter {
    writer: BatchedWriter<BufWriter<File>>,
    schema: Schema,
    path: PathBuf,
}

impl SpillWriter {
    pub fn create(path: PathBuf, schema: &Schema) -> Result<SpillWriter> {
        let file = File::create(&path).map_err(|e| Error::output(&path, e))?;
        let arrow = schema.to_arrow(CompatLevel::newest());
        let fields = polars_arrow::io::ipc::write::default_ipc_fields(arrow.iter_values());
        let writer = IpcWriter::new(BufWriter::with_capacity(64 << 10, file))
            .batched(schema, fields)
            .map_err(|e| Error::output(&path, e))?;
        Ok(SpillWriter {
            writer,
            schema: schema.clone(),
            path,
        })
    }

    /// Appends a batch (one record batch per chunk).
    pub fn write(&mut self, mut df: DataFrame) -> Result<()> {
        if df.height() == 0 {
            return Ok(());
        }
        // Arrow IPC writes what it is given: a batch of other types would not read back.
        check_schema(&self.path, &df, &self.schema, "spill")?;
        // A part gathered from a bigger batch shares its text buffers; polars' IPC writer copies
        // the part's bytes apart rather than writing the buffers whole (a test checks the size).
        df.align_chunks_par();
        self.writer
            .write_batch(&df)
            .map_err(|e| Error::output(&self.path, e))
    }

    pub fn finish(mut self) -> Result<PathBuf> {
        self.writer
            .finish()
            .map_err(|e| Error::output(&self.path, e))?;
        Ok(self.path)
    }
}

/// A whole spill, as written.
pub fn read_spill(path: &Path) -> Result<DataFrame> {
    let file = File::open(path).map_err(|e| Error::output(path, e))?;
    IpcReader::new(file)
        .finish()
        .map_err(|e| unreadable(path, e))
}

/// The rows of a spill, `batch_rows` at a time (the last batch may be shorter), in the order
/// written; a missing spill has no rows. Memory holds a batch or two, whatever the spill's size.
pub fn read_spill_batches(
    path: &Path,
    batch_rows: usize,
    mut each: impl FnMut(DataFrame) -> Result<()>,
) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let mut file = BufReader::new(File::open(path).map_err(|e| Error::output(path, e))?);
    let metadata = read::read_file_metadata(&mut file).map_err(|e| unreadable(path, e))?;
    // Each batch handed on in one chunk, as a batch read from a source is.
    let mut each = |mut df: DataFrame| {
        df.rechunk_mut_par();
        each(df)
    };
    let mut cut = Rebatch::new(batch_rows);
    for batch in read::FileReader::new(file, metadata, None, None) {
        let batch = DataFrame::from(batch.map_err(|e| unreadable(path, e))?);
        cut.push(batch, &mut each)?;
    }
    cut.finish(each)
}

/// The rows of a spill (0 when there is none), for a progress bar.
pub fn spill_rows(path: &Path) -> Result<u64> {
    if !path.exists() {
        return Ok(0);
    }
    let mut file = BufReader::new(File::open(path).map_err(|e| Error::output(path, e))?);
    let rows = read::get_row_count(&mut file).map_err(|e| unreadable(path, e))?;
    Ok(rows as u64)
}

fn unreadable(path: &Path, e: PolarsError) -> Error {
    Error::Internal(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spill_reads_back_as_written_and_holds_only_its_rows_text() {
        let dir = tempfile::tempdir().unwrap();
        let long: Vec<String> = (0..10_000)
            .map(|i| format!("a value longer than twelve bytes {i}"))
            .collect();
        let df = df!(
            "text" => long.iter().map(String::as_str).collect::<Vec<_>>(),
            "number" => (0..10_000i64).collect::<Vec<_>>(),
            "bytes" => long.iter().map(|t| t.as_bytes()).collect::<Vec<_>>(),
        )
        .unwrap();
        // Gathered, as a bucket's part is: the part shares the batch's buffers.
        let part = df
            .take(&IdxCa::from_vec("i".into(), (100..110).collect()))
            .unwrap();
        let path = dir.path().join("part.spill");
        let mut w = SpillWriter::create(path.clone(), df.schema()).unwrap();
        w.write(part.clone()).unwrap();
        w.write(df.slice(5000, 3)).unwrap();
        w.finish().unwrap();
        let back = read_spill(&path).unwrap();
        let mut expected = part;
        expected.vstack_mut(&df.slice(5000, 3)).unwrap();
        assert!(back.equals_missing(&expected));
        assert_eq!(back.column("bytes").unwrap().dtype(), &DataType::Binary);
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(
            size < 16 << 10,
            "{size} bytes for 13 rows: the whole batch's bytes were written"
        );
    }

    /// Batches are cut to the size asked, whatever the sizes written, rows in the order written.
    #[test]
    fn a_spill_is_read_back_in_batches_of_the_size_asked() {
        let dir = tempfile::tempdir().unwrap();
        let df = df!(
            "n" => (0..1000i64).collect::<Vec<_>>(),
            "t" => (0..1000).map(|i| format!("row {i}")).collect::<Vec<_>>(),
        )
        .unwrap();
        let path = dir.path().join("spill");
        let mut w = SpillWriter::create(path.clone(), df.schema()).unwrap();
        for (start, len) in [(0, 7), (7, 300), (307, 1), (308, 692)] {
            w.write(df.slice(start, len)).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(spill_rows(&path).unwrap(), 1000);
        let mut sizes = Vec::new();
        let mut back = DataFrame::empty();
        read_spill_batches(&path, 128, |b| {
            sizes.push(b.height());
            back.vstack_mut(&b).unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(sizes, [vec![128; 7], vec![104]].concat());
        assert!(back.equals(&df));
        let missing = dir.path().join("none");
        assert_eq!(spill_rows(&missing).unwrap(), 0);
        read_spill_batches(&missing, 10, |_| panic!("no rows")).unwrap();
    }

    #[test]
    fn a_batch_of_other_types_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let df = df!("n" => [1i64, 2]).unwrap();
        let mut w = SpillWriter::create(dir.path().join("s"), df.schema()).unwrap();
        let other = df!("n" => ["1", "2"]).unwrap();
        assert!(matches!(w.write(other), Err(Error::Internal(m)) if m.contains("differs")));
    }
}
