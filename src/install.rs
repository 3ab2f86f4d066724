//! Where the set-up installs things, and which versions: read from `scripts/versions.env`, the
//! file the set-up scripts source, so that the scripts and the binary cannot disagree.

use std::path::PathBuf;

const VERSIONS: &str = include_str!("../scripts/versions.env");

/// A value of `scripts/versions.env`.
fn pinned(key: &str) -> &'static str {
    VERSIONS
        .lines()
        .filter_map(|line| line.split_once('='))
        .find(|(name, _)| name.trim() == key)
        .map(|(_, value)| value.trim())
        .unwrap_or_else(|| panic!("scripts/versions.env has no {key} (it is compiled in: a build bug)"))
}

/// The ONNX Runtime release the set-up installs.
pub fn onnxruntime_version() -> &'static str {
    pinned("ORT_VERSION")
}

/// The Apache Kafka release the set-up fetches.
pub fn kafka_version() -> &'static str {
    pinned("KAFKA_VERSION")
}

/// Where tidal's set-up installs things: `$TIDAL_HOME`, else `~/.cache/tidal`.
pub fn tidal_home() -> PathBuf {
    if let Some(home) = std::env::var_os("TIDAL_HOME") {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    user_home.join(pinned("TIDAL_HOME_DEFAULT"))
}

/// The ONNX Runtime library the set-up installs.
pub fn onnxruntime_library() -> PathBuf {
    tidal_home().join(format!("onnxruntime-{}", onnxruntime_version())).join("libonnxruntime.so")
}

/// The folder of Kafka's jars the set-up fetches.
pub fn kafka_libs() -> PathBuf {
    tidal_home().join(format!("kafka-{}", kafka_version())).join("libs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pinned_value_is_present_and_looks_like_one() {
        for version in [onnxruntime_version(), kafka_version()] {
            assert!(
                version.split('.').count() == 3 && version.split('.').all(|p| p.parse::<u32>().is_ok()),
                "{version}"
            );
        }
        assert!(onnxruntime_library().ends_with(format!("onnxruntime-{}/libonnxruntime.so", onnxruntime_version())));
    }
}
