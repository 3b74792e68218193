//! The stack plan: every component defined once — what it is, its ports,
//! how its health is checked, what it needs first. Runtimes execute it.

use std::collections::BTreeMap;

/// What a component is; a runtime knows how to start each kind. A lab runs
/// at most one component of each kind, so the kind is also its identity:
/// its name in `lab status`, its log file, its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Postgres,
    /// The TCP fault proxy between mythical-server and Postgres
    /// (`lab_proxy`): the network faults act here.
    Proxy,
    /// The lab's embedded backend (Tempo, Loki and Prometheus APIs in one).
    Backend,
    Server,
    Requester,
    Alloy,
    Tempo,
    Loki,
    Mimir,
    Pyroscope,
    Grafana,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Postgres,
        Kind::Proxy,
        Kind::Backend,
        Kind::Server,
        Kind::Requester,
        Kind::Alloy,
        Kind::Tempo,
        Kind::Loki,
        Kind::Mimir,
        Kind::Pyroscope,
        Kind::Grafana,
    ];

    /// The two mythical services, whose admin APIs hold fault switches.
    pub const SERVICES: [Kind; 2] = [Kind::Server, Kind::Requester];

    /// Its name, as people and the state file call it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::Proxy => "db-proxy",
            Kind::Backend => "backend",
            Kind::Server => "mythical-server",
            Kind::Requester => "mythical-requester",
            Kind::Alloy => "alloy",
            Kind::Tempo => "tempo",
            Kind::Loki => "loki",
            Kind::Mimir => "mimir",
            Kind::Pyroscope => "pyroscope",
            Kind::Grafana => "grafana",
        }
    }

    /// The kind named `name`, if any is.
    pub fn named(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Which of its endpoints answers its health check and on what path;
    /// `None` for Postgres, which is asked with a query instead.
    pub fn health_check(self) -> Option<(&'static str, &'static str)> {
        match self {
            Kind::Postgres => None,
            Kind::Backend => Some(("query", "/ready")),
            Kind::Proxy => Some(("admin", "/healthz")),
            Kind::Tempo | Kind::Loki | Kind::Mimir | Kind::Pyroscope => Some(("http", "/ready")),
            Kind::Alloy => Some(("http", "/-/ready")),
            Kind::Grafana => Some(("http", "/api/health")),
            Kind::Server | Kind::Requester => Some(("http", "/healthz")),
        }
    }

    /// The two mythical services, which send telemetry and take faults
    /// through an admin API.
    pub fn is_service(self) -> bool {
        matches!(self, Kind::Server | Kind::Requester)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which telemetry backends a lab runs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Backends {
    /// The lab's own backend: one small process answering the same APIs.
    Embedded,
    /// The real Grafana stack: Alloy, Tempo, Loki, Mimir, Pyroscope, Grafana.
    Lgtm,
}

impl Backends {
    pub fn as_str(self) -> &'static str {
        match self {
            Backends::Embedded => "embedded",
            Backends::Lgtm => "lgtm",
        }
    }
}

impl std::fmt::Display for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a runtime learns a component is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Postgres answers a query on this port.
    Postgres { port: u16 },
    /// An HTTP GET answers 2xx.
    Http { url: String },
}

#[derive(Debug, Clone)]
pub struct Component {
    pub kind: Kind,
    pub depends_on: Vec<Kind>,
    /// Named loopback ports on the host, e.g. `http` → 4000.
    pub ports: BTreeMap<&'static str, u16>,
}

/// The ports a lab uses; chosen free at `up`.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub postgres: u16,
    /// Where the db-proxy takes the server's connections.
    pub proxy: u16,
    pub proxy_admin: u16,
    pub query: u16,
    pub otlp_grpc: u16,
    pub otlp_http: u16,
    pub server: u16,
    pub requester: u16,
}

impl Component {
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// How a runtime learns it is ready, on this machine's ports.
    pub fn health(&self) -> Health {
        let port = |endpoint: &str| self.ports.get(endpoint).copied().unwrap_or(0);
        match self.kind.health_check() {
            None => Health::Postgres {
                port: port("postgres"),
            },
            Some((endpoint, path)) => Health::Http {
                url: format!("http://127.0.0.1:{}{path}", port(endpoint)),
            },
        }
    }

    /// The URLs a person or a script uses to reach it.
    pub fn endpoints(&self) -> BTreeMap<String, String> {
        self.ports
            .iter()
            .map(|(name, port)| {
                let url = match (self.kind, *name) {
                    (Kind::Postgres, _) | (Kind::Proxy, "postgres") => {
                        format!("postgres://postgres@127.0.0.1:{port}/postgres")
                    }
                    _ => format!("http://127.0.0.1:{port}"),
                };
                (name.to_string(), url)
            })
            .collect()
    }
}

/// The db-proxy's preferred admin port (Toxiproxy's).
pub const PROXY_ADMIN_PORT: u16 = 8474;

/// The db-proxy: forwards the server's connections to Postgres; healthy
/// when its admin API answers. Natively it listens on the host (`postgres`
/// port); in docker only its admin port is published.
fn db_proxy(listen: Option<u16>, admin: u16) -> Component {
    let mut ports = BTreeMap::from([("admin", admin)]);
    if let Some(listen) = listen {
        ports.insert("postgres", listen);
    }
    Component {
        kind: Kind::Proxy,
        depends_on: vec![Kind::Postgres],
        ports,
    }
}

/// The native stack: Postgres behind the db-proxy, the embedded backend,
/// the two services.
pub fn native(ports: Ports) -> Vec<Component> {
    vec![
        Component {
            kind: Kind::Postgres,
            depends_on: vec![],
            ports: BTreeMap::from([("postgres", ports.postgres)]),
        },
        db_proxy(Some(ports.proxy), ports.proxy_admin),
        Component {
            kind: Kind::Backend,
            depends_on: vec![],
            ports: BTreeMap::from([
                ("query", ports.query),
                ("otlp_grpc", ports.otlp_grpc),
                ("otlp_http", ports.otlp_http),
            ]),
        },
        Component {
            kind: Kind::Server,
            depends_on: vec![Kind::Proxy, Kind::Backend],
            ports: BTreeMap::from([("http", ports.server)]),
        },
        Component {
            kind: Kind::Requester,
            depends_on: vec![Kind::Server],
            ports: BTreeMap::from([("http", ports.requester)]),
        },
    ]
}

/// The docker stack: Postgres behind the db-proxy, the services and either the embedded
/// backend or the Grafana stack. `pick` chooses a free host port near the
/// preferred one.
pub fn docker(backends: Backends, mut pick: impl FnMut(u16) -> u16) -> Vec<Component> {
    let http = |kind: Kind, port: u16, depends_on| Component {
        kind,
        depends_on,
        ports: BTreeMap::from([("http", port)]),
    };
    let postgres = pick(15432);
    let mut plan = vec![Component {
        kind: Kind::Postgres,
        depends_on: vec![],
        ports: BTreeMap::from([("postgres", postgres)]),
    }];
    plan.push(db_proxy(None, pick(PROXY_ADMIN_PORT)));
    let collector = match backends {
        Backends::Embedded => {
            let query = pick(lab_backend::DEFAULT_QUERY_PORT);
            plan.push(Component {
                kind: Kind::Backend,
                depends_on: vec![],
                ports: BTreeMap::from([
                    ("query", query),
                    ("otlp_grpc", pick(lab_backend::DEFAULT_OTLP_GRPC_PORT)),
                    ("otlp_http", pick(lab_backend::DEFAULT_OTLP_HTTP_PORT)),
                ]),
            });
            Kind::Backend
        }
        Backends::Lgtm => {
            plan.push(http(Kind::Tempo, pick(3200), vec![]));
            plan.push(http(Kind::Loki, pick(3100), vec![]));
            plan.push(http(Kind::Mimir, pick(9009), vec![]));
            plan.push(http(Kind::Pyroscope, pick(4040), vec![]));
            let mut alloy = http(
                Kind::Alloy,
                pick(12345),
                vec![Kind::Tempo, Kind::Loki, Kind::Mimir, Kind::Pyroscope],
            );
            alloy.ports.insert("otlp_grpc", pick(4317));
            alloy.ports.insert("otlp_http", pick(4318));
            plan.push(alloy);
            plan.push(http(
                Kind::Grafana,
                pick(3000),
                vec![
                    Kind::Postgres,
                    Kind::Tempo,
                    Kind::Loki,
                    Kind::Mimir,
                    Kind::Pyroscope,
                ],
            ));
            Kind::Alloy
        }
    };
    let server = pick(4000);
    plan.push(http(Kind::Server, server, vec![Kind::Proxy, collector]));
    plan.push(http(Kind::Requester, pick(4001), vec![Kind::Server]));
    plan
}

/// The components ordered so each comes after what it depends on (the
/// plan's own order among equals).
pub fn in_dependency_order(plan: Vec<Component>) -> Vec<Component> {
    let mut ordered: Vec<Component> = Vec::with_capacity(plan.len());
    let mut waiting = plan;
    while !waiting.is_empty() {
        let ready = waiting
            .iter()
            .position(|c| {
                c.depends_on
                    .iter()
                    .all(|d| ordered.iter().any(|o| o.kind == *d))
            })
            .expect("the plan has no dependency cycle");
        ordered.push(waiting.remove(ready));
    }
    ordered
}

/// A kind is written as its name.
impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Kind, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Kind::named(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("no component is named {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_start_first() {
        let ports = Ports {
            postgres: 1,
            proxy: 7,
            proxy_admin: 8,
            query: 2,
            otlp_grpc: 3,
            otlp_http: 4,
            server: 5,
            requester: 6,
        };
        let mut plan = native(ports);
        plan.reverse();
        let names: Vec<&str> = in_dependency_order(plan).iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "backend",
                "postgres",
                "db-proxy",
                "mythical-server",
                "mythical-requester"
            ]
        );
    }

    #[test]
    fn each_health_check_is_on_its_own_port() {
        let ports = Ports {
            postgres: 1,
            proxy: 7,
            proxy_admin: 8,
            query: 2,
            otlp_grpc: 3,
            otlp_http: 4,
            server: 5,
            requester: 6,
        };
        let health: Vec<Health> = native(ports).iter().map(Component::health).collect();
        let http = |url: &str| Health::Http {
            url: url.to_owned(),
        };
        assert_eq!(
            health,
            [
                Health::Postgres { port: 1 },
                http("http://127.0.0.1:8/healthz"),
                http("http://127.0.0.1:2/ready"),
                http("http://127.0.0.1:5/healthz"),
                http("http://127.0.0.1:6/healthz"),
            ]
        );
        let lgtm = docker(Backends::Lgtm, |preferred| preferred);
        let grafana = lgtm.iter().find(|c| c.kind == Kind::Grafana).unwrap();
        assert_eq!(grafana.health(), http("http://127.0.0.1:3000/api/health"));
    }

    #[test]
    fn every_kind_is_found_by_its_name() {
        for kind in Kind::ALL {
            assert_eq!(Kind::named(kind.name()), Some(kind));
        }
        assert_eq!(Kind::named("mythical-server"), Some(Kind::Server));
        assert_eq!(Kind::named("nobody"), None);
    }

    #[test]
    fn the_server_reaches_postgres_only_through_the_db_proxy() {
        let mut pick = 30000;
        for plan in [
            docker(Backends::Embedded, |_| {
                pick += 1;
                pick
            }),
            docker(Backends::Lgtm, |_| {
                pick += 1;
                pick
            }),
        ] {
            let by = |kind: Kind| plan.iter().find(|c| c.kind == kind).unwrap();
            assert!(by(Kind::Server).depends_on.contains(&Kind::Proxy));
            assert!(!by(Kind::Server).depends_on.contains(&Kind::Postgres));
            assert_eq!(by(Kind::Proxy).depends_on, [Kind::Postgres]);
            // Published: its admin API only; the server reaches it inside
            // the lab's network.
            assert_eq!(by(Kind::Proxy).ports.keys().collect::<Vec<_>>(), [&"admin"]);
        }
    }
}
