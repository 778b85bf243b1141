//! Masking and redaction of text values: keep the first or last N characters and mask the rest, or
//! replace every value by a constant, or blank it. Characters, not bytes: an accented name keeps its
//! length in characters. Plain Rust over slices; no polars types.

/// How a text column is masked.
#[derive(Debug, Clone, PartialEq)]
pub enum MaskRule {
    /// Keep the first `first` and last `last` characters, replace the others by `with`.
    Mask {
        first: usize,
        last: usize,
        with: char,
    },
    /// Every non-null value becomes this constant.
    Replace(String),
    /// Every value becomes null.
    Blank,
}

impl MaskRule {
    /// Masks one value. Nulls stay null; an empty value stays empty (except under `Replace`).
    pub fn apply(&self, value: Option<&str>) -> Option<String> {
        let value = value?;
        match self {
            MaskRule::Blank => None,
            MaskRule::Replace(constant) => Some(constant.clone()),
            MaskRule::Mask { first, last, with } => {
                let n = value.chars().count();
                Some(
                    value
                        .chars()
                        .enumerate()
                        .map(|(i, c)| {
                            if i < *first || i + *last >= n {
                                c
                            } else {
                                *with
                            }
                        })
                        .collect(),
                )
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            MaskRule::Mask { first, last, with } => {
                format!("masked with `{with}` but the first {first} and last {last} characters")
            }
            MaskRule::Replace(_) => "replaced by a constant".into(),
            MaskRule::Blank => "blanked".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_masks_count_characters() {
        let keep2 = MaskRule::Mask {
            first: 2,
            last: 0,
            with: '*',
        };
        let last4 = MaskRule::Mask {
            first: 0,
            last: 4,
            with: '#',
        };
        let both = MaskRule::Mask {
            first: 1,
            last: 1,
            with: '•',
        };
        let cases: [(&MaskRule, Option<&str>, Option<&str>); 12] = [
            (&keep2, Some("Hélène"), Some("Hé****")),
            (&keep2, Some("Zoé"), Some("Zo*")),
            (&keep2, Some("Z"), Some("Z")),
            (&keep2, Some(""), Some("")),
            (&keep2, None, None),
            (&last4, Some("0612345678"), Some("######5678")),
            (&last4, Some("Müller"), Some("##ller")),
            (&last4, Some("abc"), Some("abc")),
            (&both, Some("François"), Some("F••••••s")),
            (&both, Some("日本語"), Some("日•語")),
            (
                &MaskRule::Replace("REDACTED".into()),
                Some("Noël"),
                Some("REDACTED"),
            ),
            (&MaskRule::Blank, Some("Noël"), None),
        ];
        for (rule, input, expected) in cases {
            assert_eq!(
                rule.apply(input).as_deref(),
                expected,
                "{rule:?} on {input:?}"
            );
        }
        assert_eq!(MaskRule::Replace("X".into()).apply(None), None);
    }
}
