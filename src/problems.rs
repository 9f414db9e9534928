//! What is wrong with a configuration: every problem at once, each naming its dotted
//! field (`camera[1].id: duplicate "front-door"`). Each stage's config module checks its
//! own section into this collector; [`crate::config`] assembles them.

use std::fmt;
use std::time::Duration;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted field path, e.g. `camera[1].id`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Collects problems while a configuration is checked.
#[derive(Debug, Default)]
pub struct Problems {
    list: Vec<Problem>,
}

/// A key as a field path shows it: bare when TOML allows (`A-Za-z0-9_-`), quoted
/// otherwise (`""`, `"a.b"`, `"a b"`), so a made-up key can never read as an empty or a
/// dotted path.
pub fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        toml::Value::String(key.to_owned()).to_string()
    }
}

impl Problems {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.list.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Whether `value` is a name for topics (`[A-Za-z0-9_-]`, 1 to 64 characters); a
    /// problem when it is not.
    pub fn name(&mut self, field: &str, value: &str) -> bool {
        let ok = (1..=64).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            self.add(
                field,
                format!("{value:?} must be 1 to 64 characters of [A-Za-z0-9_-]"),
            );
        }
        ok
    }

    /// `value` when it lies in `lo..=hi`; otherwise a problem and `None`.
    pub fn range(&mut self, field: &str, value: i64, lo: i64, hi: i64) -> Option<i64> {
        if (lo..=hi).contains(&value) {
            Some(value)
        } else {
            self.add(field, format!("{value} is out of range {lo}..={hi}"));
            None
        }
    }

    /// `value` seconds when finite and in `lo..=hi`; otherwise a problem and `None`.
    pub fn seconds(&mut self, field: &str, value: f64, lo: f64, hi: f64) -> Option<Duration> {
        if value.is_finite() && (lo..=hi).contains(&value) {
            Some(Duration::from_secs_f64(value))
        } else {
            self.add(
                field,
                format!("{value} must be between {lo} and {hi} seconds"),
            );
            None
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_kept_with_its_field() {
        let mut p = Problems::default();
        assert_eq!(p.range("mqtt.qos", 1, 0, 2), Some(1));
        assert_eq!(p.range("mqtt.qos", 7, 0, 2), None);
        assert_eq!(
            p.seconds("camera[0].stall_timeout_s", 0.1, 0.5, 600.0),
            None
        );
        assert!(p.seconds("x", f64::NAN, 0.0, 1.0).is_none());
        let got: Vec<String> = p.into_vec().iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "mqtt.qos: 7 is out of range 0..=2",
                "camera[0].stall_timeout_s: 0.1 must be between 0.5 and 600 seconds",
                "x: NaN must be between 0 and 1 seconds",
            ]
        );
    }
}
