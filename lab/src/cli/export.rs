//! `lab export compose <folder>`: the docker runtime's stack as a compose
//! project for people who prefer `docker compose` — the same containers,
//! images, configs, limits and loopback ports, rendered from the same specs
//! `lab up` creates. Secrets go to a `.env` file beside it (mode 0600),
//! never into the compose file.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use lab::plan::{self, Backends};
use lab::runtime::docker::{
    self,
    images::Images,
    spec::{self, ContainerSpec, LabIdentity, Source},
};
use lab::state::random_secret;

#[derive(Debug, clap::Subcommand)]
pub enum ExportCommand {
    /// Write `compose.yaml`, the configs it mounts and a `.env` into a folder.
    Compose {
        /// The folder to write (made if absent; must not hold a compose.yaml).
        folder: PathBuf,
        #[arg(long, value_enum, default_value = "lgtm")]
        backends: Backends,
        /// The host address ports are published on.
        #[arg(long, default_value = "127.0.0.1")]
        publish_address: IpAddr,
    },
}

/// The variables compose reads from `.env`.
const SECRETS: &[&str] = &[
    "MYTHICAL_ADMIN_TOKEN",
    "LAB_POSTGRES_READER_PASSWORD",
    "GF_SECURITY_ADMIN_PASSWORD",
];

/// Creates the read-only role on Postgres' first start, through the
/// official image's init folder (`lab up` creates it over SQL instead).
const READER_ROLE_SCRIPT: &str = r#"#!/bin/sh
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-postgres}" <<SQL
CREATE ROLE lab_reader LOGIN PASSWORD '${LAB_POSTGRES_READER_PASSWORD}';
ALTER ROLE lab_reader SET default_transaction_read_only = on;
GRANT pg_read_all_data TO lab_reader;
SQL
"#;

pub async fn run(command: ExportCommand) -> Result<()> {
    let ExportCommand::Compose {
        folder,
        backends,
        publish_address,
    } = command;
    let compose = folder.join("compose.yaml");
    if compose.exists() {
        bail!(
            "{} exists: choose an empty folder, or remove it first",
            compose.display()
        );
    }
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let folder = folder.canonicalize()?;
    let written = write_configs(&folder)?;
    let text = render(&folder, backends, publish_address)?;
    std::fs::write(&compose, text)?;
    write_env(&folder)?;
    println!(
        "wrote {} with {written} config files and .env (secrets, mode 0600)",
        compose.display()
    );
    println!("run it: cd {} && docker compose up -d", folder.display());
    Ok(())
}

fn write_configs(folder: &Path) -> Result<usize> {
    let mut count = 0;
    for (relative, bytes) in docker::config_files() {
        let path = folder.join("docker").join(relative);
        std::fs::create_dir_all(path.parent().expect("a file has a folder"))?;
        std::fs::write(&path, bytes)?;
        count += 1;
    }
    let init = folder.join("docker/postgres/initdb/10-lab-reader.sh");
    std::fs::create_dir_all(init.parent().expect("a file has a folder"))?;
    std::fs::write(&init, READER_ROLE_SCRIPT)?;
    Ok(count + 1)
}

fn write_env(folder: &Path) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(folder.join(".env"))?;
    for key in SECRETS {
        writeln!(file, "{key}={}", random_secret())?;
    }
    Ok(())
}

/// The compose document for the specs the docker runtime would create,
/// with the plan's preferred ports.
pub fn render(folder: &Path, backends: Backends, publish_address: IpAddr) -> Result<String> {
    let lab = LabIdentity::of(folder);
    let images = Images::resolve(folder)?;
    let configs = folder.join("docker");
    let ctx = spec::Context {
        lab: &lab,
        images: &images,
        backends,
        admin_token: "admin",
        reader_password: "reader",
        grafana_password: "grafana",
        configs: &configs,
        publish_address,
        like_original: false,
    };
    let plan = plan::in_dependency_order(plan::docker(backends, |preferred| preferred));
    let mut services = serde_json::Map::new();
    let mut volumes = serde_json::Map::new();
    for component in &plan {
        let spec = spec::render(component, &ctx);
        for mount in &spec.mounts {
            if let Source::Volume(name) = &mount.source {
                volumes.insert(short_volume(&lab, name), json!({}));
            }
        }
        let mut service = service(&spec, folder, &lab);
        if !component.depends_on.is_empty() {
            service["depends_on"] = json!(
                component
                    .depends_on
                    .iter()
                    .map(|kind| kind.name())
                    .collect::<Vec<_>>()
            );
        }
        if component.kind == plan::Kind::Postgres {
            service["volumes"]
                .as_array_mut()
                .expect("a list")
                .push(json!(
                    "./docker/postgres/initdb:/docker-entrypoint-initdb.d:ro"
                ));
            service["environment"]["LAB_POSTGRES_READER_PASSWORD"] =
                json!("${LAB_POSTGRES_READER_PASSWORD:?run from the folder with .env}");
        }
        if images.is_buildable(docker::images::key_of(component.kind))
            && let Some(root) = docker::source_tree()
        {
            service["build"] = json!({
                "context": root.display().to_string(),
                "dockerfile": "docker/Dockerfile",
            });
        }
        services.insert(component.name().to_owned(), service);
    }
    let document = json!({
        "name": "mythical-lab",
        "services": services,
        "volumes": volumes,
    });
    let header = "# Mythical Lab as a compose project, written by `lab export compose`.\n\
                  # The same containers `lab up --runtime docker` creates; secrets are in .env.\n";
    Ok(format!("{header}{}", yaml_serde::to_string(&document)?))
}

fn short_volume(lab: &LabIdentity, name: &str) -> String {
    name.strip_prefix(&format!("{}-", lab.prefix()))
        .unwrap_or(name)
        .to_owned()
}

fn service(spec: &ContainerSpec, folder: &Path, lab: &LabIdentity) -> Value {
    let mut environment: BTreeMap<String, String> = spec.env.clone();
    for key in SECRETS {
        if environment.contains_key(*key) {
            environment.insert(
                (*key).to_owned(),
                format!("${{{key}:?run from the folder with .env}}"),
            );
        }
    }
    let volumes: Vec<String> = spec
        .mounts
        .iter()
        .map(|m| {
            let source = match &m.source {
                Source::Volume(name) => short_volume(lab, name),
                Source::Bind(path) => {
                    format!("./{}", path.strip_prefix(folder).unwrap_or(path).display())
                }
            };
            let mode = if m.read_only { ":ro" } else { "" };
            format!("{source}:{}{mode}", m.target)
        })
        .collect();
    let mut service = json!({
        "image": spec.image,
        "environment": environment,
        "ports": spec.ports.iter().flat_map(|(container, host)| {
            spec.host_addresses()
                .into_iter()
                .map(move |address| format!("{address}:{host}:{container}"))
        }).collect::<Vec<_>>(),
        "volumes": volumes,
        "mem_limit": format!("{}m", spec.memory_mib),
        "init": true,
        "labels": { spec::LABEL_COMPONENT: spec.component },
    });
    if !spec.cmd.is_empty() {
        service["command"] = json!(spec.cmd);
    }
    if let Some(signal) = &spec.stop_signal {
        service["stop_signal"] = json!(signal);
    }
    service
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_matches_the_runtime_specs_and_holds_no_secret() {
        let folder = Path::new("/tmp/mythical-compose");
        let text = render(folder, Backends::Lgtm, "127.0.0.1".parse().unwrap()).unwrap();
        let doc: Value = yaml_serde::from_str(&text).unwrap();
        let services = doc["services"].as_object().unwrap();
        assert_eq!(services.len(), 10);
        assert_eq!(doc["services"]["tempo"]["image"], "grafana/tempo:3.0.3");
        assert_eq!(
            doc["services"]["grafana"]["ports"][0],
            "127.0.0.1:3000:3000"
        );
        assert_eq!(doc["services"]["postgres"]["stop_signal"], "SIGINT");
        assert_eq!(doc["services"]["alloy"]["mem_limit"], "256m");
        assert!(
            doc["services"]["alloy"]["volumes"][0]
                .as_str()
                .unwrap()
                .starts_with("./docker/alloy/config.alloy:/etc/alloy/config.alloy:ro")
        );
        assert_eq!(
            doc["services"]["mythical-server"]["depends_on"],
            json!(["db-proxy", "alloy"])
        );
        assert_eq!(
            doc["services"]["db-proxy"]["ports"][0],
            "127.0.0.1:8474:8474"
        );
        assert!(
            doc["services"]["db-proxy"]["environment"]["MYTHICAL_ADMIN_TOKEN"]
                .as_str()
                .unwrap()
                .starts_with("${")
        );
        assert!(doc["volumes"]["postgres"].is_object());
        assert!(
            doc["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
                .as_str()
                .unwrap()
                .starts_with("${")
        );
        assert!(!text.contains("admin_token"));
    }
}
