//! Serde helpers that store a `Vec<f64>` as decimal strings.
//!
//! serde_json's default float parser may be off by one unit in the last place, so a saved
//! policy would not reload bit-identically. Rust's own `str::parse::<f64>` is correctly rounded
//! and `{:?}` prints the shortest string that parses back exactly, so strings round-trip
//! exactly. Plain JSON numbers are still accepted when reading, for hand-written files.

use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(values: &[f64], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(values.iter().map(|value| format!("{value:?}")))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FloatOrText {
    Text(String),
    Number(f64),
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f64>, D::Error> {
    Vec::<FloatOrText>::deserialize(deserializer)?
        .into_iter()
        .map(|value| match value {
            FloatOrText::Number(number) => Ok(number),
            FloatOrText::Text(text) => text
                .parse::<f64>()
                .map_err(|error| serde::de::Error::custom(format!("`{text}`: {error}"))),
        })
        .collect()
}
