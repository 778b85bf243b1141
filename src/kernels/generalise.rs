//! Generalisation kernels: coarser versions of quasi-identifiers (dates to year or the first day of
//! their month, strings to a prefix). Plain Rust over slices; no polars types.

use chrono::Datelike;

use crate::kernels::values::days_to_date;

/// The year of each date (days since 1970-01-01), as the 64-bit integer every year is delivered as.
pub fn date_to_year(days: &[Option<i32>]) -> Vec<Option<i64>> {
    days.iter()
        .map(|d| d.map(|d| i64::from(days_to_date(d).year())))
        .collect()
}

/// The first day of each date's month (days since 1970-01-01): a month is delivered as the date
/// it starts on, so that it reads as a date in every tool and sorts and compares as one.
pub fn date_to_month_start(days: &[Option<i32>]) -> Vec<Option<i32>> {
    days.iter()
        .map(|d| {
            d.map(|d| {
                let date = days_to_date(d);
                d - (date.day() as i32 - 1)
            })
        })
        .collect()
}

/// The first `n` characters (not bytes) of each value.
pub fn prefix<'a>(values: &[Option<&'a str>], n: usize) -> Vec<Option<&'a str>> {
    values
        .iter()
        .map(|v| v.map(|s| s.char_indices().nth(n).map_or(s, |(end, _)| &s[..end])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::values::date_to_days;
    use chrono::NaiveDate;

    #[test]
    fn dates_generalise_to_year_and_month() {
        let days: Vec<Option<i32>> = [(1969, 12, 31), (2024, 2, 29), (1905, 10, 1)]
            .iter()
            .map(|&(y, m, d)| Some(date_to_days(NaiveDate::from_ymd_opt(y, m, d).unwrap())))
            .chain([None])
            .collect();
        assert_eq!(
            date_to_year(&days),
            vec![Some(1969), Some(2024), Some(1905), None]
        );
        let day = |y, m, d| Some(date_to_days(NaiveDate::from_ymd_opt(y, m, d).unwrap()));
        assert_eq!(
            date_to_month_start(&days),
            vec![day(1969, 12, 1), day(2024, 2, 1), day(1905, 10, 1), None]
        );
    }

    #[test]
    fn prefix_counts_characters_not_bytes() {
        let v = [Some("75011"), Some("2A004"), Some("Évry"), Some("7"), None];
        assert_eq!(
            prefix(&v, 2),
            vec![Some("75"), Some("2A"), Some("Év"), Some("7"), None]
        );
    }
}
