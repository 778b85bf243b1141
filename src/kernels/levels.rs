//! The built-in generalisation levels of a quasi-identifier, as a permit writes them (`year`,
//! `"10 years"`, `"width 5"`, `"ranges 18 65"`, `"prefix 2"`, `"icd10 chapter"`, `departement`…):
//! parsing a rule and the label of a value under it. Errors say what a value is not, never the
//! value.

use chrono::Datelike;

use crate::kernels::values::days_to_date;

/// The label of a suppressed value and of every hierarchy's top level.
pub const TOP: &str = "*";

/// One level of a rule-based hierarchy, as written in the permit's `levels` list.
#[derive(Debug, Clone, PartialEq)]
pub enum LevelRule {
    /// Dates: ISO week (`2024-W07`), month, quarter, year, or bands of N years.
    Week,
    Month,
    Quarter,
    Year,
    Years(u32),
    /// Numbers: intervals of this width, aligned on `bottom` (or 0).
    Width(f64),
    /// Numbers: custom cut points (`[lo, hi)` between consecutive points).
    Ranges(Vec<f64>),
    /// Numbers: rounded to the nearest multiple.
    Round(f64),
    /// Strings: the first N characters.
    Prefix(usize),
    /// Strings: the last N characters replaced by `*`.
    MaskRight(usize),
    /// ICD-10 code → 3-character category, → chapter.
    Icd10Category,
    Icd10Chapter,
    /// ATC code → its first N characters (ATC levels are 1, 3, 4, 5 and 7 characters).
    Atc(usize),
    /// French postcode → département (2A/2B for Corsica, three digits overseas).
    Departement,
    /// Everything to `*`.
    Top,
}

impl LevelRule {
    /// Parses `"month"`, `"5 years"`, `"width 10"`, `"ranges 0 18 65"`, `"round 10"`, `"prefix 2"`,
    /// `"mask 3"`, `"icd10 category"`, `"icd10 chapter"`, `"atc 4"`, `"departement"`, `"*"`.
    pub fn parse(text: &str) -> std::result::Result<LevelRule, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let number = |w: &str| {
            w.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("`{w}` in level `{text}` is not a number"))
        };
        let count = |w: &str| {
            w.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("`{w}` in level `{text}` is not a positive whole number"))
        };
        Ok(match words.as_slice() {
            ["week"] => LevelRule::Week,
            ["month"] => LevelRule::Month,
            ["quarter"] => LevelRule::Quarter,
            ["year"] => LevelRule::Year,
            [n, "years"] => LevelRule::Years(count(n)? as u32),
            ["width", w] => {
                let w = number(w)?;
                if w <= 0.0 {
                    return Err(format!("level `{text}`: the width must be positive"));
                }
                LevelRule::Width(w)
            }
            ["ranges", points @ ..] if points.len() >= 2 => {
                let points = points
                    .iter()
                    .map(|p| number(p))
                    .collect::<Result<Vec<_>, _>>()?;
                if points.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(format!("level `{text}`: cut points must increase"));
                }
                LevelRule::Ranges(points)
            }
            ["round", m] => {
                let m = number(m)?;
                if m <= 0.0 {
                    return Err(format!("level `{text}`: the multiple must be positive"));
                }
                LevelRule::Round(m)
            }
            ["prefix", n] => LevelRule::Prefix(count(n)?),
            ["mask", n] => LevelRule::MaskRight(count(n)?),
            ["icd10", "category"] => LevelRule::Icd10Category,
            ["icd10", "chapter"] => LevelRule::Icd10Chapter,
            ["atc", n] => {
                let n = count(n)?;
                if ![1, 3, 4, 5].contains(&n) {
                    return Err(format!(
                        "level `{text}`: ATC levels keep 1, 3, 4 or 5 characters"
                    ));
                }
                LevelRule::Atc(n)
            }
            ["departement"] => LevelRule::Departement,
            ["*"] => LevelRule::Top,
            _ => {
                return Err(format!(
                    "unknown level `{text}`; levels are: week, month, quarter, year, \"N years\", \
                     \"width W\", \"ranges A B ..\", \"round M\", \"prefix N\", \"mask N\", \
                     \"icd10 category\", \"icd10 chapter\", \"atc N\", departement, \"*\""
                ));
            }
        })
    }

    /// The level in words, for reports and manifests.
    pub fn describe(&self) -> String {
        match self {
            LevelRule::Week => "ISO week".into(),
            LevelRule::Month => "month".into(),
            LevelRule::Quarter => "quarter".into(),
            LevelRule::Year => "year".into(),
            LevelRule::Years(n) => format!("{n}-year bands"),
            LevelRule::Width(w) => format!("intervals of {}", fmt_number(*w)),
            LevelRule::Ranges(p) => format!(
                "ranges cut at {}",
                p.iter()
                    .map(|v| fmt_number(*v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            LevelRule::Round(m) => format!("rounded to a multiple of {}", fmt_number(*m)),
            LevelRule::Prefix(n) => format!("first {n} characters"),
            LevelRule::MaskRight(n) => format!("last {n} characters masked"),
            LevelRule::Icd10Category => "ICD-10 category".into(),
            LevelRule::Icd10Chapter => "ICD-10 chapter".into(),
            LevelRule::Atc(n) => format!("ATC code's first {n} characters"),
            LevelRule::Departement => "département".into(),
            LevelRule::Top => "*".into(),
        }
    }

    pub fn applies_to(&self) -> ValueKind {
        match self {
            LevelRule::Week
            | LevelRule::Month
            | LevelRule::Quarter
            | LevelRule::Year
            | LevelRule::Years(_) => ValueKind::Date,
            LevelRule::Width(_) | LevelRule::Ranges(_) | LevelRule::Round(_) => ValueKind::Number,
            LevelRule::Top => ValueKind::Any,
            _ => ValueKind::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Date,
    Number,
    Text,
    Any,
}

/// A value at level 0, as a rule sees it.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// Days since 1970-01-01.
    Date(i32),
    Number(f64),
    Text(&'a str),
}

/// Top- and bottom-coding of numbers: values at or above `top` become `">=top"`, below `bottom`
/// become `"<bottom"`, at every level including level 0.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Coding {
    pub bottom: Option<f64>,
    pub top: Option<f64>,
}

impl Coding {
    /// The coded label of a number outside the coding bounds, if it is.
    pub fn coded(&self, v: f64) -> Option<String> {
        if let Some(t) = self.top
            && v >= t
        {
            return Some(format!(">={}", fmt_number(t)));
        }
        if let Some(b) = self.bottom
            && v < b
        {
            return Some(format!("<{}", fmt_number(b)));
        }
        None
    }
}

pub fn fmt_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A value's label under one rule. Errors say what the value is not (never the value).
pub fn apply(
    rule: &LevelRule,
    value: Value,
    coding: Coding,
) -> std::result::Result<String, String> {
    Ok(match (rule, value) {
        (LevelRule::Top, _) => TOP.into(),
        (LevelRule::Week, Value::Date(d)) => {
            let w = days_to_date(d).iso_week();
            format!("{}-W{:02}", w.year(), w.week())
        }
        (LevelRule::Month, Value::Date(d)) => {
            let d = days_to_date(d);
            format!("{:04}-{:02}", d.year(), d.month())
        }
        (LevelRule::Quarter, Value::Date(d)) => {
            let d = days_to_date(d);
            format!("{:04}-Q{}", d.year(), (d.month() - 1) / 3 + 1)
        }
        (LevelRule::Year, Value::Date(d)) => format!("{:04}", days_to_date(d).year()),
        (LevelRule::Years(n), Value::Date(d)) => {
            let y = days_to_date(d).year();
            let lo = y.div_euclid(*n as i32) * *n as i32;
            format!("{lo:04}-{:04}", lo + *n as i32 - 1)
        }
        (LevelRule::Width(w), Value::Number(v)) => {
            if let Some(c) = coding.coded(v) {
                return Ok(c);
            }
            let base = coding.bottom.unwrap_or(0.0);
            let lo = base + ((v - base) / w).floor() * w;
            let hi = coding.top.map_or(lo + w, |t| (lo + w).min(t));
            interval(lo, hi)
        }
        (LevelRule::Ranges(points), Value::Number(v)) => {
            if let Some(c) = coding.coded(v) {
                return Ok(c);
            }
            match points.iter().position(|&p| v < p) {
                Some(0) => format!("<{}", fmt_number(points[0])),
                Some(i) => interval(points[i - 1], points[i]),
                None => format!(">={}", fmt_number(points[points.len() - 1])),
            }
        }
        (LevelRule::Round(m), Value::Number(v)) => {
            if let Some(c) = coding.coded(v) {
                return Ok(c);
            }
            fmt_number((v / m).round() * m)
        }
        (LevelRule::Prefix(n), Value::Text(s)) => s
            .char_indices()
            .nth(*n)
            .map_or(s, |(end, _)| &s[..end])
            .into(),
        (LevelRule::MaskRight(n), Value::Text(s)) => {
            let len = s.chars().count();
            let kept = len.saturating_sub(*n);
            s.chars()
                .take(kept)
                .chain(std::iter::repeat_n('*', len - kept))
                .collect()
        }
        (LevelRule::Icd10Category, Value::Text(s)) => icd10_category(s)?.into(),
        (LevelRule::Icd10Chapter, Value::Text(s)) => icd10_chapter(icd10_category(s)?)?,
        (LevelRule::Atc(n), Value::Text(s)) => {
            let s = s.trim();
            if s.len() != 7 || !s.is_ascii() {
                return Err("not a 7-character ATC code".into());
            }
            s[..*n].to_string()
        }
        (LevelRule::Departement, Value::Text(s)) => departement(s)?,
        (rule, _) => unreachable!("level {rule:?} checked against the column type"),
    })
}

/// `"lo-hi"` for whole-number bounds (hi exclusive, shown inclusive), `"[lo, hi)"` otherwise.
fn interval(lo: f64, hi: f64) -> String {
    if lo.fract() == 0.0 && hi.fract() == 0.0 {
        format!("{}-{}", fmt_number(lo), fmt_number(hi - 1.0))
    } else {
        format!("[{}, {})", fmt_number(lo), fmt_number(hi))
    }
}

/// The 3-character category of an ICD-10 code written `I21.4`, `I214` or `I21`.
fn icd10_category(code: &str) -> std::result::Result<&str, String> {
    let code = code.trim();
    let b = code.as_bytes();
    if b.len() >= 3 && b[0].is_ascii_uppercase() && b[1].is_ascii_digit() && b[2].is_ascii_digit() {
        Ok(&code[..3])
    } else {
        Err("not an ICD-10 code (a capital letter and two digits first)".into())
    }
}

/// ICD-10 (WHO 2019) chapters by their first and last categories.
const ICD10_CHAPTERS: [(&str, &str); 22] = [
    ("A00", "B99"),
    ("C00", "D48"),
    ("D50", "D89"),
    ("E00", "E90"),
    ("F00", "F99"),
    ("G00", "G99"),
    ("H00", "H59"),
    ("H60", "H95"),
    ("I00", "I99"),
    ("J00", "J99"),
    ("K00", "K93"),
    ("L00", "L99"),
    ("M00", "M99"),
    ("N00", "N99"),
    ("O00", "O99"),
    ("P00", "P96"),
    ("Q00", "Q99"),
    ("R00", "R99"),
    ("S00", "T98"),
    ("V01", "Y98"),
    ("Z00", "Z99"),
    ("U00", "U99"),
];

const ROMAN: [&str; 22] = [
    "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII", "XIII", "XIV", "XV",
    "XVI", "XVII", "XVIII", "XIX", "XX", "XXI", "XXII",
];

fn icd10_chapter(category: &str) -> std::result::Result<String, String> {
    ICD10_CHAPTERS
        .iter()
        .position(|(first, last)| (*first..=*last).contains(&category))
        .map(|i| {
            let (first, last) = ICD10_CHAPTERS[i];
            format!("{} ({first}-{last})", ROMAN[i])
        })
        .ok_or_else(|| "an ICD-10 category outside every chapter".into())
}

/// The département of a French postcode or commune code, or a département code as SNDS and INSEE
/// write it: two characters in metropolitan France (2A/2B in Corsica), three overseas (`974`).
/// Accepted: a 5-digit postcode (`20167` → 2A), an INSEE commune code (`2A004`), a département
/// of two or three characters (`75`, `075`, `02A`, `974`).
fn departement(code: &str) -> std::result::Result<String, String> {
    let c = code.trim().to_ascii_uppercase();
    let refused =
        || Err("not a French postcode, commune code or département (75, 075, 2A, 02A, 974)".into());
    // Every form is ASCII: the slices below are then on character boundaries.
    if !c.is_ascii() {
        return refused();
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let corsica = |s: &str| s == "2A" || s == "2B";
    let metropolitan = |s: &str| {
        corsica(s)
            || (digits(s)
                && s.parse::<u8>()
                    .is_ok_and(|n| (1..=95).contains(&n) && n != 20))
    };
    let overseas =
        |s: &str| s.len() == 3 && digits(s) && (s.starts_with("97") || s.starts_with("98"));
    Ok(match c.len() {
        // A postcode: Corsica's are 20xxx, split at 20200.
        5 if digits(&c) => match &c[..2] {
            "20" if c.as_str() < "20200" => "2A".into(),
            "20" => "2B".into(),
            "97" | "98" => c[..3].into(),
            d => d.into(),
        },
        // A commune code of Corsica.
        5 if corsica(&c[..2]) && digits(&c[2..]) => c[..2].into(),
        2 if metropolitan(&c) => c,
        3 if overseas(&c) => c,
        3 if c.starts_with('0') && metropolitan(&c[1..]) => c[1..].into(),
        _ => return refused(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::values::date_to_days;
    use chrono::NaiveDate;

    fn day(y: i32, m: u32, d: u32) -> Value<'static> {
        Value::Date(date_to_days(NaiveDate::from_ymd_opt(y, m, d).unwrap()))
    }

    fn label(rule: &str, v: Value) -> String {
        apply(&LevelRule::parse(rule).unwrap(), v, Coding::default()).unwrap()
    }

    #[test]
    fn date_levels_follow_the_calendar() {
        assert_eq!(label("month", day(2024, 2, 29)), "2024-02");
        assert_eq!(label("quarter", day(2024, 4, 1)), "2024-Q2");
        assert_eq!(label("quarter", day(2024, 3, 31)), "2024-Q1");
        assert_eq!(label("year", day(1969, 12, 31)), "1969");
        assert_eq!(label("10 years", day(1969, 12, 31)), "1960-1969");
        // ISO weeks: 2021-01-03 is in week 53 of 2020, 2024-12-30 in week 1 of 2025.
        assert_eq!(label("week", day(2021, 1, 3)), "2020-W53");
        assert_eq!(label("week", day(2024, 12, 30)), "2025-W01");
    }

    #[test]
    fn numbers_band_with_top_and_bottom_coding() {
        let coding = Coding {
            bottom: Some(18.0),
            top: Some(90.0),
        };
        let w = |width: &str, v: f64| {
            apply(&LevelRule::parse(width).unwrap(), Value::Number(v), coding).unwrap()
        };
        assert_eq!(w("width 5", 44.0), "43-47"); // aligned on the bottom, 18
        assert_eq!(w("width 5", 17.0), "<18");
        assert_eq!(w("width 5", 90.0), ">=90");
        assert_eq!(w("width 20", 85.0), "78-89"); // truncated at the top code
        assert_eq!(label("width 10", Value::Number(-3.0)), "-10--1");
        assert_eq!(label("width 2.5", Value::Number(3.0)), "[2.5, 5)");
        assert_eq!(label("ranges 18 65", Value::Number(30.0)), "18-64");
        assert_eq!(label("ranges 18 65", Value::Number(65.0)), ">=65");
        assert_eq!(label("ranges 18 65", Value::Number(2.0)), "<18");
        assert_eq!(label("round 10", Value::Number(44.9)), "40");
        assert_eq!(label("round 10", Value::Number(45.0)), "50");
    }

    #[test]
    fn strings_and_codes() {
        assert_eq!(label("prefix 2", Value::Text("75011")), "75");
        assert_eq!(label("mask 2", Value::Text("75011")), "750**");
        assert_eq!(label("mask 9", Value::Text("Évry")), "****");
        assert_eq!(label("icd10 category", Value::Text("I21.4")), "I21");
        assert_eq!(label("icd10 chapter", Value::Text("I214")), "IX (I00-I99)");
        assert_eq!(label("icd10 chapter", Value::Text("D50")), "III (D50-D89)");
        assert_eq!(
            label("icd10 chapter", Value::Text("T98.3")),
            "XIX (S00-T98)"
        );
        assert_eq!(label("atc 4", Value::Text("C09AA05")), "C09A");
        assert_eq!(label("departement", Value::Text("20167")), "2A");
        assert_eq!(label("departement", Value::Text("20200")), "2B");
        assert_eq!(label("departement", Value::Text("97411")), "974");
        assert_eq!(label("departement", Value::Text("75011")), "75");
        let bad = |r: &str, v: &str| {
            apply(
                &LevelRule::parse(r).unwrap(),
                Value::Text(v),
                Coding::default(),
            )
        };
        assert!(bad("icd10 category", "12").is_err());
        assert!(bad("atc 3", "C09").is_err());
        assert!(bad("departement", "7501").is_err());
        // SNDS and INSEE forms: three characters, leading zero; Corsican commune codes.
        for (code, d) in [
            ("075", "75"),
            ("02A", "2A"),
            ("02b", "2B"),
            ("974", "974"),
            ("2A", "2A"),
            ("01", "01"),
            ("2A004", "2A"),
            ("97411", "974"),
        ] {
            assert_eq!(label("departement", Value::Text(code)), d, "{code}");
        }
        for code in [
            "00", "20", "000", "020", "099A", "96", "3A", "2C", "2A0O4", "991",
        ] {
            assert!(bad("departement", code).is_err(), "{code}");
        }
    }

    #[test]
    fn unknown_levels_are_refused_with_the_list() {
        assert!(
            LevelRule::parse("decade")
                .unwrap_err()
                .contains("\"N years\"")
        );
        assert!(LevelRule::parse("width 0").is_err());
        assert!(LevelRule::parse("ranges 5 3").is_err());
        assert!(LevelRule::parse("atc 2").is_err());
    }
}
