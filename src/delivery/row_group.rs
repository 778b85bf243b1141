//! A batch encoded as one Parquet row group: every column encoded and compressed on a thread of its
//! own, the pages then appended to the file by polars' writer.
//!
//! The encodings are polars' own (dictionary where it pays, else plain; its statistics), and so are
//! the bytes. Two things differ from polars' `write_batch`: pages are compressed in parallel (polars
//! compresses them one after another while appending), and a text column's dictionary is found by
//! comparing each value with the one before, looking one up only where it changes. Deliveries keep
//! neighbouring rows alike (a person's stays, one unit's rows), which polars' writer hashes row by
//! row.

use polars::prelude::{
    CompatLevel, DataFrame, ParquetCompression, PolarsError, PolarsResult, StatisticsOptions,
};
use polars_arrow::array::{Array, DictionaryArray, PrimitiveArray, Utf8ViewArray, View};
use polars_arrow::datatypes::{ArrowDataType, IntegerType};
use polars_compute::hyperloglogplus::HyperLogLog;
use polars_parquet::write::{
    CompressedPage, Encoding, ParquetType, Version, WriteOptions, array_to_columns, compress,
    get_dtype_encoding,
};
use rayon::prelude::*;

/// The options polars' writer derives from these settings (`ParquetWriter::batched`): pages
/// appended to its file are encoded with them.
pub fn write_options(
    compression: ParquetCompression,
    statistics: StatisticsOptions,
) -> WriteOptions {
    WriteOptions {
        statistics,
        compression: compression.into(),
        version: Version::V1,
        data_page_size: None,
    }
}

/// The pages of `df` (one chunk per column), one list per Parquet column, in the schema's order.
pub fn encode(
    df: &DataFrame,
    fields: &[ParquetType],
    options: WriteOptions,
) -> PolarsResult<Vec<Vec<CompressedPage>>> {
    let mut chunks = df.iter_chunks(CompatLevel::newest(), false);
    let batch = chunks.next().expect("a batch of at least one row");
    assert!(chunks.next().is_none(), "the batch is in one chunk");
    let columns: Vec<Vec<Vec<CompressedPage>>> = batch
        .columns()
        .par_iter()
        .zip(fields)
        .map(|(array, field)| encode_column(array.as_ref(), field, options))
        .collect::<PolarsResult<_>>()?;
    Ok(columns.into_iter().flatten().collect())
}

fn encode_column(
    array: &dyn Array,
    field: &ParquetType,
    options: WriteOptions,
) -> PolarsResult<Vec<Vec<CompressedPage>>> {
    let leaves = match array.as_any().downcast_ref::<Utf8ViewArray>() {
        Some(text) => match text_dictionary(text) {
            Some(dictionary) => array_to_columns(
                &dictionary as &dyn Array,
                field.clone(),
                options,
                &[Encoding::RleDictionary],
            )?,
            None => array_to_columns(array, field.clone(), options, &[Encoding::Plain])?,
        },
        None => array_to_columns(
            array,
            field.clone(),
            options,
            &get_dtype_encoding(array.dtype()),
        )?,
    };
    leaves
        .into_iter()
        .map(|pages| {
            pages
                .map(|page| {
                    compress(page?, Vec::new(), options.compression).map_err(PolarsError::from)
                })
                .collect()
        })
        .collect()
}

/// polars' estimate of a text column's distinct values (`estimate_cardinality`: a HyperLogLog of
/// every row's bytes, a null's as empty), computed adding each run of equal rows once: a value added
/// again never changes the registers, and a delivery's rows come grouped by person.
fn estimate_distinct(array: &Utf8ViewArray) -> usize {
    if array.is_empty() {
        return 0;
    }
    if array.null_count() == array.len() {
        return 1;
    }
    let mut hll = HyperLogLog::<[u8]>::new();
    // The previous row's view (equal views hold equal values), `None` for a null.
    let mut previous: Option<Option<u128>> = None;
    for (i, view) in array.views().iter().enumerate() {
        let row = array.is_valid(i).then(|| view.as_u128());
        if previous != Some(row) {
            hll.add(row.map_or(&[][..], |_| array.value(i).as_bytes()));
            previous = Some(row);
        }
    }
    hll.count()
}

/// The dictionary polars' writer makes of a text column: the values in order of first appearance,
/// each row the key of its value, a null row a null key. `None` where polars writes the column plain:
/// more than 128 rows of which more than three quarters distinct, by its own estimate.
fn text_dictionary(array: &Utf8ViewArray) -> Option<DictionaryArray<u32>> {
    let rows = array.len();
    let distinct = estimate_distinct(array);
    if rows > 128 && distinct as f64 / rows as f64 > 0.75 {
        return None;
    }
    // Short values (at most 12 bytes) are their view; longer ones are looked up by their text.
    // Sized for the estimate: a table grown by doubling rehashed a person column several times.
    let mut short: foldhash::HashMap<u128, u32> =
        foldhash::HashMap::with_capacity_and_hasher(distinct, Default::default());
    let mut long: foldhash::HashMap<&str, u32> =
        foldhash::HashMap::with_capacity_and_hasher(distinct, Default::default());
    let mut values: Vec<&str> = Vec::with_capacity(distinct);
    let mut keys: Vec<u32> = Vec::with_capacity(rows);
    // The previous valid row's view, text and key.
    let mut previous: Option<(u128, &str, u32)> = None;
    for (i, view) in array.views().iter().enumerate() {
        if !array.is_valid(i) {
            keys.push(0);
            continue;
        }
        let view = view.as_u128();
        let key = match previous {
            Some((v, _, key)) if v == view => key,
            _ => {
                let text = array.value(i);
                let long_value = text.len() > View::MAX_INLINE_SIZE as usize;
                let key = match previous {
                    // A long value's view names its place: equal texts can have other views.
                    Some((_, t, key)) if long_value && t == text => key,
                    _ => {
                        let next = values.len() as u32;
                        let key = if long_value {
                            *long.entry(text).or_insert(next)
                        } else {
                            *short.entry(view).or_insert(next)
                        };
                        if key == next {
                            values.push(text);
                        }
                        key
                    }
                };
                previous = Some((view, text, key));
                key
            }
        };
        keys.push(key);
    }
    let keys = PrimitiveArray::new(
        ArrowDataType::UInt32,
        keys.into(),
        array.validity().cloned(),
    );
    let values = Utf8ViewArray::from_slice_values(&values);
    let dtype = ArrowDataType::Dictionary(
        IntegerType::UInt32,
        Box::new(ArrowDataType::Utf8View),
        false,
    );
    Some(DictionaryArray::try_new(dtype, keys, values.boxed()).expect("keys within the values"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::*;
    use rand::{RngExt, SeedableRng};

    /// Text of every kind the dictionary tells apart: inline (up to 12 bytes) and long, one byte
    /// either side of the limit, prefixes of each other, non-ASCII; runs of equal rows and nulls.
    fn texts(rows: usize, distinct: usize, seed: u64) -> Vec<Option<String>> {
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
        let pool: Vec<String> = (0..distinct)
            .map(|i| match i % 4 {
                0 => format!("{i}"),
                1 => format!("{:012}", i),
                2 => format!("{:013}", i),
                _ => format!("é-{i}-a value longer than the inline limit"),
            })
            .collect();
        let mut out: Vec<Option<String>> = Vec::with_capacity(rows);
        while out.len() < rows {
            let value =
                (rng.random_range(0..8) != 0).then(|| pool[rng.random_range(0..distinct)].clone());
            for _ in 0..rng.random_range(1..4) {
                out.push(value.clone());
            }
        }
        out.truncate(rows);
        out
    }

    fn text_array(values: &[Option<String>]) -> Utf8ViewArray {
        let column =
            StringChunked::from_iter_options("t".into(), values.iter().map(|v| v.as_deref()));
        column.rechunk().downcast_as_array().clone()
    }

    /// The estimate that decides dictionary or plain is polars' own, to the unit: with runs of
    /// equal rows, nulls (among values, all of them, none), empty text, and from 0 to 3000 distinct.
    #[test]
    fn distinct_estimate_equals_polars() {
        for (rows, distinct, seed) in [
            (0, 1, 1),
            (1, 1, 2),
            (1000, 40, 3),
            (5000, 3, 4),
            (100, 100, 5),
            (20000, 3000, 6),
            (4000, 3900, 7),
        ] {
            let mut values = texts(rows, distinct, seed);
            let polars = |v: &[Option<String>]| {
                polars_compute::cardinality::estimate_cardinality(&text_array(v))
            };
            assert_eq!(estimate_distinct(&text_array(&values)), polars(&values));
            values
                .iter_mut()
                .step_by(7)
                .for_each(|v| *v = Some(String::new()));
            assert_eq!(estimate_distinct(&text_array(&values)), polars(&values));
            let nulls = vec![None; rows];
            assert_eq!(estimate_distinct(&text_array(&nulls)), polars(&nulls));
        }
    }

    /// The dictionary is the one polars' cast (what its writer calls) makes: same values in the same
    /// order, same keys for valid rows, same nulls.
    #[test]
    fn text_dictionaries_equal_polars_cast() {
        for (rows, distinct, seed) in [(1000, 40, 1), (5000, 3, 2), (100, 100, 3), (3000, 1500, 4)]
        {
            let array = text_array(&texts(rows, distinct, seed));
            let ours = text_dictionary(&array).expect("worth a dictionary");
            let dtype = ArrowDataType::Dictionary(
                IntegerType::UInt32,
                Box::new(ArrowDataType::Utf8View),
                false,
            );
            let theirs = polars_compute::cast::cast(&array, &dtype, Default::default()).unwrap();
            let theirs = theirs
                .as_any()
                .downcast_ref::<DictionaryArray<u32>>()
                .unwrap();
            let strings = |d: &DictionaryArray<u32>| -> Vec<String> {
                let v = d.values().as_any().downcast_ref::<Utf8ViewArray>().unwrap();
                v.values_iter().map(String::from).collect()
            };
            assert_eq!(strings(&ours), strings(theirs), "values, seed {seed}");
            let keys = |d: &DictionaryArray<u32>| -> Vec<Option<u32>> {
                d.keys().iter().map(|k| k.copied()).collect()
            };
            assert_eq!(keys(&ours), keys(theirs), "keys, seed {seed}");
        }
    }

    #[test]
    fn mostly_distinct_text_is_written_plain() {
        let values: Vec<Option<String>> = (0..1000).map(|i| Some(format!("row {i}"))).collect();
        assert!(text_dictionary(&text_array(&values)).is_none());
        // Few rows are always worth a dictionary, as in polars.
        assert!(text_dictionary(&text_array(&values[..100])).is_some());
    }

    fn frame(rows: usize, seed: u64) -> DataFrame {
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
        let ints: Vec<Option<i64>> = (0..rows)
            .map(|i| (i % 11 != 0).then(|| rng.random_range(0..5)))
            .collect();
        let floats: Vec<f64> = (0..rows).map(|_| rng.random_range(0.0..1e4)).collect();
        let days: Vec<i32> = (0..rows).map(|_| rng.random_range(18000..19000)).collect();
        let unique: Vec<String> = (0..rows).map(|i| format!("S{i:09}")).collect();
        let column = |name: &str, values: Vec<Option<String>>| {
            StringChunked::from_iter_options(name.into(), values.into_iter()).into_column()
        };
        DataFrame::new(
            rows,
            vec![
                StringChunked::from_iter_values("stay".into(), unique.into_iter()).into_column(),
                column("person", texts(rows, rows / 3, seed)),
                column("unit", texts(rows, 7, seed + 1)),
                column("empty", vec![None; rows]),
                Int64Chunked::from_iter_options("sex".into(), ints.into_iter()).into_column(),
                Float64Chunked::from_vec("cost".into(), floats).into_column(),
                Int32Chunked::from_vec("day".into(), days)
                    .into_date()
                    .into_column(),
            ],
        )
        .unwrap()
    }

    /// Row groups written through `encode` are byte for byte those of polars' own writer, with the
    /// delivery's options and with the spill's.
    #[test]
    fn files_equal_polars_writer() {
        let level = polars_utils::compression::ZstdLevel::try_new(2).unwrap();
        for (compression, statistics) in [
            (
                ParquetCompression::Zstd(Some(level)),
                StatisticsOptions::default(),
            ),
            (ParquetCompression::Uncompressed, StatisticsOptions::empty()),
        ] {
            let batches = [frame(5000, 1), frame(300, 2), frame(20, 3)];
            let dir = tempfile::tempdir().unwrap();
            let (theirs_path, ours_path) = (dir.path().join("theirs"), dir.path().join("ours"));
            let writer = |path: &std::path::Path| {
                ParquetWriter::new(std::fs::File::create(path).unwrap())
                    .with_compression(compression)
                    .with_statistics(statistics)
                    .batched(batches[0].schema())
                    .unwrap()
            };
            let mut theirs = writer(&theirs_path);
            let mut ours = writer(&ours_path);
            let options = write_options(compression, statistics);
            let fields = ours.parquet_schema().fields().to_vec();
            for df in &batches {
                theirs.write_batch(df).unwrap();
                ours.write_row_group(df.height() as u64, &encode(df, &fields, options).unwrap())
                    .unwrap();
            }
            theirs.finish().unwrap();
            ours.finish().unwrap();
            drop((theirs, ours));
            let (theirs, ours) = (
                std::fs::read(theirs_path).unwrap(),
                std::fs::read(ours_path).unwrap(),
            );
            assert_eq!(ours, theirs, "{compression:?}");
        }
    }
}
