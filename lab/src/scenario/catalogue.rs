//! The scenario catalogue: the files built into the binary from
//! `scenarios/`, then the user's folders (`$MYTHICAL_LAB_SCENARIOS`, a
//! `:`-separated list, and `<state folder>/scenarios/`), where a file with a
//! built-in id replaces the built-in. A bad file is reported and skipped;
//! it never hides the others.

use std::path::{Path, PathBuf};

use super::{Scenario, ScenarioError, parse};

mod builtin {
    include!(concat!(env!("OUT_DIR"), "/scenario_files.rs"));
}

/// Where a scenario came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    BuiltIn,
    File(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::BuiltIn => f.write_str("built-in"),
            Origin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Every scenario that parsed, and every file that did not.
#[derive(Debug, Default)]
pub struct Catalogue {
    pub scenarios: Vec<(Scenario, Origin)>,
    pub errors: Vec<ScenarioError>,
}

impl Catalogue {
    /// The built-in scenarios and the user's folders for this state folder.
    pub fn load(state_root: &Path) -> Catalogue {
        let mut folders: Vec<PathBuf> = std::env::var_os("MYTHICAL_LAB_SCENARIOS")
            .map(|v| std::env::split_paths(&v).collect())
            .unwrap_or_default();
        folders.push(state_root.join("scenarios"));
        Catalogue::from_sources(builtin::FILES, &folders)
    }

    fn from_sources(builtin: &[(&str, &[u8])], folders: &[PathBuf]) -> Catalogue {
        let mut catalogue = Catalogue::default();
        for (name, bytes) in builtin {
            if !is_scenario_file(Path::new(name)) {
                continue;
            }
            let path = Path::new("scenarios").join(name);
            catalogue.add(&path, &String::from_utf8_lossy(bytes), Origin::BuiltIn);
        }
        for folder in folders {
            let Ok(entries) = std::fs::read_dir(folder) else {
                continue;
            };
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            for path in paths.into_iter().filter(|p| is_scenario_file(p)) {
                match std::fs::read_to_string(&path) {
                    Ok(text) => catalogue.add(&path, &text, Origin::File(path.clone())),
                    Err(e) => catalogue.errors.push(ScenarioError {
                        path: path.clone(),
                        line: 1,
                        column: 1,
                        message: format!("cannot read the file: {e}"),
                    }),
                }
            }
        }
        catalogue
    }

    fn add(&mut self, path: &Path, text: &str, origin: Origin) {
        match parse(path, text) {
            Ok(scenario) => {
                self.scenarios.retain(|(s, _)| s.id != scenario.id);
                self.scenarios.push((scenario, origin));
            }
            Err(e) => self.errors.push(e),
        }
    }

    pub fn find(&self, id: &str) -> Option<&Scenario> {
        self.scenarios.iter().map(|(s, _)| s).find(|s| s.id == id)
    }

    /// The scenario, or an error that lists the ids there are.
    pub fn get(&self, id: &str) -> anyhow::Result<&Scenario> {
        self.find(id).ok_or_else(|| {
            // A file of that name that did not parse says why.
            if let Some(broken) = self
                .errors
                .iter()
                .find(|e| e.path.file_stem().is_some_and(|stem| stem == id))
            {
                return anyhow::anyhow!(
                    "scenario `{id}` does not parse: {broken}; fix it (`lab scenario validate` checks it)"
                );
            }
            let ids: Vec<&str> = self.scenarios.iter().map(|(s, _)| s.id.as_str()).collect();
            anyhow::anyhow!("no scenario `{id}`; the scenarios are: {}", ids.join(", "))
        })
    }
}

fn is_scenario_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_scenario_parses() {
        let catalogue = Catalogue::from_sources(builtin::FILES, &[]);
        assert!(
            catalogue.errors.is_empty(),
            "{}",
            catalogue
                .errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(
            catalogue.scenarios.len() >= 12,
            "{}",
            catalogue.scenarios.len()
        );
    }

    #[test]
    fn a_bad_user_file_is_reported_and_the_rest_still_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("broken.yaml"), "id: [oops\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a scenario").unwrap();
        let catalogue = Catalogue::from_sources(builtin::FILES, &[dir.path().to_owned()]);
        assert_eq!(catalogue.errors.len(), 1);
        assert!(catalogue.errors[0].path.ends_with("broken.yaml"));
        assert!(catalogue.find("null-name").is_some());
    }
}
