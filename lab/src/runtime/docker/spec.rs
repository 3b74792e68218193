//! One container per stack component: image, command, environment, ports
//! (published on the host's loopback unless told otherwise), mounts, memory
//! limit, and the labels that tie it to one lab. Rendering is pure — it
//! touches no engine — so tests and `lab export compose` read the same
//! specs the runtime creates.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::images::{self, Images};
use crate::plan::{Backends, Component, Kind};

pub const LABEL_LAB: &str = "io.mythical-lab.lab";
pub const LABEL_STATE_DIR: &str = "io.mythical-lab.state-dir";
pub const LABEL_COMPONENT: &str = "io.mythical-lab.component";

/// The password of Postgres' `postgres` role, as in the original.
pub const POSTGRES_PASSWORD: &str = "mythical";

/// One lab as the engine knows it: every name derives from the state
/// folder, so two labs with two folders never share a container, network
/// or volume.
#[derive(Debug, Clone)]
pub struct LabIdentity {
    pub id: String,
    pub state_dir: PathBuf,
}

impl LabIdentity {
    pub fn of(state_dir: &Path) -> LabIdentity {
        // FNV-1a: stable across Rust releases, unlike the std hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in state_dir.as_os_str().as_encoded_bytes() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        LabIdentity {
            id: format!("{:08x}", hash >> 32),
            state_dir: state_dir.to_owned(),
        }
    }

    pub fn prefix(&self) -> String {
        format!("mythical-lab-{}", self.id)
    }

    pub fn network(&self) -> String {
        self.prefix()
    }

    pub fn container(&self, component: &str) -> String {
        format!("{}-{component}", self.prefix())
    }

    pub fn volume(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix())
    }

    pub fn labels(&self, component: Option<&str>) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (LABEL_LAB.to_owned(), self.id.clone()),
            (
                LABEL_STATE_DIR.to_owned(),
                self.state_dir.display().to_string(),
            ),
        ]);
        if let Some(component) = component {
            labels.insert(LABEL_COMPONENT.to_owned(), component.to_owned());
        }
        labels
    }

    /// The engine filter that finds exactly this lab's things.
    pub fn filter(&self) -> String {
        format!("{LABEL_LAB}={}", self.id)
    }
}

/// What a container mounts.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A named volume of the lab's.
    Volume(String),
    /// A file or folder of the host, read-only.
    Bind(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub source: Source,
    pub target: String,
    pub read_only: bool,
}

/// A container as the engine is asked to create it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    /// The component's name, also its alias on the lab's network.
    pub component: String,
    pub name: String,
    pub image: String,
    pub cmd: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// (container port, host port).
    pub ports: Vec<(u16, u16)>,
    pub publish_address: IpAddr,
    pub mounts: Vec<Mount>,
    pub memory_mib: u64,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
}

impl ContainerSpec {
    /// The host addresses each port is published on: the one asked for and,
    /// when that is one address other than loopback's, loopback too, which
    /// is where the lab itself dials its health checks, queries and SQL.
    /// An unspecified address (`0.0.0.0`) covers loopback already.
    pub fn host_addresses(&self) -> Vec<IpAddr> {
        let loopback = IpAddr::from([127, 0, 0, 1]);
        if self.publish_address.is_unspecified() || self.publish_address == loopback {
            vec![self.publish_address]
        } else {
            vec![self.publish_address, loopback]
        }
    }
}

/// What the rendering needs besides the component.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub lab: &'a LabIdentity,
    pub images: &'a Images,
    pub backends: Backends,
    pub admin_token: &'a str,
    pub reader_password: &'a str,
    pub grafana_password: &'a str,
    /// Where the backends' config files were written (`docker/` copied
    /// into the state folder).
    pub configs: &'a Path,
    pub publish_address: IpAddr,
    pub like_original: bool,
}

/// The port a component listens on inside its container, by the plan's
/// port name.
pub fn container_port(kind: Kind, port: &str) -> u16 {
    match (kind, port) {
        (Kind::Postgres, _) | (Kind::Proxy, "postgres") => 5432,
        (Kind::Proxy, _) => crate::plan::PROXY_ADMIN_PORT,
        (Kind::Backend, "query") => 3200,
        (Kind::Backend | Kind::Alloy, "otlp_grpc") => 4317,
        (Kind::Backend | Kind::Alloy, "otlp_http") => 4318,
        (Kind::Server, _) => 4000,
        (Kind::Requester, _) => 4001,
        (Kind::Alloy, _) => 12345,
        (Kind::Tempo, _) => 3200,
        (Kind::Loki, _) => 3100,
        (Kind::Mimir, _) => 9009,
        (Kind::Pyroscope, _) => 4040,
        (Kind::Grafana, _) => 3000,
        (Kind::Backend, other) => unreachable!("the backend has no port {other}"),
    }
}

/// The memory limit of each component, MiB: enough for a workshop's
/// traffic, small enough for a laptop.
pub fn memory_mib(kind: Kind) -> u64 {
    match kind {
        Kind::Postgres => 256,
        // Bytes in flight only: at most 512 KiB per direction per connection.
        Kind::Proxy => 32,
        Kind::Backend => 192,
        Kind::Server | Kind::Requester => 128,
        Kind::Alloy => 256,
        Kind::Tempo => 512,
        Kind::Loki => 384,
        Kind::Mimir => 512,
        Kind::Pyroscope => 384,
        Kind::Grafana => 384,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn config_file(ctx: &Context, relative: &str, target: &str) -> Mount {
    Mount {
        source: Source::Bind(ctx.configs.join(relative)),
        target: target.into(),
        read_only: true,
    }
}

fn volume(ctx: &Context, name: &str, target: &str) -> Mount {
    Mount {
        source: Source::Volume(ctx.lab.volume(name)),
        target: target.into(),
        read_only: false,
    }
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The OTLP settings both services share: gRPC to the collector, short
/// batch delays so a workshop sees telemetry within seconds.
fn otlp_env(ctx: &Context) -> BTreeMap<String, String> {
    // Profiles go where Pyroscope would take them: the embedded backend's
    // query port, or Alloy's pyroscope.receive_http relay.
    let (collector, profiles) = match ctx.backends {
        Backends::Embedded => ("backend", "http://backend:3200"),
        Backends::Lgtm => ("alloy", "http://alloy:9999"),
    };
    let mut vars = env(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_BSP_SCHEDULE_DELAY", "1000"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "1000"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "15000"),
        ("MYTHICAL_LOG_STDOUT", "true"),
        ("MYTHICAL_ADMIN_TOKEN", ctx.admin_token),
    ]);
    vars.insert(
        "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        format!("http://{collector}:4317"),
    );
    vars.insert("PYROSCOPE_SERVER_ADDRESS".into(), profiles.into());
    vars
}

/// Renders one component of the docker plan.
pub fn render(component: &Component, ctx: &Context) -> ContainerSpec {
    let kind = component.kind;
    let mut mounts = Vec::new();
    let mut stop_signal = None;
    let (cmd, env) = match kind {
        Kind::Postgres => {
            mounts.push(volume(ctx, "postgres", "/var/lib/postgresql/data"));
            // Postgres' fast shutdown; the default smart one can wait on
            // the services' connections for ever.
            stop_signal = Some("SIGINT".to_owned());
            (
                strings(&["postgres", "-c", "shared_buffers=16MB"]),
                env(&[("POSTGRES_PASSWORD", POSTGRES_PASSWORD)]),
            )
        }
        Kind::Proxy => (
            vec![
                "proxy".to_owned(),
                "--listen".to_owned(),
                "0.0.0.0:5432".to_owned(),
                "--upstream".to_owned(),
                "postgres:5432".to_owned(),
                "--admin".to_owned(),
                format!("0.0.0.0:{}", crate::plan::PROXY_ADMIN_PORT),
            ],
            env(&[("MYTHICAL_ADMIN_TOKEN", ctx.admin_token)]),
        ),
        Kind::Backend => {
            mounts.push(volume(ctx, "backend", "/var/lib/lab-backend"));
            (
                strings(&[
                    "backend",
                    "--data-dir",
                    "/var/lib/lab-backend",
                    "--query",
                    "0.0.0.0:3200",
                    "--otlp-grpc",
                    "0.0.0.0:4317",
                    "--otlp-http",
                    "0.0.0.0:4318",
                    "--scrape",
                    "mythical=http://mythical-server:4000/metrics,service=mythical-server,group=mythical",
                    "--scrape",
                    "mythical=http://mythical-requester:4001/metrics,service=mythical-requester,group=mythical",
                    "--max-memory-mib",
                    "64",
                ]),
                BTreeMap::new(),
            )
        }
        Kind::Server => {
            let mut vars = otlp_env(ctx);
            vars.extend(env(&[
                // Through the db-proxy, where the network faults act.
                ("MYTHICAL_DATABASE_HOST", "db-proxy"),
                ("MYTHICAL_DATABASE_HOST_PORT", "5432"),
                ("MYTHICAL_DATABASE_USER", "postgres"),
                ("MYTHICAL_DATABASE_PASSWORD", POSTGRES_PASSWORD),
                ("MYTHICAL_SERVER_LISTEN", "0.0.0.0:4000"),
            ]));
            if ctx.like_original {
                vars.insert("MYTHICAL_FAULTS".into(), "null-name=0.1".into());
            }
            (strings(&["service", "server"]), vars)
        }
        Kind::Requester => {
            let mut vars = otlp_env(ctx);
            vars.extend(env(&[
                ("MYTHICAL_SERVER_HOST_PORT", "mythical-server:4000"),
                ("MYTHICAL_REQUESTER_LISTEN", "0.0.0.0:4001"),
            ]));
            (strings(&["service", "requester"]), vars)
        }
        Kind::Alloy => {
            mounts.push(config_file(
                ctx,
                "alloy/config.alloy",
                "/etc/alloy/config.alloy",
            ));
            (
                strings(&[
                    "run",
                    "--server.http.listen-addr=0.0.0.0:12345",
                    "--storage.path=/var/lib/alloy/data",
                    "/etc/alloy/config.alloy",
                ]),
                BTreeMap::new(),
            )
        }
        Kind::Tempo | Kind::Loki | Kind::Mimir | Kind::Pyroscope => {
            let (relative, target) = match kind {
                Kind::Tempo => ("tempo/tempo.yaml", "/etc/tempo/tempo.yaml"),
                Kind::Loki => ("loki/loki.yaml", "/etc/loki/loki.yaml"),
                Kind::Mimir => ("mimir/mimir.yaml", "/etc/mimir/mimir.yaml"),
                _ => ("pyroscope/pyroscope.yaml", "/etc/pyroscope/pyroscope.yaml"),
            };
            mounts.push(config_file(ctx, relative, target));
            (vec![format!("-config.file={target}")], BTreeMap::new())
        }
        Kind::Grafana => {
            mounts.push(config_file(
                ctx,
                "grafana/provisioning",
                "/etc/grafana/provisioning",
            ));
            mounts.push(config_file(
                ctx,
                "grafana/dashboards",
                "/var/lib/grafana/dashboards",
            ));
            mounts.push(volume(ctx, "grafana", "/var/lib/grafana"));
            let mut vars = env(&[
                ("GF_SECURITY_ADMIN_PASSWORD", ctx.grafana_password),
                ("LAB_POSTGRES_READER_PASSWORD", ctx.reader_password),
                // Offline-safe: no plugin downloads, no update checks.
                ("GF_INSTALL_PLUGINS", ""),
                ("GF_PLUGINS_PREINSTALL_DISABLED", "true"),
                ("GF_ANALYTICS_REPORTING_ENABLED", "false"),
                ("GF_ANALYTICS_CHECK_FOR_UPDATES", "false"),
                ("GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES", "false"),
                ("GF_NEWS_NEWS_FEED_ENABLED", "false"),
                (
                    "GF_FEATURE_TOGGLES_ENABLE",
                    "traceqlEditor traceToMetrics traceToProfiles correlations metricsSummary",
                ),
                (
                    "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH",
                    "/var/lib/grafana/dashboards/mythical-red.json",
                ),
            ]);
            // Anonymous access only while no other machine can reach the
            // port; otherwise everyone logs in.
            let anonymous = ctx.publish_address.is_loopback();
            vars.insert("GF_AUTH_ANONYMOUS_ENABLED".into(), anonymous.to_string());
            if anonymous {
                vars.insert("GF_AUTH_ANONYMOUS_ORG_ROLE".into(), "Editor".into());
            }
            (Vec::new(), vars)
        }
    };
    ContainerSpec {
        component: component.name().to_owned(),
        name: ctx.lab.container(component.name()),
        image: ctx.images.get(images::key_of(kind)).to_owned(),
        cmd,
        env,
        ports: component
            .ports
            .iter()
            .map(|(name, host)| (container_port(kind, name), *host))
            .collect(),
        // The proxy's admin API switches faults: never beyond this machine.
        publish_address: if kind == Kind::Proxy {
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        } else {
            ctx.publish_address
        },
        mounts,
        memory_mib: memory_mib(kind),
        labels: ctx.lab.labels(Some(component.name())),
        stop_signal,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::plan;

    fn specs(backends: Backends, publish: IpAddr) -> Vec<ContainerSpec> {
        let lab = LabIdentity::of(Path::new("/labs/one/.mythical-lab"));
        let images = Images::resolve(Path::new("/nonexistent")).unwrap();
        let ctx = Context {
            lab: &lab,
            images: &images,
            backends,
            admin_token: "token",
            reader_password: "reader",
            grafana_password: "grafana",
            configs: Path::new("/labs/one/.mythical-lab/docker"),
            publish_address: publish,
            like_original: false,
        };
        let mut next = 20000;
        let plan = plan::docker(backends, |_| {
            next += 1;
            next
        });
        plan.iter().map(|c| render(c, &ctx)).collect()
    }

    #[test]
    fn a_specific_publish_address_keeps_loopback_for_the_labs_own_calls() {
        let at = |address: &str| {
            let specs = specs(Backends::Lgtm, address.parse().unwrap());
            let grafana = specs
                .into_iter()
                .find(|s| s.component == "grafana")
                .unwrap();
            grafana
                .host_addresses()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(at("127.0.0.1"), ["127.0.0.1"]);
        assert_eq!(at("0.0.0.0"), ["0.0.0.0"]);
        assert_eq!(at("127.0.0.2"), ["127.0.0.2", "127.0.0.1"]);
        assert_eq!(at("192.0.2.7"), ["192.0.2.7", "127.0.0.1"]);
    }

    #[test]
    fn lgtm_specs_are_labelled_limited_and_published_on_loopback() {
        let all = specs(Backends::Lgtm, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let names: Vec<&str> = all.iter().map(|s| s.component.as_str()).collect();
        assert_eq!(
            names,
            [
                "postgres",
                "db-proxy",
                "tempo",
                "loki",
                "mimir",
                "pyroscope",
                "alloy",
                "grafana",
                "mythical-server",
                "mythical-requester"
            ]
        );
        let lab = LabIdentity::of(Path::new("/labs/one/.mythical-lab"));
        for spec in &all {
            assert!(spec.publish_address.is_loopback());
            assert!(spec.memory_mib > 0);
            assert_eq!(spec.labels[LABEL_LAB], lab.id);
            assert_eq!(spec.labels[LABEL_COMPONENT], spec.component);
            assert_eq!(
                spec.name,
                format!("mythical-lab-{}-{}", lab.id, spec.component)
            );
            assert!(!spec.ports.is_empty());
            for mount in &spec.mounts {
                if let Source::Bind(path) = &mount.source {
                    assert!(mount.read_only, "{} mounts {path:?} writable", spec.name);
                    assert!(path.starts_with("/labs/one/.mythical-lab/docker"));
                }
            }
        }
        let by = |name: &str| all.iter().find(|s| s.component == name).unwrap();
        assert_eq!(by("tempo").image, "grafana/tempo:3.0.3");
        assert_eq!(by("tempo").cmd, ["-config.file=/etc/tempo/tempo.yaml"]);
        assert_eq!(
            by("mythical-server").env["OTEL_EXPORTER_OTLP_ENDPOINT"],
            "http://alloy:4317"
        );
        assert_eq!(
            by("mythical-server").env["MYTHICAL_DATABASE_HOST"],
            "db-proxy"
        );
        assert_eq!(
            by("mythical-server").env["MYTHICAL_DATABASE_HOST_PORT"],
            "5432"
        );
        assert_eq!(by("grafana").env["GF_AUTH_ANONYMOUS_ENABLED"], "true");
        assert_eq!(by("grafana").env["GF_SECURITY_ADMIN_PASSWORD"], "grafana");
        assert!(
            by("grafana")
                .mounts
                .iter()
                .any(|m| m.source == Source::Volume(lab.volume("grafana")))
        );
        assert!(
            by("postgres")
                .mounts
                .iter()
                .any(|m| m.target == "/var/lib/postgresql/data" && !m.read_only)
        );
        assert_eq!(by("alloy").ports.len(), 3);
    }

    #[test]
    fn grafana_is_anonymous_only_on_loopback() {
        let all = specs(Backends::Lgtm, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let grafana = all.iter().find(|s| s.component == "grafana").unwrap();
        assert_eq!(grafana.env["GF_AUTH_ANONYMOUS_ENABLED"], "false");
        assert!(!grafana.env.contains_key("GF_AUTH_ANONYMOUS_ORG_ROLE"));
    }

    #[test]
    fn db_proxy_runs_the_lab_image_before_postgres_with_its_admin_on_loopback_only() {
        let all = specs(Backends::Embedded, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let proxy = all.iter().find(|s| s.component == "db-proxy").unwrap();
        let server = all
            .iter()
            .find(|s| s.component == "mythical-server")
            .unwrap();
        assert_eq!(proxy.image, server.image);
        assert_eq!(
            proxy.cmd,
            [
                "proxy",
                "--listen",
                "0.0.0.0:5432",
                "--upstream",
                "postgres:5432",
                "--admin",
                "0.0.0.0:8474"
            ]
        );
        assert_eq!(proxy.env["MYTHICAL_ADMIN_TOKEN"], "token");
        assert_eq!(proxy.memory_mib, 32);
        assert_eq!(proxy.ports.iter().map(|p| p.0).collect::<Vec<_>>(), [8474]);
        assert!(proxy.publish_address.is_loopback());
        assert!(!server.publish_address.is_loopback());
        assert_eq!(server.env["MYTHICAL_DATABASE_HOST"], "db-proxy");
    }

    #[test]
    fn embedded_specs_send_telemetry_to_the_backend_container() {
        let all = specs(Backends::Embedded, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let names: Vec<&str> = all.iter().map(|s| s.component.as_str()).collect();
        assert_eq!(
            names,
            [
                "postgres",
                "db-proxy",
                "backend",
                "mythical-server",
                "mythical-requester"
            ]
        );
        let backend = &all[2];
        assert_eq!(
            backend.ports.iter().map(|p| p.0).collect::<Vec<_>>(),
            [4317, 4318, 3200]
        );
        assert_eq!(
            all[4].env["OTEL_EXPORTER_OTLP_ENDPOINT"],
            "http://backend:4317"
        );
        assert_eq!(all[4].cmd, ["service", "requester"]);
    }

    #[test]
    fn two_state_folders_are_two_labs() {
        let a = LabIdentity::of(Path::new("/a/.mythical-lab"));
        let b = LabIdentity::of(Path::new("/b/.mythical-lab"));
        assert_ne!(a.id, b.id);
        assert_ne!(a.network(), b.network());
        assert_eq!(a.id, LabIdentity::of(Path::new("/a/.mythical-lab")).id);
    }
}
