//! Quantity names from the keys payloads carry, and the rule that keeps two keys of one
//! message from silently merging into one field.
//!
//! Names are snake_case: that folds `Temperature` and `temperature`, `PM2.5` and `PM2_5` into
//! one name on purpose (firmware versions differ in spelling). Within one message, though, a
//! second key that folds onto a name already taken is skipped and counted (`duplicate_key`),
//! and a key with nothing to name a field by (`""`, `"#"`) is skipped and counted
//! (`invalid_key`). Letters and digits outside ASCII are kept (line protocol field keys are
//! UTF-8), so `"ä"` and `"温度"` stay apart from each other and from `"_"`.

use std::collections::HashSet;

/// Keys of one message that did not become fields.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KeySkips {
    /// Keys with no letter or digit.
    pub invalid: u32,
    /// Keys whose name another key of the same object (or flattened document) took first.
    pub duplicate: u32,
}

impl KeySkips {
    pub fn is_empty(&self) -> bool {
        self.invalid == 0 && self.duplicate == 0
    }
}

/// Names handed out within one scope (a flattened JSON document, a Tasmota sensor, a
/// line-protocol point).
#[derive(Default)]
pub(super) struct Claims {
    taken: HashSet<String>,
}

impl Claims {
    /// `name` if it is usable and still free in this scope; otherwise counts why not.
    pub(super) fn claim(&mut self, name: String, skips: &mut KeySkips) -> Option<String> {
        if name.is_empty() {
            skips.invalid += 1;
            return None;
        }
        if !self.taken.insert(name.clone()) {
            skips.duplicate += 1;
            return None;
        }
        Some(name)
    }
}

/// A quantity name from a vendor key: known names mapped to ours, others made snake_case.
/// Empty when the key has no letter or digit.
pub fn quantity_name(key: &str) -> String {
    let known = match key {
        "PM1" | "PM1.0" => "pm1_0",
        "PM2.5" => "pm2_5",
        "PM10" => "pm10",
        "CF1" => "pm1_0_cf1",
        "CF2.5" => "pm2_5_cf1",
        "CF10" => "pm10_cf1",
        "CarbonDioxide" | "CO2" | "eCO2" => "co2",
        "Temperature" => "temperature",
        "Humidity" => "humidity",
        "Pressure" => "pressure",
        "DewPoint" => "dew_point",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    let mut out = String::with_capacity(key.len());
    let mut prev_lower = false;
    for c in key.chars() {
        if c.is_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_lowercase() || c.is_numeric();
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_letters_beyond_ascii() {
        assert_eq!(quantity_name("PM2.5"), "pm2_5");
        assert_eq!(quantity_name("IlluminanceLux"), "illuminance_lux");
        assert_eq!(quantity_name("ä"), "ä");
        assert_eq!(quantity_name("Ölstand"), "ölstand");
        assert_eq!(quantity_name("温度"), "温度");
        assert_eq!(quantity_name("ÄußereTemp"), "äußere_temp");
        for empty in ["", "#", "_", " . ", "🍭"] {
            assert_eq!(quantity_name(empty), "", "{empty:?}");
        }
    }

    #[test]
    fn claims_refuse_empty_and_taken_names() {
        let mut claims = Claims::default();
        let mut skips = KeySkips::default();
        let names = ["a", "", "b", "a", "ä", ""];
        let got: Vec<_> = names
            .iter()
            .filter_map(|n| claims.claim(n.to_string(), &mut skips))
            .collect();
        assert_eq!(got, ["a", "b", "ä"]);
        assert_eq!(
            skips,
            KeySkips {
                invalid: 2,
                duplicate: 1
            }
        );
    }
}
