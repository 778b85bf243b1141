//! Generalisation kernels: coarser versions of quasi-identifiers (dates to year or month, strings to a
//! prefix). Plain Rust over slices; no polars types.

use chrono::Datelike;

use crate::kernels::values::days_to_date;

/// The year of each date (days since 1970-01-01).
pub fn date_to_year(days: &[Option<i32>]) -> Vec<Option<i32>> {
    days.iter()
        .map(|d| d.map(|d| days_to_date(d).year()))
        .collect()
}

/// The month of each date as `YYYY-MM`, written into one buffer of 7-byte values.
pub fn date_to_month(days: &[Option<i32>]) -> Vec<Option<[u8; 7]>> {
    days.iter()
        .map(|d| {
            d.map(|d| {
                let date = days_to_date(d);
                let mut out = [0u8; 7];
                let (y, m) = (date.year().clamp(0, 9999) as u32, date.month());
                out[..4].copy_from_slice(&[
                    b'0' + (y / 1000) as u8,
                    b'0' + (y / 100 % 10) as u8,
                    b'0' + (y / 10 % 10) as u8,
                    b'0' + (y % 10) as u8,
                ]);
                out[4] = b'-';
                out[5] = b'0' + (m / 10) as u8;
                out[6] = b'0' + (m % 10) as u8;
                out
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
        let months: Vec<Option<String>> = date_to_month(&days)
            .iter()
            .map(|m| m.map(|m| String::from_utf8(m.to_vec()).unwrap()))
            .collect();
        assert_eq!(
            months,
            vec![
                Some("1969-12".into()),
                Some("2024-02".into()),
                Some("1905-10".into()),
                None
            ]
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
