//! Text columns built from a text already in memory (a batch of CSV, a batch of pseudonyms): each
//! value a view into the shared text rather than a copy pushed row by row.
//!
//! polars stores text as Arrow "views": 16 bytes per value, the value itself when it has at most 12
//! bytes, otherwise its length, prefix and place in a shared buffer. A column of values cut out of a
//! text can therefore point into that text: the column shares it (reference counted) and nothing is
//! copied but the views.
//!
//! Reading goes the other way: a value of at most 12 bytes *is* its view, so columns are walked view
//! by view ([`by_run`]) and short values keyed by one number ([`TextIds`]).

use std::borrow::Cow;

use polars::prelude::{IntoSeries, PlSmallStr, Series, StringChunked};
use polars_arrow::array::{Array, Utf8ViewArray, View};
use polars_arrow::bitmap::Bitmap;
use polars_arrow::datatypes::ArrowDataType;
use polars_buffer::Buffer;

/// A UTF-8 text that the columns cut out of it share.
#[derive(Clone)]
pub struct SharedText(Buffer<u8>);

impl SharedText {
    pub fn new(text: String) -> Self {
        SharedText(Buffer::from(text.into_bytes()))
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: built from a `String` only, and a `Buffer` never changes its bytes.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The column of `values` (`None` for null): a value borrowed from this text is a view of it,
    /// any other value (a field rebuilt without its doubled quotes, say) is copied into a buffer of
    /// the column's own. Taking the values as they are produced, not collected first, reads each
    /// while it is still in cache.
    pub fn column<'a>(
        &self,
        name: PlSmallStr,
        values: impl ExactSizeIterator<Item = Option<Cow<'a, str>>>,
    ) -> Series {
        let mut views = Vec::with_capacity(values.len());
        let mut valid = Vec::with_capacity(values.len());
        let mut own = OwnValues::default();
        for value in values {
            valid.push(value.is_some());
            views.push(match value {
                None => View::default(),
                Some(value) => self.view(&value).unwrap_or_else(|| own.view(&value)),
            });
        }
        let validity = valid.contains(&false).then(|| Bitmap::from_iter(valid));
        // SAFETY: every view was made by `self.view` or `own.view`.
        unsafe { self.views_column(name, views, own, validity) }
    }

    /// The view of `value` when it lies inside this text (or is short enough to be inline); `None`
    /// for a value elsewhere, to be copied with [`OwnValues::view`].
    #[inline]
    pub fn view(&self, value: &str) -> Option<View> {
        let bytes = value.as_bytes();
        let at = (bytes.as_ptr() as usize).wrapping_sub(self.0.as_ptr() as usize);
        let inside = at <= self.0.len() && bytes.len() <= self.0.len() - at;
        if bytes.len() <= View::MAX_INLINE_SIZE as usize {
            return Some(match self.0.get(at..at.wrapping_add(16)) {
                Some(window) if inside => inline_view(window, bytes.len()),
                _ => View::new_inline(bytes),
            });
        }
        // Views address a buffer by 32-bit offsets: values past 4 GiB are copied instead.
        let offset = u32::try_from(at).ok().filter(|_| inside)?;
        Some(View::new_from_bytes(bytes, 0, offset))
    }

    /// The text column of `views` (buffer 0 this text, buffer 1 `own`).
    ///
    /// # Safety
    /// Every view was made by [`SharedText::view`] on this text or by [`OwnValues::view`] on `own`.
    pub unsafe fn views_column(
        &self,
        name: PlSmallStr,
        views: Vec<View>,
        own: OwnValues,
        validity: Option<Bitmap>,
    ) -> Series {
        let mut total_bytes = 0;
        let mut uses_text = false;
        for v in &views {
            total_bytes += v.length as usize;
            uses_text |= v.length > View::MAX_INLINE_SIZE && v.buffer_idx == 0;
        }
        // The text is kept alive only for the views that need it; buffer 1 needs a buffer 0.
        let buffers: Buffer<Buffer<u8>> = match (uses_text, own.0.is_empty()) {
            (_, false) => vec![self.0.clone(), Buffer::from(own.0)].into(),
            (true, true) => vec![self.0.clone()].into(),
            (false, true) => Buffer::new(),
        };
        let buffer_len = buffers.iter().map(Buffer::len).sum();
        // SAFETY: `view` makes views inside this text or inline, `OwnValues::view` inside `own`,
        // both from `&str` values, so each view is in bounds and UTF-8.
        let array = unsafe {
            Utf8ViewArray::new_unchecked(
                ArrowDataType::Utf8View,
                views.into(),
                buffers,
                validity,
                Some(total_bytes),
                buffer_len,
            )
        };
        StringChunked::with_chunk(name, array).into_series()
    }
}

/// The values of a text column that do not lie in its shared text, copied into a buffer of the
/// column's own (its buffer 1).
#[derive(Default)]
pub struct OwnValues(Vec<u8>);

impl OwnValues {
    pub fn view(&mut self, value: &str) -> View {
        let offset = u32::try_from(self.0.len()).expect("a column's own values exceed 4 GiB");
        self.0.extend_from_slice(value.as_bytes());
        View::new_from_bytes(value.as_bytes(), 1, offset)
    }
}

/// A value of a text column and its view. A value of at most 12 bytes is its view (length, then the
/// bytes, zero-padded: an Arrow invariant), so one `u128` tells it apart from every other value.
#[derive(Clone, Copy)]
pub struct TextValue<'a> {
    pub text: &'a str,
    view: View,
}

impl<'a> TextValue<'a> {
    pub fn new(text: &'a str) -> Self {
        let bytes = text.as_bytes();
        let view = if bytes.len() <= View::MAX_INLINE_SIZE as usize {
            View::new_inline(bytes)
        } else {
            // Only the length of a long value's view is read (to know it is long).
            View {
                length: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
                ..View::default()
            }
        };
        TextValue { text, view }
    }

    /// A text of at most 12 bytes as its view: equal views, equal texts.
    pub fn short_key(self) -> Option<u128> {
        (self.view.length <= View::MAX_INLINE_SIZE).then(|| self.view.as_u128())
    }
}

/// Ids of texts: short ones keyed by their view, hashed and compared as one number; longer ones by
/// their text.
#[derive(Default)]
pub struct TextIds {
    short: foldhash::HashMap<u128, u32>,
    long: foldhash::HashMap<String, u32>,
}

impl TextIds {
    pub fn get(&self, value: TextValue) -> Option<u32> {
        match value.short_key() {
            Some(key) => self.short.get(&key).copied(),
            None => self.long.get(value.text).copied(),
        }
    }

    pub fn insert(&mut self, value: TextValue, id: u32) {
        match value.short_key() {
            Some(key) => self.short.insert(key, id),
            None => self.long.insert(value.text.to_string(), id),
        };
    }
}

/// `f(row, value)` of each row of a text column (`None` for null), asked once per run of neighbouring
/// rows with the same view and repeated over the run. Equal views hold equal values, so the result
/// is the one `f` would give each row; extracts often keep a person's rows together, and a column
/// read from a dictionary page repeats one view per value, so most rows need no call.
pub fn by_run<T: Copy, E>(
    column: &StringChunked,
    mut f: impl FnMut(usize, Option<TextValue>) -> Result<T, E>,
) -> Result<Vec<T>, E> {
    let mut out = Vec::with_capacity(column.len());
    // Runs end with their chunk: in another chunk the same view can address another text.
    for array in column.downcast_iter() {
        let (first, views) = (out.len(), array.views());
        let keys = (0..array.len()).map(|i| array.is_valid(i).then(|| views[i].as_u128()));
        crate::kernels::values::extend_by_run(&mut out, keys, |i, key| {
            let value = key.map(|_| TextValue {
                text: array.value(i),
                view: views[i],
            });
            f(first + i, value)
        })?;
    }
    Ok(out)
}

/// The inline view of the first `len` (at most 12) bytes of a 16-byte `window`: one unaligned load
/// and a mask rather than a copy of `len` bytes.
fn inline_view(window: &[u8], len: usize) -> View {
    let raw = u128::from_le_bytes(window.try_into().expect("a 16-byte window"));
    let data = raw & ((1u128 << (8 * len)) - 1);
    View {
        length: len as u32,
        prefix: data as u32,
        buffer_idx: (data >> 32) as u32,
        offset: (data >> 64) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::NewChunkedArray;

    /// The column's single Arrow array.
    fn only_chunk(column: &Series) -> Utf8ViewArray {
        let chunks: Vec<&Utf8ViewArray> = column.str().unwrap().downcast_iter().collect();
        assert_eq!(chunks.len(), 1);
        chunks[0].clone()
    }

    fn borrowed<'a>(
        values: &'a [Option<&'a str>],
    ) -> impl ExactSizeIterator<Item = Option<Cow<'a, str>>> {
        values.iter().map(|v| v.map(Cow::Borrowed))
    }

    #[test]
    fn inline_views_equal_polars_own() {
        let text: Vec<u8> = (0..16).map(|i| b'a' + i).collect();
        for len in 0..=View::MAX_INLINE_SIZE as usize {
            let (fast, reference) = (inline_view(&text, len), View::new_inline(&text[..len]));
            let fields = |v: View| (v.length, v.prefix, v.buffer_idx, v.offset);
            assert_eq!(fields(fast), fields(reference), "length {len}");
        }
    }

    #[test]
    fn columns_equal_copied_columns_and_share_the_text() {
        let text = SharedText::new(
            "short,a value longer than twelve bytes,é accent longer again,".repeat(50),
        );
        let s = text.as_str();
        let rebuilt = String::from("a rebuilt value outside the text");
        let mut values: Vec<Option<&str>> = Vec::new();
        for (i, field) in s.split(',').enumerate() {
            values.push(match i % 5 {
                0 => None,
                1 | 2 => Some(rebuilt.as_str()),
                _ => Some(field),
            });
        }
        // Rows 1 (mod 5) owned, rows 2 borrowed from outside the text: both copied.
        let fields = values.iter().enumerate().map(|(i, v)| match (i % 5, v) {
            (1, Some(v)) => Some(Cow::Owned(v.to_string())),
            (_, v) => v.map(Cow::Borrowed),
        });
        let column = text.column("c".into(), fields);
        let read = |c: &Series| -> Vec<Option<String>> {
            c.str()
                .unwrap()
                .iter()
                .map(|v| v.map(String::from))
                .collect()
        };
        let expected: Vec<Option<String>> = values.iter().map(|v| v.map(String::from)).collect();
        assert_eq!(read(&column), expected);
        assert_eq!(
            column.null_count(),
            values.iter().filter(|v| v.is_none()).count()
        );
        let array = only_chunk(&column);
        // The long values in the text are not copied: the column's first buffer is the text itself;
        // the second holds the copies, 2 of every 5 rows.
        assert_eq!(array.data_buffers()[0].as_ptr(), text.as_bytes().as_ptr());
        assert_eq!(
            array.data_buffers()[1].len(),
            (0..values.len()).filter(|i| matches!(i % 5, 1 | 2)).count() * rebuilt.len()
        );
        // Slices of the column (a filter, a row group) read the same values.
        assert_eq!(read(&column.slice(7, 40)), expected[7..47]);
    }

    /// `by_run` gives every row what `f` gives its value, across chunks, nulls and empty texts
    /// (whose views are alike), asking `f` once per run; a value's key from its view is the key of
    /// the same text given by itself (`TextValue::new`).
    #[test]
    fn runs_give_each_row_the_id_of_its_value() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(12);
        let pool: Vec<String> = ["", "a", "a\0", "é", "abcdefghijkl", "abcdefghijklm"]
            .iter()
            .map(|s| s.to_string())
            .chain((0..40).map(|i| "x".repeat(i % 20) + &i.to_string()))
            .collect();
        let mut ids = TextIds::default();
        for (i, text) in pool.iter().enumerate() {
            ids.insert(TextValue::new(text), i as u32);
        }
        let mut expected: Vec<Option<u32>> = Vec::new();
        while expected.len() < 3000 {
            let value =
                (rng.random_range(0..6) != 0).then(|| rng.random_range(0..pool.len()) as u32);
            for _ in 0..rng.random_range(1..5) {
                expected.push(value);
            }
        }
        let text_of = |v: &Option<u32>| v.map(|i| pool[i as usize].as_str());
        // Half the rows as polars builds a column, half as `SharedText` cuts one.
        let (first, second) = expected.split_at(1500);
        let mut column = StringChunked::from_iter_options("c".into(), first.iter().map(text_of));
        let text = SharedText::new(pool.concat());
        let starts: Vec<usize> = pool
            .iter()
            .scan(0, |at, p| {
                let start = *at;
                *at += p.len();
                Some(start)
            })
            .collect();
        let cut = second.iter().map(|v| {
            v.map(|i| Cow::Borrowed(&text.as_str()[starts[i as usize]..][..pool[i as usize].len()]))
        });
        column
            .append(text.column("c".into(), cut).str().unwrap())
            .unwrap();
        assert_eq!(column.chunks().len(), 2);
        let mut calls = 0;
        let Ok(got) = by_run(&column, |_, v| {
            calls += 1;
            Ok::<_, std::convert::Infallible>(v.map(|v| ids.get(v).expect("every text has an id")))
        });
        assert_eq!(got, expected);
        assert!(
            calls < expected.len() / 2,
            "{calls} calls for {} rows",
            expected.len()
        );
    }

    /// Views are compared within a chunk only: in another chunk the same view can address another
    /// text (same length and prefix, same place in another buffer).
    #[test]
    fn runs_end_with_their_chunk() {
        let (a, b) = (
            SharedText::new("same prefix, text A".into()),
            SharedText::new("same prefix, text B".into()),
        );
        let mut column = a.column("c".into(), [Some(Cow::Borrowed(a.as_str()))].into_iter());
        column
            .append(&b.column("c".into(), [Some(Cow::Borrowed(b.as_str()))].into_iter()))
            .unwrap();
        let column = column.str().unwrap();
        let views: Vec<u128> = column
            .downcast_iter()
            .map(|array| array.views()[0].as_u128())
            .collect();
        assert_eq!(views[0], views[1], "the case under test: equal views");
        let Ok(texts) = by_run(column, |_, v| {
            Ok::<_, std::convert::Infallible>(v.map(|v| v.text.as_ptr()))
        });
        assert_eq!(
            texts,
            [Some(a.as_str().as_ptr()), Some(b.as_str().as_ptr())]
        );
    }

    #[test]
    fn short_values_and_nulls_need_no_buffer() {
        let text = SharedText::new("abc,de".into());
        let values = [Some(&text.as_str()[..3]), None, Some(&text.as_str()[4..])];
        let column = text.column("c".into(), borrowed(&values));
        let got: Vec<Option<&str>> = column.str().unwrap().iter().collect();
        assert_eq!(got, values);
        let array = only_chunk(&column);
        assert!(array.data_buffers().is_empty());
    }
}
