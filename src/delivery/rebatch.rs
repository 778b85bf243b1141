//! Cutting a stream of batches of any sizes into batches of a fixed number of rows, in order: the
//! delivery's row groups after the order's buckets, a spill read back batch by batch.

use polars::prelude::DataFrame;

use crate::error::Result;

/// Holds the rows short of a whole batch until more arrive.
pub(super) struct Rebatch {
    rows: usize,
    pending: Option<DataFrame>,
}

impl Rebatch {
    pub(super) fn new(rows: usize) -> Rebatch {
        Rebatch {
            rows: rows.max(1),
            pending: None,
        }
    }

    /// Appends `df`'s rows and hands each whole batch now complete to `each`.
    pub(super) fn push(
        &mut self,
        df: DataFrame,
        mut each: impl FnMut(DataFrame) -> Result<()>,
    ) -> Result<()> {
        let mut df = match self.pending.take() {
            Some(mut p) => {
                p.vstack_mut(&df)?;
                p
            }
            None => df,
        };
        while df.height() >= self.rows {
            let rest = df.slice(self.rows as i64, df.height() - self.rows);
            each(df.slice(0, self.rows))?;
            df = rest;
        }
        self.pending = (df.height() > 0).then_some(df);
        Ok(())
    }

    /// Hands the rows left, if any, to `each` as the last, shorter batch.
    pub(super) fn finish(self, each: impl FnOnce(DataFrame) -> Result<()>) -> Result<()> {
        self.pending.map_or(Ok(()), each)
    }
}
