//! Where the broker's jars are, and which version they are.

use std::path::{Path, PathBuf};

use crate::Error;

/// An Apache Kafka distribution as `scripts/kafka-dist` lays it out: `DIR/libs/*.jar`, with
/// `kafka_2.13-VERSION.jar` among them.
#[derive(Debug, Clone)]
pub struct Distribution {
    dir: PathBuf,
    version: String,
}

impl Distribution {
    /// The distribution in `dir`, checked to hold a broker.
    pub fn at(dir: impl AsRef<Path>) -> Result<Distribution, Error> {
        let dir = dir.as_ref();
        let libs = dir.join("libs");
        let unusable = |reason: String| Error::Distribution { dir: dir.to_owned(), reason };
        let entries = std::fs::read_dir(&libs).map_err(|e| unusable(format!("cannot list {}: {e}", libs.display())))?;
        let version = entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .find_map(|name| Some(name.strip_prefix("kafka_2.13-")?.strip_suffix(".jar")?.to_owned()))
            .ok_or_else(|| unusable(format!("{} holds no kafka_2.13 jar", libs.display())))?;
        Ok(Distribution { dir: dir.to_owned(), version })
    }

    /// The pinned distribution of this source tree, fetched first if it is not cached yet (by
    /// `scripts/kafka-dist`). For the tests and benchmarks, which run from a checkout; the
    /// product takes the directory as a setting instead.
    pub fn of_source_tree() -> Result<Distribution, Error> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kafka-dist");
        let output =
            std::process::Command::new(script).stderr(std::process::Stdio::inherit()).output().map_err(Error::io(format!("cannot run {script}")))?;
        let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !output.status.success() || dir.is_empty() {
            return Err(Error::Distribution { dir: dir.into(), reason: format!("{script} failed ({})", output.status) });
        }
        Distribution::at(dir)
    }

    /// The Apache Kafka version, e.g. `4.1.1`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The directory, as `--kafka-dist` takes it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Java class path: every jar of the distribution (a wildcard Java expands itself).
    pub(crate) fn class_path(&self) -> String {
        format!("{}/*", self.dir.join("libs").display())
    }
}

/// The `java` to run: `$JAVA_HOME/bin/java` when set, else the one on the PATH.
pub(crate) fn java() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin/java"))
        .filter(|java| java.exists())
        .unwrap_or_else(|| PathBuf::from("java"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_version_from_the_broker_jar() {
        let dir = std::env::temp_dir().join(format!("local-kafka-dist-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("libs")).unwrap();
        std::fs::write(dir.join("libs/kafka-clients-4.1.1.jar"), b"").unwrap();
        assert!(matches!(Distribution::at(&dir), Err(Error::Distribution { .. })));
        std::fs::write(dir.join("libs/kafka_2.13-4.1.1.jar"), b"").unwrap();
        let dist = Distribution::at(&dir).unwrap();
        assert_eq!(dist.version(), "4.1.1");
        assert_eq!(dist.class_path(), format!("{}/libs/*", dir.display()));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_directory_says_how_to_get_one() {
        let error = Distribution::at("/nonexistent/kafka").unwrap_err().to_string();
        assert!(error.contains("scripts/kafka-dist"), "{error}");
    }
}
