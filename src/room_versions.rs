//! The room versions this server supports and the default for new rooms, as advertised in
//! `/capabilities`. The roomserver builds and checks events by these versions.

use serde_json::{json, Map, Value};

/// Stable room versions, oldest first.
pub const STABLE: &[&str] = &[
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12",
];

/// The version of new rooms unless the config or the request names another (the spec's
/// recommendation).
pub const DEFAULT: &str = "12";

/// The `m.room_versions` capability.
pub fn capability() -> Value {
    let available: Map<String, Value> = STABLE
        .iter()
        .map(|v| (v.to_string(), json!("stable")))
        .collect();
    json!({ "default": DEFAULT, "available": available })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_capability_lists_every_stable_version() {
        let c = super::capability();
        assert_eq!(c["default"], "12");
        let available = c["available"].as_object().unwrap();
        assert_eq!(available.len(), 12);
        for v in 1..=12 {
            assert_eq!(available[&v.to_string()], "stable", "{v}");
        }
    }
}
