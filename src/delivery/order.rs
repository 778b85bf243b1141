//! The order of a delivered file's rows: a function of the delivered values only, never of the
//! source's order (which follows raw identifiers, admission numbers, load dates).
//!
//! Rows are sorted by a 64-bit hash ([`sort_keys`]) of the row's person value as delivered (its
//! pseudonym) — or, in a dataset without a delivered person column, of its first
//! column — then by that value, then by a 64-bit hash of all the row's delivered values
//! ([`row_hashes`]). A person's rows stay together, in an order of their values only; persons come
//! in an order no one can relate to the source.
//!
//! In bounded memory: rows are spilled to buckets by the top bits of their sort key (as many
//! buckets as the source holds [`BUCKET_SOURCE_BYTES`]), then each bucket is sorted and written in
//! turn, cut into row groups of `batch_rows` rows. Buckets split the key space in order, so the
//! file is the same bytes whatever the number of buckets.

use std::path::PathBuf;

use polars::prelude::*;
use rayon::prelude::*;

use super::rebatch::Rebatch;
use super::spill::{SpillWriter, read_spill};
use super::writer::{DatasetWriter, WrittenFile};
use crate::error::{Error, Result};

/// The source bytes one bucket stands for at most: its rows, sorted in memory, stay around a
/// hundred MB whatever the source's size (buckets are as even as the key is uniform).
pub const BUCKET_SOURCE_BYTES: u64 = 16 << 20;
/// At most this many buckets are open at once (file descriptors); past it, buckets grow.
const MAX_BUCKETS: u64 = 256;
/// The sort key's column while rows wait to be sorted.
const KEY: &str = "__ehds_order";

/// The order in words, for the manifest.
pub fn describe(key_column: &str) -> String {
    format!(
        "rows sorted by fmix64(FNV-1a(0x01 ‖ `{key_column}`)), then by `{key_column}`, then by \
         FNV-1a of the row's values: the source's row order is not kept"
    )
}

/// How many buckets a dataset of `source_bytes` is sorted in.
pub fn buckets_for(source_bytes: u64) -> u64 {
    source_bytes
        .div_ceil(BUCKET_SOURCE_BYTES)
        .clamp(1, MAX_BUCKETS)
}

/// The bucket of a key among `buckets`: the key's place in [0, 2⁶⁴) scaled, so that buckets hold
/// consecutive ranges of keys.
fn bucket_of(key: u64, buckets: usize) -> usize {
    ((key as u128 * buckets as u128) >> 64) as usize
}

/// Receives a dataset's batches in any order and writes them in the delivery's order.
pub struct OrderedWriter {
    out: DatasetWriter,
    key_column: String,
    batch_rows: usize,
    buckets: Buckets,
}

enum Buckets {
    /// One bucket: the rows wait in memory (a small dataset, or a linked person table).
    Memory(Vec<DataFrame>),
    /// Spills, one per range of the key (an Arrow IPC file keeps only a few bytes per batch
    /// written until its footer: the open files' memory does not grow with rows).
    Spilled {
        writers: Vec<SpillWriter>,
        paths: Vec<PathBuf>,
    },
}

impl OrderedWriter {
    /// Orders rows by `key_column` (a delivered column), in `buckets` buckets spilled beside the
    /// delivery at `spill(i)` when more than one.
    pub fn new(
        out: DatasetWriter,
        key_column: &str,
        batch_rows: usize,
        buckets: u64,
        spill: impl Fn(usize) -> PathBuf,
    ) -> Result<OrderedWriter> {
        assert!(buckets >= 1, "at least one bucket");
        let buckets = if buckets == 1 {
            Buckets::Memory(Vec::new())
        } else {
            let mut schema = out.schema().clone();
            schema.insert_at_index(0, KEY.into(), DataType::UInt64)?;
            let paths: Vec<PathBuf> = (0..buckets as usize).map(&spill).collect();
            let writers = paths
                .iter()
                .map(|p| SpillWriter::create(p.clone(), &schema))
                .collect::<Result<_>>()?;
            Buckets::Spilled { writers, paths }
        };
        Ok(OrderedWriter {
            out,
            key_column: key_column.into(),
            batch_rows,
            buckets,
        })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.out.path
    }

    pub fn write(&mut self, df: DataFrame) -> Result<()> {
        if df.height() == 0 {
            return Ok(());
        }
        let keys = sort_keys(&df, &self.key_column)?;
        match &mut self.buckets {
            Buckets::Memory(frames) => {
                let mut df = df;
                df.insert_column(0, key_column(keys))?;
                frames.push(df);
            }
            Buckets::Spilled { writers, .. } => {
                let buckets = writers.len();
                let mut rows: Vec<Vec<IdxSize>> = vec![Vec::new(); buckets];
                for (row, &key) in keys.iter().enumerate() {
                    rows[bucket_of(key, buckets)].push(row as IdxSize);
                }
                let mut df = df;
                df.insert_column(0, key_column(keys))?;
                for (b, rows) in rows.into_iter().enumerate() {
                    if !rows.is_empty() {
                        writers[b].write(df.take(&IdxCa::from_vec(PlSmallStr::EMPTY, rows))?)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Sorts each bucket in turn and writes it; returns the delivered file.
    pub fn finish(self) -> Result<WrittenFile> {
        let OrderedWriter {
            out,
            key_column,
            batch_rows,
            buckets,
        } = self;
        let mut groups = RowGroups {
            out,
            cut: Rebatch::new(batch_rows),
        };
        match buckets {
            Buckets::Memory(frames) => groups.push(sorted(frames, &key_column)?)?,
            Buckets::Spilled { writers, paths, .. } => {
                for w in writers {
                    w.finish()?;
                }
                // The next bucket is read and sorted while this one is encoded and written.
                let (to_writer, sorted_buckets) = std::sync::mpsc::sync_channel(1);
                std::thread::scope(|scope| {
                    let sorting = scope.spawn(move || -> Result<()> {
                        for path in &paths {
                            let bucket = read_spill(path)?;
                            std::fs::remove_file(path).map_err(|e| Error::output(path, e))?;
                            if to_writer.send(sorted(vec![bucket], &key_column)?).is_err() {
                                break; // the writer failed: its error is reported
                            }
                        }
                        Ok(())
                    });
                    let written = sorted_buckets.iter().try_for_each(|df| groups.push(df));
                    drop(sorted_buckets);
                    let sorted = sorting
                        .join()
                        .map_err(|_| Error::Internal("the bucket sort panicked".into()))?;
                    written.and(sorted)
                })?;
            }
        }
        groups.finish()
    }
}

/// Writes each row of `distinct` as many times as `repeats` says, in the delivery's order: the file an
/// [`OrderedWriter`] writes from those rows one by one, without holding, spilling or sorting more
/// than the distinct rows (copies of a row are indistinguishable, so their order among themselves
/// cannot show).
pub fn write_repeated(
    out: DatasetWriter,
    key_column: &str,
    batch_rows: usize,
    mut distinct: DataFrame,
    repeats: &[u64],
) -> Result<WrittenFile> {
    distinct.rechunk_mut_par();
    let keys = sort_keys(&distinct, key_column)?;
    let key_text = distinct.column(key_column)?.cast(&DataType::String)?;
    let key_values: Vec<Option<&str>> = key_text.str()?.iter().collect();
    let order = delivery_order(&keys, &key_values, &row_hashes(&distinct)?);
    let mut groups = RowGroups {
        out,
        cut: Rebatch::new(batch_rows),
    };
    let batch_rows = batch_rows.max(1);
    let mut rows: Vec<IdxSize> = Vec::with_capacity(batch_rows);
    for row in order {
        for _ in 0..repeats[row as usize] {
            rows.push(row);
            if rows.len() == batch_rows {
                let batch = std::mem::replace(&mut rows, Vec::with_capacity(batch_rows));
                groups.push(distinct.take(&IdxCa::from_vec(PlSmallStr::EMPTY, batch))?)?;
            }
        }
    }
    if !rows.is_empty() {
        groups.push(distinct.take(&IdxCa::from_vec(PlSmallStr::EMPTY, rows))?)?;
    }
    groups.finish()
}

/// Cuts the sorted rows into row groups of `batch_rows` rows, whatever the buckets' sizes.
struct RowGroups {
    out: DatasetWriter,
    cut: Rebatch,
}

impl RowGroups {
    fn push(&mut self, df: DataFrame) -> Result<()> {
        let RowGroups { out, cut } = self;
        cut.push(df, |group| out.write(group))
    }

    fn finish(self) -> Result<WrittenFile> {
        let RowGroups { mut out, cut } = self;
        cut.finish(|rest| out.write(rest))?;
        out.finish()
    }
}

/// The frames as one, in the delivery's order, without the key column.
fn sorted(frames: Vec<DataFrame>, key_column: &str) -> Result<DataFrame> {
    let mut frames = frames.into_iter();
    let Some(mut all) = frames.next() else {
        return Ok(DataFrame::empty());
    };
    for f in frames {
        all.vstack_mut(&f)?;
    }
    // One chunk per column: polars gathers a text column of many chunks by copying every value,
    // and one chunk by gathering its views alone.
    all.rechunk_mut_par();
    let keys: Vec<u64> = all.column(KEY)?.u64()?.into_no_null_iter().collect();
    all.drop_in_place(KEY)?;
    let person_text = all.column(key_column)?.cast(&DataType::String)?;
    let persons: Vec<Option<&str>> = person_text.str()?.iter().collect();
    let order = delivery_order(&keys, &persons, &row_hashes(&all)?);
    Ok(all.take(&IdxCa::from_vec(PlSmallStr::EMPTY, order))?)
}

/// The rows' places in the delivery's order: by sort key, then person, then row hash; rows equal in
/// all three keep their order of arrival, itself the source's (only identical rows, or a 64-bit
/// collision within one person's rows, can tie).
///
/// Persons are compared only where keys tie, and tied keys are one person's rows but for a 64-bit
/// collision: the rows are sorted by (key, row hash, arrival), then the rare run of one key that
/// holds two persons is sorted again by person first.
fn delivery_order(keys: &[u64], persons: &[Option<&str>], rows: &[u64]) -> Vec<IdxSize> {
    let mut order: Vec<(u64, u64, IdxSize)> = (0..keys.len())
        .map(|i| (keys[i], rows[i], i as IdxSize))
        .collect();
    order.par_sort_unstable();
    let person = |o: &(u64, u64, IdxSize)| persons[o.2 as usize];
    order.par_chunk_by_mut(|a, b| a.0 == b.0).for_each(|run| {
        if run[1..].iter().any(|o| person(o) != person(&run[0])) {
            run.sort_unstable_by(|a, b| person(a).cmp(&person(b)).then_with(|| a.cmp(b)));
        }
    });
    order.into_iter().map(|(_, _, i)| i).collect()
}

/// Per row, FNV-1a (64 bits) over its delivered values in column order: each value's bytes (text
/// as UTF-8, numbers and dates as their 8-byte little-endian physical value), a null as one 0xFF
/// byte, each value followed by a 0x00 byte.
pub(crate) fn row_hashes(df: &DataFrame) -> Result<Vec<u64>> {
    fn add<'a>(hashes: &mut [u64], values: impl Iterator<Item = Option<&'a [u8]>>) {
        for (h, v) in hashes.iter_mut().zip(values) {
            *h = add_to_row_hash(*h, v);
        }
    }
    fn add_bits(hashes: &mut [u64], values: impl Iterator<Item = Option<u64>>) {
        for (h, v) in hashes.iter_mut().zip(values) {
            *h = add_to_row_hash(*h, v.map(u64::to_le_bytes).as_ref().map(|b| &b[..]));
        }
    }
    // Rows are hashed in parallel, a slice of rows at a time.
    const ROWS_PER_TASK: usize = 1 << 16;
    let slices: Vec<Vec<u64>> = (0..df.height().div_ceil(ROWS_PER_TASK))
        .into_par_iter()
        .map(|t| -> Result<Vec<u64>> {
            let part = df.slice((t * ROWS_PER_TASK) as i64, ROWS_PER_TASK);
            let mut hashes = vec![FNV_OFFSET; part.height()];
            for column in part.columns() {
                let physical = column.as_materialized_series().to_physical_repr();
                let h = &mut hashes;
                match physical.dtype() {
                    DataType::String => {
                        add(h, physical.str()?.iter().map(|v| v.map(str::as_bytes)))
                    }
                    DataType::Binary => add(h, physical.binary()?.iter()),
                    DataType::Boolean => {
                        add_bits(h, physical.bool()?.iter().map(|v| v.map(u64::from)))
                    }
                    DataType::Float32 | DataType::Float64 => {
                        let values = physical.cast(&DataType::Float64)?;
                        add_bits(h, values.f64()?.iter().map(|v| v.map(f64::to_bits)));
                    }
                    _ => {
                        let values = physical.cast(&DataType::Int64)?;
                        add_bits(h, values.i64()?.iter().map(|v| v.map(|v| v as u64)));
                    }
                }
            }
            Ok(hashes)
        })
        .collect::<Result<_>>()?;
    Ok(slices.concat())
}

/// Per row, the key the file is sorted by: [`fnv1a`] of 0x01 and the key column's value as text
/// (of 0x00 alone for a null), finished by MurmurHash3's 64-bit mix so that its top bits, which
/// choose the bucket, are uniform.
fn sort_keys(df: &DataFrame, key_column: &str) -> Result<Vec<u64>> {
    let column = df.column(key_column)?.cast(&DataType::String)?;
    let values: Vec<Option<&str>> = column.str()?.iter().collect();
    Ok(values.par_iter().map(|v| text_key(*v)).collect())
}

/// The sort key of one value of the key column, as text: [`sort_keys`]' key of a row.
pub fn text_key(value: Option<&str>) -> u64 {
    fmix64(match value {
        Some(v) => fnv1a(fnv1a(FNV_OFFSET, &[1]), v.as_bytes()),
        None => fnv1a(FNV_OFFSET, &[0]),
    })
}

/// Adds one value to a row's hash (see [`row_hashes`]): its bytes, or 0xFF for a null, then 0x00.
pub fn add_to_row_hash(hash: u64, value: Option<&[u8]>) -> u64 {
    fnv1a(fnv1a(hash, value.unwrap_or(&[0xff])), &[0])
}

/// A row's hash before its first value.
pub const ROW_HASH_START: u64 = FNV_OFFSET;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, 64 bits, continuing from `h`.
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// MurmurHash3's 64-bit finaliser.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn key_column(keys: Vec<u64>) -> Column {
    UInt64Chunked::from_vec(KEY.into(), keys).into_column()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of 500 persons (several rows each, some without a person), in three batches.
    fn batches() -> Vec<DataFrame> {
        (0..3)
            .map(|b| {
                let persons: Vec<Option<String>> = (0..400)
                    .map(|i| (i % 37 != 0).then(|| format!("p{}", (i * 7 + b * 13) % 500)))
                    .collect();
                let days: Vec<i32> = (0..400).map(|i| (i * 31 + b) % 90).collect();
                DataFrame::new(
                    400,
                    vec![
                        Column::new("person".into(), persons),
                        Column::new("day".into(), days),
                    ],
                )
                .unwrap()
            })
            .collect()
    }

    fn write(dir: &std::path::Path, buckets: u64) -> (Vec<u8>, DataFrame) {
        let schema = batches()[0].schema().as_ref().clone();
        let path = dir.join(format!("out-{buckets}.parquet"));
        let out = DatasetWriter::create(path.clone(), &schema, Vec::new()).unwrap();
        let dir = dir.to_path_buf();
        let mut w = OrderedWriter::new(out, "person", 128, buckets, move |i| {
            dir.join(format!("bucket-{buckets}-{i}.parquet"))
        })
        .unwrap();
        for b in batches() {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let df = ParquetReader::new(std::io::Cursor::new(bytes.clone()))
            .finish()
            .unwrap();
        (bytes, df)
    }

    #[test]
    fn the_file_is_the_same_bytes_whatever_the_buckets() {
        let dir = tempfile::tempdir().unwrap();
        let (one, df) = write(dir.path(), 1);
        for buckets in [2, 3, 8, 61] {
            assert_eq!(write(dir.path(), buckets).0, one, "{buckets} buckets");
        }
        // Only the delivery is left: the buckets were removed.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 5);
        assert_eq!(df.height(), 1200);
        // A person's rows together, persons in the order of their keys.
        let keys = sort_keys(&df, "person").unwrap();
        let persons: Vec<Option<&str>> =
            df.column("person").unwrap().str().unwrap().iter().collect();
        for i in 1..df.height() {
            assert!(keys[i - 1] <= keys[i], "row {i}");
            if keys[i - 1] == keys[i] {
                assert_eq!(persons[i - 1], persons[i], "row {i}");
            }
        }
    }

    /// The order is the comparison of (key, person, row hash, arrival), also where keys collide
    /// between persons (forced here by keys of a few values).
    #[test]
    fn the_order_compares_persons_where_keys_collide() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(5);
        for distinct_keys in [1u64, 3, 50, u64::MAX] {
            let n = 2000;
            let names: Vec<String> = (0..300).map(|p| format!("p{p}")).collect();
            let persons: Vec<Option<&str>> = (0..n)
                .map(|_| {
                    (rng.random_range(0..20) != 0).then(|| names[rng.random_range(0..300)].as_str())
                })
                .collect();
            let keys: Vec<u64> = persons
                .iter()
                .map(|p| fmix64(p.map_or(0, |p| fnv1a(FNV_OFFSET, p.as_bytes()))) % distinct_keys)
                .collect();
            let rows: Vec<u64> = (0..n).map(|_| rng.random_range(0..40)).collect();
            let mut expected: Vec<IdxSize> = (0..n as IdxSize).collect();
            expected.sort_by(|&a, &b| {
                let (a, b) = (a as usize, b as usize);
                (keys[a], persons[a], rows[a], a).cmp(&(keys[b], persons[b], rows[b], b))
            });
            assert_eq!(
                delivery_order(&keys, &persons, &rows),
                expected,
                "{distinct_keys} keys"
            );
        }
    }

    /// Hashing rows in parallel slices gives each row its own hash, whatever the slicing.
    #[test]
    fn row_hashes_are_the_rows_own_whatever_the_slices() {
        let n = 150_000;
        let df = DataFrame::new(
            n,
            vec![
                Column::new(
                    "text".into(),
                    (0..n)
                        .map(|i| (i % 7 != 0).then(|| format!("v{}", i % 1013)))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "number".into(),
                    (0..n as i64).map(|i| i * 3).collect::<Vec<_>>(),
                ),
                Column::new(
                    "float".into(),
                    (0..n).map(|i| i as f64 / 7.0).collect::<Vec<_>>(),
                ),
            ],
        )
        .unwrap();
        let whole = row_hashes(&df).unwrap();
        let mut pieces = Vec::new();
        for start in (0..n).step_by(1000) {
            pieces.extend(row_hashes(&df.slice(start as i64, 1000)).unwrap());
        }
        assert_eq!(whole, pieces);
        let one = row_hashes(&df.slice(99_999, 1)).unwrap()[0];
        assert_eq!(whole[99_999], one);
        assert_ne!(whole[0], whole[1]);
    }

    /// FNV-1a's published vectors (draft-eastlake-fnv), and the finaliser's fixed point.
    #[test]
    fn the_hashes_are_fnv_1a_and_murmur3_fmix64() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fmix64(0), 0);
        assert_ne!(fmix64(1), 1);
    }

    #[test]
    fn buckets_grow_with_the_source_and_split_the_keys_in_order() {
        assert_eq!(buckets_for(0), 1);
        assert_eq!(buckets_for(BUCKET_SOURCE_BYTES), 1);
        assert_eq!(buckets_for(BUCKET_SOURCE_BYTES + 1), 2);
        assert_eq!(buckets_for(5 * BUCKET_SOURCE_BYTES), 5);
        assert_eq!(buckets_for(u64::MAX / 2), MAX_BUCKETS);
        for buckets in [1, 3, 7, 256] {
            assert_eq!(bucket_of(0, buckets), 0);
            assert_eq!(bucket_of(u64::MAX, buckets), buckets - 1);
            let mut last = 0;
            for key in (0..1000u64).map(|i| i * (u64::MAX / 1000)) {
                let b = bucket_of(key, buckets);
                assert!(b >= last && b < buckets);
                last = b;
            }
        }
    }
}
