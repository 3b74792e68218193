//! Which image each component runs: pinned defaults (releases at least as
//! new as intro-to-mltp's, each config in `docker/` checked against its
//! source; COMPATIBILITY.md lists what the lab calls in each), overridable per image by environment or by a YAML
//! file, and re-rooted on a private registry as a whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::plan::Kind;

/// The images a lab can need, by the key overrides use.
pub const KEYS: &[&str] = &[
    "postgres",
    "mythical",
    "alloy",
    "tempo",
    "loki",
    "mimir",
    "pyroscope",
    "grafana",
];

fn default_image(key: &str) -> String {
    match key {
        "postgres" => "postgres:14.5".into(),
        "mythical" => format!("mythical-lab/mythical:{}", env!("CARGO_PKG_VERSION")),
        "alloy" => "grafana/alloy:v1.18.1".into(),
        "tempo" => "grafana/tempo:3.0.3".into(),
        "loki" => "grafana/loki:3.7.6".into(),
        "mimir" => "grafana/mimir:3.1.1".into(),
        "pyroscope" => "grafana/pyroscope:2.2.1".into(),
        "grafana" => "grafana/grafana:12.3.1".into(),
        other => unreachable!("no image key {other}"),
    }
}

/// The image key of a component kind: the lab's own parts share the
/// `mythical` image; every other kind's image is keyed by its name.
pub fn key_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Backend | Kind::Proxy | Kind::Server | Kind::Requester => "mythical",
        other => other.name(),
    }
}

/// The environment variable that overrides one image, e.g.
/// `MYTHICAL_LAB_IMAGE_POSTGRES`.
pub fn env_name(key: &str) -> String {
    format!("MYTHICAL_LAB_IMAGE_{}", key.to_uppercase())
}

/// The resolved image names, and where each came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    names: BTreeMap<&'static str, String>,
    /// `default`, `registry`, a file path, or an environment variable.
    origins: BTreeMap<&'static str, String>,
}

impl Images {
    /// Defaults ← `MYTHICAL_LAB_REGISTRY` prefix ← the file
    /// (`MYTHICAL_LAB_IMAGES`, else `images.yaml` in the state folder) ←
    /// `MYTHICAL_LAB_IMAGE_<KEY>`.
    pub fn resolve(state_root: &Path) -> Result<Images> {
        let file = std::env::var_os("MYTHICAL_LAB_IMAGES")
            .map(PathBuf::from)
            .unwrap_or_else(|| state_root.join("images.yaml"));
        let from_file = if file.exists() {
            Some((file.clone(), read_overrides(&file)?))
        } else if std::env::var_os("MYTHICAL_LAB_IMAGES").is_some() {
            bail!(
                "MYTHICAL_LAB_IMAGES names {}, which does not exist: point it at a YAML map such as `postgres: registry.local/postgres:14.5`",
                file.display()
            );
        } else {
            None
        };
        let registry = std::env::var("MYTHICAL_LAB_REGISTRY")
            .ok()
            .filter(|r| !r.trim().is_empty());
        let mut names = BTreeMap::new();
        let mut origins = BTreeMap::new();
        for &key in KEYS {
            let mut name = default_image(key);
            let mut origin = "default".to_owned();
            if let Some(registry) = &registry {
                name = format!("{}/{name}", registry.trim_end_matches('/'));
                origin = "MYTHICAL_LAB_REGISTRY".into();
            }
            if let Some((path, map)) = &from_file
                && let Some(image) = map.get(key)
            {
                name = image.clone();
                origin = path.display().to_string();
            }
            if let Ok(image) = std::env::var(env_name(key))
                && !image.trim().is_empty()
            {
                name = image.trim().to_owned();
                origin = env_name(key);
            }
            names.insert(key, name);
            origins.insert(key, origin);
        }
        Ok(Images { names, origins })
    }

    pub fn get(&self, key: &str) -> &str {
        &self.names[key]
    }

    pub fn origin(&self, key: &str) -> &str {
        &self.origins[key]
    }

    /// Whether this image is the lab's own, built from `docker/Dockerfile`
    /// when absent (an overridden name is pulled or loaded instead).
    pub fn is_buildable(&self, key: &str) -> bool {
        key == "mythical" && self.origins[key] == "default"
    }
}

fn read_overrides(path: &Path) -> Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let map: BTreeMap<String, String> = yaml_serde::from_str(&text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        anyhow::anyhow!(
            "{}{at}: {e}; expected a map of image keys ({}) to image names",
            path.display(),
            KEYS.join(", ")
        )
    })?;
    if let Some(unknown) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
        bail!(
            "{}: unknown image key `{unknown}`; the keys are {}",
            path.display(),
            KEYS.join(", ")
        );
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_an_image_key() {
        for kind in Kind::ALL {
            assert!(KEYS.contains(&key_of(kind)), "{kind}");
        }
        assert_eq!(key_of(Kind::Grafana), "grafana");
        assert_eq!(key_of(Kind::Proxy), "mythical");
    }

    #[test]
    fn a_file_overrides_defaults_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("images.yaml"),
            "postgres: registry.local/postgres:15\n",
        )
        .unwrap();
        let images = Images::resolve(dir.path()).unwrap();
        assert_eq!(images.get("postgres"), "registry.local/postgres:15");
        assert_eq!(images.get("tempo"), "grafana/tempo:3.0.3");
        assert!(images.origin("postgres").ends_with("images.yaml"));

        std::fs::write(dir.path().join("images.yaml"), "postgress: x\n").unwrap();
        let err = Images::resolve(dir.path()).unwrap_err().to_string();
        assert!(err.contains("unknown image key `postgress`"), "{err}");

        std::fs::write(dir.path().join("images.yaml"), "postgres: [a\n").unwrap();
        let err = Images::resolve(dir.path()).unwrap_err().to_string();
        assert!(err.contains("images.yaml:"), "{err}");
    }
}
