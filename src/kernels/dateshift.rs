//! Keyed per-person date shifting: every date of one person, in every table, moves by the same number
//! of days, drawn from the permit's range (never 0) and derived from the secret key and the person's
//! normalised identifier. Intervals within a person (length of stay, time to event, age at an event
//! when the birth date is shifted too) stay exact, while real dates are hidden.
//!
//! The shift is HMAC-SHA-256 under the shift domain's key of `"ehds-prep date shift v1\0" || id`;
//! its first 8 bytes, as a big-endian integer modulo the number of allowed shifts, pick the shift.
//! It depends on nothing else: not on row order, not on which tables are in the run.

use crate::kernels::hmac::HmacKey;

const MESSAGE_PREFIX: &[u8] = b"ehds-prep date shift v1\x00";

pub struct DateShifter {
    key: HmacKey,
    min_days: i32,
    max_days: i32,
}

impl DateShifter {
    /// `min_days..=max_days` without 0; the range must hold at least one non-zero shift.
    pub fn new(domain_key: &[u8], min_days: i32, max_days: i32) -> DateShifter {
        assert!(
            min_days <= max_days && (min_days, max_days) != (0, 0),
            "validated range"
        );
        DateShifter {
            key: HmacKey::new(domain_key),
            min_days,
            max_days,
        }
    }

    fn choices(&self) -> u64 {
        let n = (self.max_days as i64 - self.min_days as i64 + 1) as u64;
        if self.min_days <= 0 && 0 <= self.max_days {
            n - 1
        } else {
            n
        }
    }

    /// The shift in days of the person with this normalised identifier. `message` is a buffer reused
    /// from call to call, so that shifting a column allocates nothing per value.
    pub fn shift(&self, person: &str, message: &mut Vec<u8>) -> i32 {
        message.clear();
        message.extend_from_slice(MESSAGE_PREFIX);
        message.extend_from_slice(person.as_bytes());
        let digest = self.key.mac(message);
        let draw = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        // The modulo bias is below choices / 2^64: negligible for ranges of days.
        let mut shift = self.min_days as i64 + (draw % self.choices()) as i64;
        if self.min_days <= 0 && shift >= 0 {
            shift += 1; // skip 0
        }
        shift as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_stay_in_range_are_never_zero_and_look_uniform() {
        let s = DateShifter::new(&[7u8; 32], -180, 180);
        let mut counts = vec![0u32; 361];
        let people = 361 * 200;
        for i in 0..people {
            let shift = s.shift(&format!("P{i:08}"), &mut Vec::new());
            assert!((-180..=180).contains(&shift) && shift != 0, "{shift}");
            counts[(shift + 180) as usize] += 1;
        }
        assert_eq!(counts[180], 0);
        // Chi-square over the 360 allowed shifts: 359 degrees of freedom, 99.9th percentile ≈ 450.
        let expected = people as f64 / 360.0;
        let chi2: f64 = counts
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != 180)
            .map(|(_, &c)| (c as f64 - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 450.0, "chi-square {chi2}");
    }

    #[test]
    fn one_sided_ranges_and_keys() {
        let s = DateShifter::new(&[1u8; 32], 5, 9);
        assert!((0..1000).all(|i| (5..=9).contains(&s.shift(&i.to_string(), &mut Vec::new()))));
        let neg = DateShifter::new(&[1u8; 32], -3, 0);
        assert!((0..1000).all(|i| (-3..=-1).contains(&neg.shift(&i.to_string(), &mut Vec::new()))));
        let other = DateShifter::new(&[2u8; 32], 5, 9);
        assert!((0..100).any(|i| s.shift(&i.to_string(), &mut Vec::new())
            != other.shift(&i.to_string(), &mut Vec::new())));
        assert_eq!(
            s.shift("X", &mut Vec::new()),
            DateShifter::new(&[1u8; 32], 5, 9).shift("X", &mut Vec::new())
        );
    }
}
