//! The Docker engine through its API (bollard): connecting with a clear
//! error, and the few operations the runtime builds on — images present or
//! fetched with progress, containers created from a [`ContainerSpec`],
//! everything of one lab found by its labels.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, EndpointSettings, HostConfig, Mount as EngineMount,
    MountType, NetworkCreateRequest, NetworkingConfig, PortBinding, VolumeCreateRequest,
};
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, CreateImageOptions, ListContainersOptions,
    ListNetworksOptions, ListVolumesOptions, RemoveContainerOptions, RemoveVolumeOptions,
};
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::spec::{ContainerSpec, LABEL_COMPONENT, LabIdentity, Source};

#[derive(Clone)]
pub struct Engine {
    pub docker: Docker,
}

impl Engine {
    /// Connects to the engine `DOCKER_HOST` names (or the local socket) and
    /// agrees an API version with it.
    pub async fn connect() -> Result<Engine> {
        let docker = Docker::connect_with_local_defaults().context(
            "cannot reach the Docker engine: start Docker, or run `lab up --runtime native`",
        )?;
        let docker = tokio::time::timeout(Duration::from_secs(5), docker.negotiate_version())
            .await
            .context("the Docker engine did not answer within 5 s: is it running?")?
            .context(
                "the Docker engine did not answer: start Docker, or run `lab up --runtime native`",
            )?;
        docker
            .ping()
            .await
            .context("the Docker engine did not answer a ping: is it running?")?;
        Ok(Engine { docker })
    }

    /// Whether an engine answers at all (how `lab up` picks its runtime).
    pub async fn answers() -> bool {
        tokio::time::timeout(Duration::from_secs(3), Engine::connect())
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub async fn has_image(&self, image: &str) -> bool {
        self.docker.inspect_image(image).await.is_ok()
    }

    /// Pulls one image, showing bytes downloaded over all its layers.
    pub async fn pull(&self, image: &str, bars: &MultiProgress) -> Result<()> {
        let bar = bars.add(ProgressBar::new(0));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} pull {prefix:<34} {bytes:>10}/{total_bytes:<10} {wide_msg}",
            )
            .expect("a valid template"),
        );
        bar.set_prefix(image.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        let (repo, tag) = split_tag(image);
        let mut stream = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(repo.to_owned()),
                tag: Some(tag.to_owned()),
                ..Default::default()
            }),
            None,
            None,
        );
        // Per-layer (current, total): the bar shows their sums.
        let mut layers: HashMap<String, (u64, u64)> = HashMap::new();
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    bar.abandon_with_message("failed");
                    return Err(anyhow::anyhow!("{e}"));
                }
            };
            if let Some(error) = event.error_detail.and_then(|d| d.message) {
                bar.abandon_with_message("failed");
                bail!("{error}");
            }
            if let (Some(id), Some(detail)) = (event.id, event.progress_detail)
                && let (Some(current), Some(total)) = (detail.current, detail.total)
            {
                layers.insert(id, (current.max(0) as u64, total.max(0) as u64));
                bar.set_length(layers.values().map(|l| l.1).sum());
                bar.set_position(layers.values().map(|l| l.0).sum());
            }
            if let Some(status) = event.status {
                bar.set_message(status);
            }
        }
        bar.finish_with_message("pulled");
        Ok(())
    }

    /// Builds an image from a tar of its context, showing the builder's
    /// steps as they come.
    pub async fn build(
        &self,
        tag: &str,
        dockerfile: &str,
        context: Vec<u8>,
        bars: &MultiProgress,
    ) -> Result<()> {
        let bar = bars.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} build {prefix:<33} {wide_msg}")
                .expect("a valid template"),
        );
        bar.set_prefix(tag.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        let mut stream = self.docker.build_image(
            BuildImageOptions {
                dockerfile: dockerfile.to_owned(),
                t: Some(tag.to_owned()),
                rm: true,
                forcerm: true,
                ..Default::default()
            },
            None,
            Some(bollard::body_full(context.into())),
        );
        let mut last = Vec::new();
        while let Some(event) = stream.next().await {
            let event = event.map_err(|e| {
                bar.abandon_with_message("failed");
                anyhow::anyhow!("{e}")
            })?;
            if let Some(error) = event.error_detail.and_then(|d| d.message) {
                bar.abandon_with_message("failed");
                bail!("{error}\n{}", last.join(""));
            }
            if let Some(line) = event.stream {
                let trimmed = line.trim();
                if !trimmed.is_empty() {
                    bar.set_message(trimmed.to_owned());
                }
                last.push(line);
                if last.len() > 20 {
                    last.remove(0);
                }
            }
        }
        bar.finish_with_message("built");
        Ok(())
    }

    /// The lab's network, made if absent.
    pub async fn ensure_network(&self, lab: &LabIdentity) -> Result<()> {
        let name = lab.network();
        if self.docker.inspect_network(&name, None).await.is_ok() {
            return Ok(());
        }
        self.docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                labels: Some(lab.labels(None).into_iter().collect()),
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot create the network {name}"))?;
        Ok(())
    }

    pub async fn ensure_volume(&self, lab: &LabIdentity, name: &str) -> Result<()> {
        if self.docker.inspect_volume(name).await.is_ok() {
            return Ok(());
        }
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_owned()),
                labels: Some(lab.labels(None).into_iter().collect()),
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot create the volume {name}"))?;
        Ok(())
    }

    /// Creates and starts one container on the lab's network.
    pub async fn run(&self, lab: &LabIdentity, spec: &ContainerSpec) -> Result<()> {
        // A container of the same name left by a crashed `up` of this lab.
        let _ = self
            .docker
            .remove_container(
                &spec.name,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
        let mut bindings = HashMap::new();
        for (container, host) in &spec.ports {
            bindings.insert(
                format!("{container}/tcp"),
                Some(
                    spec.host_addresses()
                        .into_iter()
                        .map(|address| PortBinding {
                            host_ip: Some(address.to_string()),
                            host_port: Some(host.to_string()),
                        })
                        .collect(),
                ),
            );
        }
        let mounts = spec
            .mounts
            .iter()
            .map(|m| match &m.source {
                Source::Volume(name) => EngineMount {
                    target: Some(m.target.clone()),
                    source: Some(name.clone()),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(m.read_only),
                    ..Default::default()
                },
                Source::Bind(path) => EngineMount {
                    target: Some(m.target.clone()),
                    source: Some(path.display().to_string()),
                    typ: Some(MountType::BIND),
                    read_only: Some(m.read_only),
                    ..Default::default()
                },
            })
            .collect();
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(spec.labels.clone().into_iter().collect()),
            exposed_ports: Some(
                spec.ports
                    .iter()
                    .map(|(container, _)| format!("{container}/tcp"))
                    .collect(),
            ),
            stop_signal: spec.stop_signal.clone(),
            host_config: Some(HostConfig {
                port_bindings: Some(bindings),
                mounts: Some(mounts),
                memory: Some((spec.memory_mib * 1024 * 1024) as i64),
                // No swap beyond the limit: the limit is the footprint.
                memory_swap: Some((spec.memory_mib * 1024 * 1024) as i64),
                init: Some(true),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    lab.network(),
                    EndpointSettings {
                        aliases: Some(vec![spec.component.clone()]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(spec.name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .with_context(|| format!("cannot create the container {}", spec.name))?;
        self.docker
            .start_container(&spec.name, None)
            .await
            .map_err(|e| port_hint(e, spec))?;
        Ok(())
    }

    /// `running`, `paused`, `exited`, … or `missing`.
    pub async fn state_of(&self, container: &str) -> String {
        match self.docker.inspect_container(container, None).await {
            Ok(info) => info
                .state
                .and_then(|s| s.status)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into()),
            Err(_) => "missing".into(),
        }
    }

    /// The last lines a container wrote.
    pub async fn tail(&self, container: &str, lines: usize) -> String {
        let mut stream = self.docker.logs(
            container,
            Some(bollard::query_parameters::LogsOptions {
                stdout: true,
                stderr: true,
                tail: lines.to_string(),
                ..Default::default()
            }),
        );
        let mut out = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            out.push_str(&chunk.to_string());
        }
        out
    }

    /// Stops and removes `containers` together; how many went.
    async fn remove_containers(&self, containers: &[&ContainerSummary]) -> Result<usize> {
        let stops = containers.iter().filter_map(|c| c.id.clone()).map(|id| {
            let docker = self.docker.clone();
            async move {
                let _ = docker
                    .stop_container(
                        &id,
                        Some(bollard::query_parameters::StopContainerOptions {
                            t: Some(10),
                            ..Default::default()
                        }),
                    )
                    .await;
                docker
                    .remove_container(
                        &id,
                        Some(RemoveContainerOptions {
                            force: true,
                            ..Default::default()
                        }),
                    )
                    .await
            }
        });
        let mut removed = 0;
        for result in futures_util::future::join_all(stops).await {
            result.context("cannot remove a container of the lab")?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes every container, the network and (with `volumes`) the
    /// volumes carrying this lab's label; returns what it removed.
    pub async fn remove_lab(&self, lab: &LabIdentity, volumes: bool) -> Result<Removed> {
        let filters = HashMap::from([("label".to_owned(), vec![lab.filter()])]);
        let mut removed = Removed::default();
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters.clone()),
                ..Default::default()
            }))
            .await
            .context("cannot list the lab's containers")?;
        // Two waves, as the native runtime stops them: the services first,
        // so their last telemetry still reaches a collector that runs (an
        // exporter's flush to a container already gone waits out its
        // timeout, not a refused connection); then everything else. Within
        // a wave, together: each may take Postgres' or Tempo's shutdown time.
        let is_service = |c: &ContainerSummary| {
            c.labels
                .as_ref()
                .and_then(|labels| labels.get(LABEL_COMPONENT))
                .and_then(|component| crate::plan::Kind::named(component))
                .is_some_and(crate::plan::Kind::is_service)
        };
        let (services, others): (Vec<_>, Vec<_>) = containers.iter().partition(|c| is_service(c));
        for wave in [services, others] {
            removed.containers += self.remove_containers(&wave).await?;
        }
        for network in self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(filters.clone()),
            }))
            .await
            .context("cannot list the lab's networks")?
        {
            if let Some(name) = network.name {
                self.docker
                    .remove_network(&name)
                    .await
                    .with_context(|| format!("cannot remove the network {name}"))?;
                removed.networks += 1;
            }
        }
        if volumes {
            let list = self
                .docker
                .list_volumes(Some(ListVolumesOptions {
                    filters: Some(filters),
                }))
                .await
                .context("cannot list the lab's volumes")?;
            for volume in list.volumes.unwrap_or_default() {
                self.docker
                    .remove_volume(&volume.name, Some(RemoveVolumeOptions { force: true }))
                    .await
                    .with_context(|| format!("cannot remove the volume {}", volume.name))?;
                removed.volumes += 1;
            }
        }
        Ok(removed)
    }
}

/// What `remove_lab` removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Removed {
    pub containers: usize,
    pub networks: usize,
    pub volumes: usize,
}

/// `grafana/tempo:2.4.1` → (`grafana/tempo`, `2.4.1`); a registry port is
/// not a tag.
pub fn split_tag(image: &str) -> (&str, &str) {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(colon) => (&image[..slash + colon], &image[slash + colon + 1..]),
        None => (image, "latest"),
    }
}

fn port_hint(error: bollard::errors::Error, spec: &ContainerSpec) -> anyhow::Error {
    let text = error.to_string();
    if text.contains("port is already allocated") || text.contains("address already in use") {
        let ports: Vec<String> = spec.ports.iter().map(|(_, h)| h.to_string()).collect();
        anyhow::anyhow!(
            "cannot start {}: a host port ({}) is in use by another program; stop it or run `lab down` and `lab up` again (the lab picks free ports at up)",
            spec.name,
            ports.join(", ")
        )
    } else {
        anyhow::anyhow!("cannot start {}: {text}", spec.name)
    }
}

#[cfg(test)]
mod tests {
    use super::split_tag;

    #[test]
    fn tags_split_after_the_last_slash() {
        assert_eq!(split_tag("grafana/tempo:2.4.1"), ("grafana/tempo", "2.4.1"));
        assert_eq!(split_tag("postgres"), ("postgres", "latest"));
        assert_eq!(
            split_tag("registry.local:5000/postgres:14.5"),
            ("registry.local:5000/postgres", "14.5")
        );
        assert_eq!(
            split_tag("registry.local:5000/postgres"),
            ("registry.local:5000/postgres", "latest")
        );
    }
}
