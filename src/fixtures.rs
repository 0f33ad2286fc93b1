//! Values the unit tests of several modules build alike: a configuration
//! from YAML text, and a successful observation to adjust.

use std::path::Path;

use crate::probe::Observation;
use crate::settings::Config;

/// `yaml` loaded as `lookout.yaml` is, with no environment variables.
pub fn config(yaml: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path: &Path = &dir.path().join("lookout.yaml");
    std::fs::write(path, yaml).unwrap();
    crate::settings::load_with_env(path, &|_| None).unwrap()
}

/// A successful 1 ms run of `probe` at `t` that read nothing.
pub fn observation(probe: &str, t: f64) -> Observation {
    Observation {
        name: probe.into(),
        kind: "redis".into(),
        ok: true,
        error: None,
        reason: None,
        timestamp: t,
        duration_seconds: 0.001,
        values: Default::default(),
        facts: Default::default(),
        sample_times: Default::default(),
    }
}
