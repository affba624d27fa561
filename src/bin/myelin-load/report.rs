//! What a scenario reports: counts, errors by kind, latency percentiles, and scenario-specific
//! extras, written as one JSON line on stdout and as a row of the closing table on stderr.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Failures of a scenario, by kind: an errcode (`M_FORBIDDEN`), `http_<status>` when the
/// server sent none, or a transport kind (`timeout`, `connect`, `fd_limit`, …).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Errors(pub BTreeMap<String, u64>);

impl Errors {
    /// Counts one failure of `kind`.
    pub fn add(&mut self, kind: &str) {
        *self.0.entry(kind.to_owned()).or_insert(0) += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Errors) {
        for (kind, n) in &other.0 {
            *self.0.entry(kind.clone()).or_insert(0) += n;
        }
    }

    /// The counts as a JSON object.
    pub fn to_json(&self) -> Value {
        Value::Object(self.0.iter().map(|(k, n)| (k.clone(), json!(n))).collect())
    }

    /// A short form for the table, e.g. `M_FORBIDDEN:2 timeout:1`, or `-` when empty.
    fn short(&self) -> String {
        if self.0.is_empty() {
            return "-".into();
        }
        let parts: Vec<String> = self.0.iter().map(|(k, n)| format!("{k}:{n}")).collect();
        parts.join(" ")
    }
}

/// The `p`-th percentile (0 < p <= 100) of `sorted` by the nearest-rank method: the smallest
/// value with at least `p`% of the values at or below it. `None` for no values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// The percentiles of `samples_ms` (in any order); `None` for no samples. NaNs sort last.
    pub fn of(samples_ms: &[f64]) -> Option<Percentiles> {
        let mut sorted = samples_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Percentiles {
            p50: percentile(&sorted, 50.0)?,
            p95: percentile(&sorted, 95.0)?,
            p99: percentile(&sorted, 99.0)?,
            max: *sorted.last()?,
        })
    }
}

/// The outcome of one scenario.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// Operations that succeeded (registrations, joins, messages, rounds, syncs, clients).
    pub count: u64,
    /// Operations that failed, by kind.
    pub errors: Errors,
    /// Wall time of the measured part.
    pub seconds: f64,
    /// One latency per successful operation, in milliseconds.
    pub latencies_ms: Vec<f64>,
    /// Scenario-specific fields, appended to the JSON line in this order.
    pub extra: Vec<(String, Value)>,
    /// Why the scenario did not run, when it did not.
    pub skipped: Option<String>,
}

impl Report {
    /// An empty report for `scenario`.
    pub fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.to_owned(),
            ..Report::default()
        }
    }

    /// A report saying `scenario` did not run, and why; `errors` are the failures that
    /// stopped it (e.g. of its unmeasured set-up).
    pub fn skipped(scenario: &str, reason: impl Into<String>, errors: Errors) -> Report {
        Report {
            skipped: Some(reason.into()),
            errors,
            ..Report::new(scenario)
        }
    }

    /// Appends an extra field.
    pub fn extra(&mut self, key: &str, value: impl Into<Value>) {
        self.extra.push((key.to_owned(), value.into()));
    }

    /// Successful operations per second; 0 when nothing was timed.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.count as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The report as one line of JSON (no newline), keys in a fixed order:
    /// `scenario, count, errors, seconds, rate, latency_ms`, then `skipped` and the extras.
    /// Latency fields are `null` when there are no samples.
    pub fn json_line(&self) -> String {
        let latency = match Percentiles::of(&self.latencies_ms) {
            Some(p) => ordered(&[
                ("p50", json!(round(p.p50, 3)).to_string()),
                ("p95", json!(round(p.p95, 3)).to_string()),
                ("p99", json!(round(p.p99, 3)).to_string()),
                ("max", json!(round(p.max, 3)).to_string()),
            ]),
            None => ordered(&[
                ("p50", "null".into()),
                ("p95", "null".into()),
                ("p99", "null".into()),
                ("max", "null".into()),
            ]),
        };
        let mut fields: Vec<(&str, String)> = vec![
            ("scenario", json!(self.scenario).to_string()),
            ("count", self.count.to_string()),
            ("errors", self.errors.to_json().to_string()),
            ("seconds", json!(round(self.seconds, 3)).to_string()),
            ("rate", json!(round(self.rate(), 1)).to_string()),
            ("latency_ms", latency),
        ];
        if let Some(reason) = &self.skipped {
            fields.push(("skipped", json!(reason).to_string()));
        }
        fields.extend(self.extra.iter().map(|(k, v)| (k.as_str(), v.to_string())));
        ordered(&fields)
    }
}

/// A JSON object of already serialized values, keys in the given order. serde_json's `Map`
/// sorts its keys, hence this; keys still go through serde_json for escaping.
fn ordered(fields: &[(&str, String)]) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:{value}", json!(key));
    }
    out.push('}');
    out
}

/// Rounds `x` to `digits` decimals; non-finite values become 0.
pub fn round(x: f64, digits: i32) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// The closing human-readable table of all reports.
pub fn table(reports: &[Report]) -> String {
    let mut out = format!(
        "{:<13} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  errors\n",
        "scenario", "count", "seconds", "rate/s", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for r in reports {
        let ms = |f: fn(&Percentiles) -> f64| match Percentiles::of(&r.latencies_ms) {
            Some(p) => format!("{:.1}", f(&p)),
            None => "-".into(),
        };
        let errors = match &r.skipped {
            Some(reason) => format!("{} (skipped: {reason})", r.errors.short()),
            None => r.errors.short(),
        };
        let _ = writeln!(
            out,
            "{:<13} {:>7} {:>9.2} {:>9.1} {:>9} {:>9} {:>9} {:>9}  {}",
            r.scenario,
            r.count,
            r.seconds,
            r.rate(),
            ms(|p| p.p50),
            ms(|p| p.p95),
            ms(|p| p.p99),
            ms(|p| p.max),
            errors
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0], 50.0), Some(1.0));
        assert_eq!(percentile(&[1.0, 2.0], 51.0), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
        // A tiny p still picks the first value, never index -1.
        assert_eq!(percentile(&[3.0, 4.0], 0.0), Some(3.0));
    }

    #[test]
    fn percentiles_sort_their_input() {
        let p = Percentiles::of(&[5.0, 1.0, 4.0, 2.0, 3.0]).unwrap();
        assert_eq!((p.p50, p.p95, p.p99, p.max), (3.0, 5.0, 5.0, 5.0));
        assert_eq!(Percentiles::of(&[]), None);
    }

    #[test]
    fn json_line_has_fixed_key_order_and_extras() {
        let mut r = Report::new("send");
        r.count = 4;
        r.seconds = 2.0;
        r.latencies_ms = vec![1.0, 2.0, 3.0, 4.0];
        r.errors.add("M_LIMIT_EXCEEDED");
        r.errors.add("timeout");
        r.errors.add("M_LIMIT_EXCEEDED");
        r.extra("rss_kib", 1024);
        r.extra("note", "a \"quoted\" note");
        assert_eq!(
            r.json_line(),
            concat!(
                r#"{"scenario":"send","count":4,"errors":{"M_LIMIT_EXCEEDED":2,"timeout":1},"#,
                r#""seconds":2.0,"rate":2.0,"latency_ms":{"p50":2.0,"p95":4.0,"p99":4.0,"max":4.0},"#,
                r#""rss_kib":1024,"note":"a \"quoted\" note"}"#
            )
        );
        let parsed: Value = serde_json::from_str(&r.json_line()).unwrap();
        assert_eq!(parsed["errors"]["M_LIMIT_EXCEEDED"], 2);
    }

    #[test]
    fn json_line_of_a_skipped_scenario() {
        let mut errors = Errors::default();
        errors.add("M_UNRECOGNIZED");
        let r = Report::skipped("initial_sync", "no sync", errors);
        let v: Value = serde_json::from_str(&r.json_line()).unwrap();
        assert_eq!(v["count"], 0);
        assert_eq!(v["rate"], 0.0);
        assert_eq!(v["latency_ms"]["p50"], Value::Null);
        assert_eq!(v["skipped"], "no sync");
        assert_eq!(v["errors"]["M_UNRECOGNIZED"], 1);
        assert!(r
            .json_line()
            .starts_with(r#"{"scenario":"initial_sync","count":0,"#));
    }

    #[test]
    fn rounding_and_table() {
        assert_eq!(round(1.23456, 3), 1.235);
        assert_eq!(round(f64::NAN, 3), 0.0);
        let mut r = Report::new("register");
        r.count = 10;
        r.seconds = 0.5;
        r.latencies_ms = vec![10.0; 10];
        let t = table(&[r, Report::skipped("send", "no room", Errors::default())]);
        assert!(t.contains("register"), "{t}");
        assert!(t.contains("20.0"), "{t}");
        assert!(t.contains("(skipped: no room)"), "{t}");
    }

    #[test]
    fn errors_merge() {
        let mut a = Errors::default();
        a.add("x");
        let mut b = Errors::default();
        b.add("x");
        b.add("y");
        a.merge(&b);
        assert_eq!(a.0.len(), 2);
        assert_eq!(a.0["x"], 2);
    }
}
