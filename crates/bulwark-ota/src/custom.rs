//! Bulwark's release fields inside a TUF target's `custom` object.
//!
//! Each target carries, under the `"bulwark"` key:
//!
//! ```json
//! "custom": { "bulwark": { "hardware": ["gw-100", "gw-200"], "version": "1.4.0", "floor": "1.2.0" } }
//! ```
//!
//! `hardware` is a non-empty list of distinct validated model strings;
//! `version` is a semantic version (no build metadata, which semver leaves
//! out of precedence); `floor`, when present, is the lowest version a device
//! that installed this release may ever accept again (anti-rollback), and is
//! not above `version`. Parsing is strict: unknown fields, wrong types or
//! invalid values are refused. Other top-level keys of `custom` belong to
//! other tools and are left alone.

use std::collections::HashMap;
use std::fmt;

use semver::Version;
use serde::Deserialize;
use serde_json::Value;

use crate::error::OtaError;
use crate::name::check_name;

/// The key of Bulwark's object in a target's `custom` map.
pub const CUSTOM_KEY: &str = "bulwark";
/// The longest hardware model string, in bytes.
pub const MAX_MODEL_LEN: usize = 64;
/// The most hardware models one release may list.
pub const MAX_MODELS: usize = 256;

/// A hardware model string (same allow-list as target names, ≤ 64 bytes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HardwareModel(String);

impl HardwareModel {
    pub fn new(s: &str) -> Result<Self, OtaError> {
        check_name(s, MAX_MODEL_LEN).map_err(OtaError::InvalidHardwareModel)?;
        Ok(HardwareModel(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HardwareModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a release says about itself: for which hardware, which version,
/// and which version floor it sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseInfo {
    hardware: Vec<HardwareModel>,
    version: Version,
    floor: Option<Version>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelease {
    hardware: Vec<String>,
    version: String,
    #[serde(default)]
    floor: Option<String>,
}

fn invalid(reason: impl Into<String>) -> OtaError {
    OtaError::InvalidRelease {
        reason: reason.into(),
    }
}

fn parse_version(field: &str, s: &str) -> Result<Version, OtaError> {
    let v = Version::parse(s).map_err(|e| invalid(format!("{field}: {e}")))?;
    if !v.build.is_empty() {
        return Err(invalid(format!("{field}: build metadata is not allowed")));
    }
    Ok(v)
}

impl ReleaseInfo {
    /// Checks the fields together: a non-empty list of distinct models, and
    /// a floor not above the version.
    pub fn new(
        hardware: Vec<HardwareModel>,
        version: Version,
        floor: Option<Version>,
    ) -> Result<Self, OtaError> {
        if hardware.is_empty() {
            return Err(invalid("hardware: empty list"));
        }
        if hardware.len() > MAX_MODELS {
            return Err(invalid("hardware: too many models"));
        }
        let mut sorted: Vec<&HardwareModel> = hardware.iter().collect();
        sorted.sort();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid("hardware: duplicate model"));
        }
        for (field, v) in [("version", Some(&version)), ("floor", floor.as_ref())] {
            if v.is_some_and(|v| !v.build.is_empty()) {
                return Err(invalid(format!("{field}: build metadata is not allowed")));
            }
        }
        if let Some(floor) = &floor {
            if *floor > version {
                return Err(invalid("floor is above version"));
            }
        }
        Ok(ReleaseInfo {
            hardware,
            version,
            floor,
        })
    }

    pub fn hardware(&self) -> &[HardwareModel] {
        &self.hardware
    }

    pub fn version(&self) -> &Version {
        &self.version
    }

    pub fn floor(&self) -> Option<&Version> {
        self.floor.as_ref()
    }

    pub fn supports(&self, model: &HardwareModel) -> bool {
        self.hardware.contains(model)
    }

    /// The JSON object stored under [`CUSTOM_KEY`].
    pub fn to_value(&self) -> Value {
        let mut obj = serde_json::Map::new();
        obj.insert(
            "hardware".into(),
            Value::Array(
                self.hardware
                    .iter()
                    .map(|m| Value::String(m.0.clone()))
                    .collect(),
            ),
        );
        obj.insert("version".into(), Value::String(self.version.to_string()));
        if let Some(floor) = &self.floor {
            obj.insert("floor".into(), Value::String(floor.to_string()));
        }
        Value::Object(obj)
    }

    /// Parses the object stored under [`CUSTOM_KEY`], strictly.
    pub fn from_value(value: &Value) -> Result<Self, OtaError> {
        let raw: RawRelease =
            serde_json::from_value(value.clone()).map_err(|e| invalid(e.to_string()))?;
        let hardware = raw
            .hardware
            .iter()
            .map(|m| HardwareModel::new(m))
            .collect::<Result<Vec<_>, _>>()?;
        let version = parse_version("version", &raw.version)?;
        let floor = raw
            .floor
            .as_deref()
            .map(|f| parse_version("floor", f))
            .transpose()?;
        ReleaseInfo::new(hardware, version, floor)
    }

    /// Finds and parses Bulwark's object in a target's `custom` map.
    pub fn from_custom(custom: &HashMap<String, Value>) -> Result<Self, OtaError> {
        let value = custom
            .get(CUSTOM_KEY)
            .ok_or_else(|| invalid(format!("no \"{CUSTOM_KEY}\" object in custom")))?;
        ReleaseInfo::from_value(value)
    }

    /// A `custom` map holding only Bulwark's object.
    pub fn to_custom(&self) -> HashMap<String, Value> {
        HashMap::from([(CUSTOM_KEY.to_owned(), self.to_value())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model(s: &str) -> HardwareModel {
        HardwareModel::new(s).unwrap()
    }

    #[test]
    fn round_trip() {
        let r = ReleaseInfo::new(
            vec![model("gw-100"), model("gw-200")],
            Version::new(1, 4, 0),
            Some(Version::new(1, 2, 0)),
        )
        .unwrap();
        assert_eq!(ReleaseInfo::from_custom(&r.to_custom()).unwrap(), r);
        assert!(r.supports(&model("gw-200")));
        assert!(!r.supports(&model("gw-300")));
        let no_floor = ReleaseInfo::new(vec![model("a")], Version::new(0, 1, 0), None).unwrap();
        assert_eq!(
            ReleaseInfo::from_value(&no_floor.to_value()).unwrap(),
            no_floor
        );
        assert!(no_floor.to_value().get("floor").is_none());
    }

    #[test]
    fn strict_parsing_refuses_bad_objects() {
        let bad = [
            json!({"hardware": [], "version": "1.0.0"}),
            json!({"hardware": ["a", "a"], "version": "1.0.0"}),
            json!({"hardware": ["../a"], "version": "1.0.0"}),
            json!({"hardware": ["a b"], "version": "1.0.0"}),
            json!({"hardware": "a", "version": "1.0.0"}),
            json!({"hardware": [1], "version": "1.0.0"}),
            json!({"hardware": ["a"], "version": "1.0"}),
            json!({"hardware": ["a"], "version": "v1.0.0"}),
            json!({"hardware": ["a"], "version": "1.0.0+build5"}),
            json!({"hardware": ["a"], "version": 1}),
            json!({"hardware": ["a"]}),
            json!({"version": "1.0.0"}),
            json!({"hardware": ["a"], "version": "1.0.0", "floor": "2.0.0"}),
            json!({"hardware": ["a"], "version": "1.0.0", "floor": null, "x": 1}),
            json!({"hardware": ["a"], "version": "1.0.0", "extra": true}),
            json!(["a"]),
            json!(null),
        ];
        for v in bad {
            match ReleaseInfo::from_value(&v) {
                Err(OtaError::InvalidRelease { .. } | OtaError::InvalidHardwareModel(_)) => {}
                other => panic!("{v}: {other:?}"),
            }
        }
        let missing = HashMap::from([("other".to_owned(), json!({}))]);
        assert!(matches!(
            ReleaseInfo::from_custom(&missing),
            Err(OtaError::InvalidRelease { .. })
        ));
    }

    #[test]
    fn prerelease_versions_order_below_the_release() {
        let v = json!({"hardware": ["a"], "version": "2.0.0-rc.1", "floor": "1.9.0"});
        let r = ReleaseInfo::from_value(&v).unwrap();
        assert!(*r.version() < Version::new(2, 0, 0));
        assert_eq!(r.floor(), Some(&Version::new(1, 9, 0)));
    }
}
