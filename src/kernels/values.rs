//! Typed value kernels: parsing source text into the permit's declared types, and the date arithmetic
//! the cohort and generalisation steps share. Plain Rust over slices; no polars types.

use chrono::{Datelike, NaiveDate};

/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01, the Arrow date epoch.
const UNIX_EPOCH_FROM_CE: i32 = 719_163;

/// A date as days since 1970-01-01 (Arrow's `Date32`).
pub fn date_to_days(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - UNIX_EPOCH_FROM_CE
}

/// chrono's first and last dates (`NaiveDate::MIN`, `NaiveDate::MAX`) as days since 1970-01-01.
const FIRST_DAY: i32 = -96_465_292;
const LAST_DAY: i32 = 95_026_236;

/// A date the engine can compute with: within chrono's calendar (about ±262,000 years). Parsed text
/// always is; typed columns are checked with this when they are read (a comparison per value).
pub fn day_in_range(days: i32) -> bool {
    (FIRST_DAY..=LAST_DAY).contains(&days)
}

pub fn days_to_date(days: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(days + UNIX_EPOCH_FROM_CE)
        .expect("days within chrono's range: checked when read")
}

/// Whole years from `birth` to `at` (both days since 1970-01-01); negative when `at` is earlier.
pub fn age_in_years(birth: i32, at: i32) -> i32 {
    use chrono::Datelike;
    let (b, a) = (days_to_date(birth), days_to_date(at));
    let years = a.year() - b.year();
    if (a.month(), a.day()) < (b.month(), b.day()) {
        years - 1
    } else {
        years
    }
}

/// Each row's age in whole years at its date ([`age_in_years`]; null when either is missing), or
/// the first row whose birth is after its date.
pub fn ages(births: &[Option<i32>], at: &[Option<i32>]) -> Result<Vec<Option<i32>>, usize> {
    births
        .iter()
        .zip(at)
        .enumerate()
        .map(
            |(row, (b, a))| match b.zip(*a).map(|(b, a)| age_in_years(b, a)) {
                Some(age) if age < 0 => Err(row),
                age => Ok(age),
            },
        )
        .collect()
}

/// The message of a birth after the date an age is computed at.
pub const BIRTH_AFTER_AGE_DATE: &str =
    "the birth date is after the date the age is computed at (value not shown)";

/// Pushes `f(i, key)` of each of `keys` onto `out`, asking `f` only for the first key of each run of
/// equal neighbours and repeating its result over the run: extracts keep a person's rows together,
/// so most rows repeat the row before.
pub fn extend_by_run<K: PartialEq, T: Copy, E>(
    out: &mut Vec<T>,
    keys: impl IntoIterator<Item = K>,
    mut f: impl FnMut(usize, &K) -> Result<T, E>,
) -> Result<(), E> {
    let mut previous: Option<(K, T)> = None;
    for (i, key) in keys.into_iter().enumerate() {
        let result = match &previous {
            Some((k, result)) if *k == key => *result,
            _ => {
                let result = f(i, &key)?;
                previous = Some((key, result));
                result
            }
        };
        out.push(result);
    }
    Ok(())
}

/// Parses dates in a chrono format; `Err(row)` names the first row that does not parse.
pub fn parse_dates<'a>(
    values: impl IntoIterator<Item = Option<&'a str>>,
    format: &str,
) -> Result<Vec<Option<i32>>, usize> {
    parse_each(values, date_parser(format))
}

/// The date format parsed by hand rather than through chrono.
const ISO_DATE: &str = "%Y-%m-%d";

/// One date (days since 1970-01-01) in a chrono format, or `None` if it does not parse.
pub fn parse_date(s: &str, format: &str) -> Option<i32> {
    date_parser(format)(s)
}

/// The parser of dates in a chrono format, the format looked at once: ISO dates are parsed by hand.
pub fn date_parser(format: &str) -> impl Fn(&str) -> Option<i32> + '_ {
    let iso = format == ISO_DATE;
    move |s| {
        if iso {
            parse_iso_date(s)
        } else {
            NaiveDate::parse_from_str(s, format).ok().map(date_to_days)
        }
    }
}

/// `YYYY-MM-DD` of a day count (days since 1970-01-01), without chrono's formatting machinery: the
/// hot path of date quasi-identifiers. Years outside 0..=9999 go through chrono. Replaces `buf`.
pub fn iso_date_into(days: i32, buf: &mut String) {
    buf.clear();
    // Civil date from days (H. Hinnant's algorithm), exact over the proleptic Gregorian calendar.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        use std::fmt::Write;
        let _ = write!(buf, "{}", days_to_date(days).format("%Y-%m-%d"));
        return;
    }
    let mut b = *b"0000-00-00";
    let digits = |b: &mut [u8], mut n: i64| {
        for slot in b.iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    digits(&mut b[0..4], year);
    digits(&mut b[5..7], month);
    digits(&mut b[8..10], day);
    buf.push_str(std::str::from_utf8(&b).expect("ASCII"));
}

/// Microseconds in a day, to move between datetimes and dates.
pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Parses datetimes (no time zone) in a chrono format into microseconds since 1970-01-01T00:00:00;
/// `Err(row)` names the first row that does not parse.
pub fn parse_datetimes<'a>(
    values: impl IntoIterator<Item = Option<&'a str>>,
    format: &str,
) -> Result<Vec<Option<i64>>, usize> {
    parse_each(values, datetime_parser(format))
}

/// One datetime (microseconds since 1970-01-01T00:00:00) in a chrono format.
pub fn parse_datetime(s: &str, format: &str) -> Option<i64> {
    datetime_parser(format)(s)
}

/// Whether a chrono format reads a UTC offset (`+02:00`).
pub fn has_offset(format: &str) -> bool {
    ["%z", "%:z", "%::z", "%:::z", "%#z"]
        .iter()
        .any(|spec| format.contains(spec))
}

/// The parser of datetimes in a chrono format, the format looked at once. A format with an offset
/// keeps the instant: the value is converted to UTC (two readings an hour apart in the autumn
/// overlap of daylight saving time stay an hour apart). A leap second (`23:59:60`) is refused
/// rather than rolled over into the next minute.
pub fn datetime_parser(format: &str) -> impl Fn(&str) -> Option<i64> + '_ {
    use chrono::Timelike;
    let offset = has_offset(format);
    move |s| {
        let t = if offset {
            chrono::DateTime::parse_from_str(s, format)
                .ok()?
                .naive_utc()
        } else {
            chrono::NaiveDateTime::parse_from_str(s, format).ok()?
        };
        (t.nanosecond() < 1_000_000_000).then(|| t.and_utc().timestamp_micros())
    }
}

/// The day (since 1970-01-01) of a datetime in microseconds.
pub fn datetime_day(micros: i64) -> i32 {
    micros.div_euclid(MICROS_PER_DAY) as i32
}

/// `YYYY-MM-DD` as days since 1970-01-01, by hand: the hot path of every date column of a CSV
/// extract (chrono's checked constructors cost more than the rest of the parse).
fn parse_iso_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| decimal(&b[r]);
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if day == 0 || day > month_days {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// Days since 1970-01-01 of a valid civil date of years 0..=9999 (H. Hinnant's algorithm; years
/// counted from March, so that the leap day ends the year; no negative eras).
fn days_from_civil(year: u32, month: u32, day: u32) -> i32 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (i64::from(month) + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    (era * 146_097 + day_of_era - 719_468) as i32
}

/// The digits of `b` as a number; `None` if one is not an ASCII digit.
fn decimal(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u32)
    })
}

/// A year alone (`YYYY`), as the days of its first day: partial dates are held as the first day
/// of their period, so that they compare, filter and shift as dates do.
pub fn parse_year(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    (b.len() == 4).then_some(())?;
    Some(days_from_civil(decimal(b)?, 1, 1))
}

/// A year and month (`YYYYMM` or `YYYY-MM`), as the days of the month's first day.
pub fn parse_year_month(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    let month = match b.len() {
        6 => &b[4..6],
        7 if b[4] == b'-' => &b[5..7],
        _ => return None,
    };
    let month = decimal(month).filter(|m| (1..=12).contains(m))?;
    Some(days_from_civil(decimal(&b[..4])?, month, 1))
}

pub fn parse_integers<'a>(
    values: impl IntoIterator<Item = Option<&'a str>>,
) -> Result<Vec<Option<i64>>, usize> {
    parse_each(values, parse_integer)
}

pub fn parse_integer(s: &str) -> Option<i64> {
    s.parse().ok()
}

pub fn parse_floats<'a>(
    values: impl IntoIterator<Item = Option<&'a str>>,
) -> Result<Vec<Option<f64>>, usize> {
    parse_each(values, parse_float)
}

/// A finite number.
pub fn parse_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// A finite number written with a decimal comma (`12,50`); a point is refused, as it would be a
/// thousands separator (`1.234,5`) that no reading can be sure of.
pub fn parse_decimal_comma(s: &str) -> Option<f64> {
    if s.contains('.') {
        return None;
    }
    match s.find(',') {
        None => parse_float(s),
        Some(_) => parse_float(&s.replacen(',', ".", 1)),
    }
}

/// The parser of floats whose decimal separator is `separator` (`.` or `,`).
pub fn float_parser(separator: &str) -> fn(&str) -> Option<f64> {
    match separator {
        "," => parse_decimal_comma,
        _ => parse_float,
    }
}

pub fn parse_booleans<'a>(
    values: impl IntoIterator<Item = Option<&'a str>>,
) -> Result<Vec<Option<bool>>, usize> {
    parse_each(values, parse_boolean)
}

pub fn parse_boolean(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" | "y" => Some(true),
        "false" | "f" | "0" | "no" | "n" => Some(false),
        _ => None,
    }
}

/// Each value parsed after trimming its surrounding white space; `Err(row)` at the first that does
/// not parse.
pub fn parse_each<'a, T>(
    values: impl IntoIterator<Item = Option<&'a str>>,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<Option<T>>, usize> {
    let values = values.into_iter();
    let mut parsed = Vec::with_capacity(values.size_hint().0);
    for (row, v) in values.enumerate() {
        parsed.push(match v {
            None => None,
            Some(s) => Some(parse(trimmed(s)).ok_or(row)?),
        });
    }
    Ok(parsed)
}

/// `s` without surrounding white space; values that start and end with a visible ASCII character
/// (almost all) are returned as they are without decoding their ends.
pub fn trimmed(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(first), Some(last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whole years, counted the civil way: a birthday not yet reached this year does not count,
    /// and a 29 February birth turns a year older on 1 March of a common year; a missing date
    /// gives no age; the first birth after its date is named by its row.
    #[test]
    fn ages_count_whole_years_and_name_a_birth_after_its_date() {
        let day = |y, m, d| Some(date_to_days(NaiveDate::from_ymd_opt(y, m, d).unwrap()));
        let births = [
            day(2000, 2, 29),
            day(2000, 2, 29),
            day(2000, 2, 29),
            day(1990, 12, 31),
            None,
            day(1990, 1, 1),
        ];
        let at = [
            day(2001, 2, 28),
            day(2001, 3, 1),
            day(2004, 2, 29),
            day(2024, 12, 30),
            day(2024, 1, 1),
            None,
        ];
        assert_eq!(
            ages(&births, &at),
            Ok(vec![Some(0), Some(1), Some(4), Some(33), None, None])
        );
        let mut after = births.to_vec();
        after.extend([day(2020, 6, 2), day(2030, 1, 1)]);
        let mut dates = at.to_vec();
        dates.extend([day(2020, 6, 1), day(2020, 1, 1)]);
        assert_eq!(ages(&after, &dates), Err(6));
    }

    #[test]
    fn a_decimal_comma_reads_as_a_point_does() {
        assert_eq!(parse_decimal_comma("12,50"), Some(12.5));
        assert_eq!(parse_decimal_comma("-0,5"), Some(-0.5));
        assert_eq!(parse_decimal_comma("7"), Some(7.0));
        for bad in ["1.234,5", "12.5", "1,2,3", "1 234,5", ",", "NaN", "inf"] {
            assert_eq!(parse_decimal_comma(bad), None, "{bad}");
        }
        assert_eq!(float_parser(",")("3,25"), Some(3.25));
        assert_eq!(float_parser(".")("3,25"), None);
    }

    #[test]
    fn partial_dates_are_the_first_day_of_their_period() {
        let day = |y, m, d| date_to_days(NaiveDate::from_ymd_opt(y, m, d).unwrap());
        assert_eq!(parse_year("2019"), Some(day(2019, 1, 1)));
        assert_eq!(parse_year("0001"), Some(day(1, 1, 1)));
        assert_eq!(parse_year_month("201902"), Some(day(2019, 2, 1)));
        assert_eq!(parse_year_month("2019-12"), Some(day(2019, 12, 1)));
        assert_eq!(parse_year_month("2000-02"), Some(day(2000, 2, 1)));
        for bad in [
            "19",
            "20190",
            "2019-1",
            "201913",
            "201900",
            "2019/02",
            "２０１９",
            "-201",
        ] {
            assert_eq!(parse_year(bad), None, "{bad}");
            assert_eq!(parse_year_month(bad), None, "{bad}");
        }
    }

    /// Every key gets what `f` gives it, and `f` is asked exactly at the first key of each run.
    #[test]
    fn runs_ask_once_and_repeat_the_result() {
        let keys = [
            Some(3),
            Some(3),
            None,
            None,
            Some(3),
            Some(1),
            Some(1),
            Some(1),
            None,
        ];
        let mut asked = Vec::new();
        let mut out = Vec::new();
        let Ok(()) = extend_by_run(&mut out, keys, |i, key| {
            asked.push(i);
            Ok::<_, std::convert::Infallible>(key.map_or(-1, |k| k * 10))
        });
        let expected: Vec<i32> = keys.iter().map(|k| k.map_or(-1, |k| k * 10)).collect();
        assert_eq!(out, expected);
        assert_eq!(asked, [0, 2, 4, 5, 8]);
    }

    #[test]
    fn calendar_bounds_are_chronos() {
        assert_eq!(date_to_days(NaiveDate::MIN), FIRST_DAY);
        assert_eq!(date_to_days(NaiveDate::MAX), LAST_DAY);
        for d in [
            FIRST_DAY - 1,
            FIRST_DAY,
            0,
            LAST_DAY,
            LAST_DAY + 1,
            i32::MIN,
            i32::MAX,
        ] {
            let chrono_has = d
                .checked_add(UNIX_EPOCH_FROM_CE)
                .and_then(NaiveDate::from_num_days_from_ce_opt)
                .is_some();
            assert_eq!(day_in_range(d), chrono_has, "day {d}");
        }
    }

    /// Every `YYYY-MM-DD` text with months 00–13 and days 00–32, in leap and common years of every
    /// kind (and the ends of the four-digit range), parses as chrono's checked constructor says.
    #[test]
    fn iso_date_parsing_matches_chrono() {
        let years = [
            0, 1, 4, 100, 400, 1582, 1900, 1969, 1970, 1999, 2000, 2023, 2024, 2100, 9999,
        ];
        for year in years.into_iter().chain(1890..2040) {
            for month in 0..=13 {
                for day in 0..=32 {
                    let text = format!("{year:04}-{month:02}-{day:02}");
                    let expected = NaiveDate::from_ymd_opt(year, month, day).map(date_to_days);
                    assert_eq!(parse_date(&text, "%Y-%m-%d"), expected, "{text}");
                }
            }
        }
        for bad in [
            "2024-1-01",
            "2024/01/01",
            "2024-01-0a",
            " 2024-01-01",
            "+024-01-01",
            "",
        ] {
            assert_eq!(parse_date(bad, "%Y-%m-%d"), None, "{bad:?}");
        }
    }

    #[test]
    fn iso_dates_match_chrono_across_the_calendar() {
        // Every day from year 0 to 2400, and far dates chrono formats itself.
        let first = date_to_days(NaiveDate::from_ymd_opt(0, 1, 1).unwrap());
        let last = date_to_days(NaiveDate::from_ymd_opt(2400, 12, 31).unwrap());
        let mut buf = String::new();
        for d in first..=last {
            iso_date_into(d, &mut buf);
            assert_eq!(buf, days_to_date(d).format("%Y-%m-%d").to_string(), "{d}");
        }
        let far = date_to_days(NaiveDate::from_ymd_opt(12_000, 3, 1).unwrap());
        iso_date_into(far, &mut buf);
        assert_eq!(buf, "+12000-03-01");
    }

    #[test]
    fn dates_parse_in_any_format_and_report_the_failing_row() {
        let v = [
            Some("1970-01-01"),
            None,
            Some("2024-02-29"),
            Some(" 1969-12-31 "),
        ];
        assert_eq!(
            parse_dates(v, "%Y-%m-%d"),
            Ok(vec![Some(0), None, Some(19782), Some(-1)])
        );
        assert_eq!(
            parse_dates([Some("29/02/2024")], "%d/%m/%Y"),
            Ok(vec![Some(19782)])
        );
        assert_eq!(
            parse_dates([Some("2024-01-01"), Some("2023-02-29")], "%Y-%m-%d"),
            Err(1)
        );
        assert_eq!(parse_dates([Some("2024-1-01")], "%Y-%m-%d"), Err(0));
        assert_eq!(parse_dates([Some("01/13/2024")], "%d/%m/%Y"), Err(0));
        // The fast ISO path agrees with chrono's general parser on every day of several years.
        let mut d = NaiveDate::from_ymd_opt(1899, 12, 25).unwrap();
        while d.year() < 2031 {
            let text = d.format("%Y-%m-%d").to_string();
            assert_eq!(parse_iso_date(&text), Some(date_to_days(d)));
            assert_eq!(days_to_date(date_to_days(d)), d);
            d = d.succ_opt().unwrap();
        }
    }

    #[test]
    fn datetimes_parse_to_microseconds_and_days() {
        let v = [
            Some("1970-01-02 00:00:01"),
            None,
            Some("1969-12-31 23:59:59"),
        ];
        let parsed = parse_datetimes(v, "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(
            parsed,
            vec![Some(MICROS_PER_DAY + 1_000_000), None, Some(-1_000_000)]
        );
        assert_eq!(datetime_day(parsed[2].unwrap()), -1);
        assert_eq!(datetime_day(parsed[0].unwrap()), 1);
        assert_eq!(
            parse_datetimes([Some("2024-02-30 10:00:00")], "%Y-%m-%d %H:%M:%S"),
            Err(0)
        );
        assert_eq!(
            parse_datetimes([Some("02/01/2024 10:00")], "%d/%m/%Y %H:%M").unwrap()[0]
                .map(datetime_day),
            Some(19724)
        );
    }

    /// Offsets keep the instant: the two readings of 02:30 in the night daylight saving time ends
    /// in Paris (2024-10-27, CEST then CET) are an hour apart in UTC, and equal to the same
    /// instants written in UTC. A leap second is refused, never rolled into the next minute.
    #[test]
    fn datetimes_with_offsets_keep_their_instant() {
        let format = "%Y-%m-%d %H:%M:%S%:z";
        let utc = "%Y-%m-%d %H:%M:%S";
        let summer = parse_datetime("2024-10-27 02:30:00+02:00", format).unwrap();
        let winter = parse_datetime("2024-10-27 02:30:00+01:00", format).unwrap();
        assert_eq!(winter - summer, 3_600_000_000);
        assert_eq!(parse_datetime("2024-10-27 00:30:00", utc), Some(summer));
        assert_eq!(parse_datetime("2024-10-27 01:30:00", utc), Some(winter));
        // 1704067200 s is 2024-01-01T00:00:00Z (date -u -d @1704067200).
        assert_eq!(
            parse_datetime("2023-12-31 23:00:00-01:00", format),
            Some(1_704_067_200_000_000)
        );
        assert_eq!(parse_datetime("2016-12-31 23:59:60", utc), None);
        assert_eq!(parse_datetime("2016-12-31 23:59:60+00:00", format), None);
        assert_eq!(parse_datetime("2024-01-01 24:00:00", utc), None);
        // Without an offset in the format, a value with one does not parse.
        assert_eq!(parse_datetime("2024-01-01 10:00:00+02:00", utc), None);
    }

    /// Any instant written with any offset (whole and half hours, east and west) reads back as
    /// that instant: around the daylight saving changes of 2024 in Europe, hour by hour.
    #[test]
    fn any_offset_reads_back_the_same_instant() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(8);
        let format = "%Y-%m-%dT%H:%M:%S%:z";
        // 2024-03-31T01:00:00Z and 2024-10-27T01:00:00Z: the changes in the EU.
        for change in [1_711_846_800i64, 1_729_990_800] {
            for hour in -48..48 {
                let instant = change + hour * 3600 + rng.random_range(0..3600);
                let offset_minutes = rng.random_range(-24..=28) * 30;
                let offset = chrono::FixedOffset::east_opt(offset_minutes * 60).unwrap();
                let written = chrono::DateTime::from_timestamp(instant, 0)
                    .unwrap()
                    .with_timezone(&offset)
                    .format(format)
                    .to_string();
                assert_eq!(
                    parse_datetime(&written, format),
                    Some(instant * 1_000_000),
                    "{written}"
                );
            }
        }
    }

    #[test]
    fn trimming_matches_str_trim() {
        let cases = [
            "",
            " ",
            "42",
            " 42",
            "42 ",
            "\t42\r",
            "\u{a0}42",
            "42\u{2003}",
            "é",
            " é ",
            "a b",
            "-",
            "\u{85}x",
            "x\u{3000}",
        ];
        for s in cases {
            assert_eq!(trimmed(s), s.trim(), "{s:?}");
        }
    }

    #[test]
    fn numbers_and_booleans() {
        assert_eq!(
            parse_integers([Some(" 42"), Some("-7"), None]),
            Ok(vec![Some(42), Some(-7), None])
        );
        assert_eq!(parse_integers([Some("4.2")]), Err(0));
        assert_eq!(
            parse_floats([Some("4.5"), Some("1e3")]),
            Ok(vec![Some(4.5), Some(1000.0)])
        );
        assert_eq!(parse_floats([Some("1,5")]), Err(0));
        assert_eq!(parse_floats([Some("NaN")]), Err(0));
        assert_eq!(
            parse_booleans([Some("Yes"), Some("0")]),
            Ok(vec![Some(true), Some(false)])
        );
        assert_eq!(parse_booleans([Some("maybe")]), Err(0));
    }
}
