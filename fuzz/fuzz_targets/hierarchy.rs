//! Any text as an ARX hierarchy file, and its first line as built-in level rules (`|`-separated)
//! applied to every other line read as a value of the rule's kind: errors, never panics.
#![no_main]

use ehds_prep::kernels::levels::{self, Coding, LevelRule, Value, ValueKind};
use ehds_prep::privacy::hierarchy::Hierarchy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Hierarchy::parse_csv(text, ';', std::path::Path::new("fuzz.csv"));
    let (rules, values) = text.split_once('\n').unwrap_or((text, ""));
    let coding = Coding {
        bottom: Some(10.0),
        top: Some(90.0),
    };
    for rule in rules.split('|').filter_map(|r| LevelRule::parse(r).ok()) {
        let _ = rule.describe();
        // A rule is only applied to values of its kind: the permit's validation guarantees it.
        let kind = rule.applies_to();
        for v in values.lines().take(64) {
            if matches!(kind, ValueKind::Text | ValueKind::Any) {
                let _ = levels::apply(&rule, Value::Text(v), coding);
            }
            if matches!(kind, ValueKind::Number | ValueKind::Any)
                && let Ok(n) = v.parse::<f64>()
            {
                let _ = levels::apply(&rule, Value::Number(n), coding);
            }
            if matches!(kind, ValueKind::Date | ValueKind::Any)
                && let Ok(d) = v.parse::<i32>()
                && ehds_prep::kernels::values::day_in_range(d)
            {
                let _ = levels::apply(&rule, Value::Date(d), coding);
            }
        }
    }
});
