//! One measurement and its JSON line.

use serde_json::Value;

use crate::stats;

/// The outcome of one named measurement, as `compare` prints it.
///
/// # Examples
///
/// ```
/// use ephemeral_benches::report::Measurement;
///
/// let m = Measurement {
///     name: "raise_1t_vs_mutex_vecdeque",
///     unit: "ops/s",
///     ours: Some(3.0e6),
///     baseline: "Mutex<VecDeque<(String, Instant)>>".into(),
///     baseline_value: Some(2.0e6),
///     higher_is_better: true,
///     target: 1.0,
///     same_run: true,
///     note: None,
/// };
/// assert_eq!(m.ratio(), Some(1.5));
/// assert_eq!(
///     m.to_json_line(),
///     r#"{"name":"raise_1t_vs_mutex_vecdeque","unit":"ops/s","ours":3000000.0,"baseline":"Mutex<VecDeque<(String, Instant)>>","baseline_value":2000000.0,"higher_is_better":true,"ratio":1.5,"target":1.0,"same_run":true}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The measurement's name, as in DESIGN §4 (`raise_1t_vs_mutex_vecdeque`, ...).
    pub name: &'static str,
    /// The unit of `ours` and `baseline_value` (`ops/s`, `ns/query`, `us`, `MiB`, ...).
    pub unit: &'static str,
    /// Our value, or `None` when our side does not exist yet or could not be measured.
    pub ours: Option<f64>,
    /// What the baseline is, in words.
    pub baseline: String,
    /// The baseline's value: measured in this run, or a fixed reference (see `same_run`).
    pub baseline_value: Option<f64>,
    /// Whether a higher value is better (a throughput) or a lower one (a latency, a size).
    pub higher_is_better: bool,
    /// The ratio we aim for (`ratio >= target`).
    pub target: f64,
    /// Whether `baseline_value` was measured in this run, alternating turns with ours.
    pub same_run: bool,
    /// Why `ours` is missing, or anything else a reader should know. Printed to stderr, never
    /// into the JSON line.
    pub note: Option<String>,
}

impl Measurement {
    /// The ratio oriented so that `> 1` means ours is better, when both sides have a value.
    #[must_use]
    pub fn ratio(&self) -> Option<f64> {
        stats::ratio(self.ours?, self.baseline_value?, self.higher_is_better)
    }

    /// The JSON line: exactly the fields `name`, `unit`, `ours`, `baseline`, `baseline_value`,
    /// `higher_is_better`, `ratio`, `target`, `same_run`, in that order, with `null` for a
    /// missing number.
    #[must_use]
    pub fn to_json_line(&self) -> String {
        let fields: [(&str, Value); 9] = [
            ("name", Value::from(self.name)),
            ("unit", Value::from(self.unit)),
            ("ours", number(self.ours)),
            ("baseline", Value::from(self.baseline.as_str())),
            ("baseline_value", number(self.baseline_value)),
            ("higher_is_better", Value::from(self.higher_is_better)),
            ("ratio", number(self.ratio().map(round4))),
            ("target", number(Some(self.target))),
            ("same_run", Value::from(self.same_run)),
        ];
        // Written by hand so the field order is the documented one (serde_json's map sorts).
        let body: Vec<String> = fields
            .iter()
            .map(|(key, value)| format!("{}:{}", Value::from(*key), value))
            .collect();
        format!("{{{}}}", body.join(","))
    }
}

/// A finite number as JSON, anything else (missing, NaN, infinite) as `null`.
fn number(value: Option<f64>) -> Value {
    value
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// Four significant decimals are plenty for a ratio and keep the lines readable.
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}
