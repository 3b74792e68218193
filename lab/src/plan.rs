//! The stack plan: every component defined once — what it is, its ports,
//! how its health is checked, what it needs first. Runtimes execute it.

use std::collections::BTreeMap;

/// What a component is; a runtime knows how to start each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Which telemetry backends a lab runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
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
    pub name: &'static str,
    pub kind: Kind,
    pub depends_on: Vec<&'static str>,
    /// Named loopback ports on the host, e.g. `http` → 4000.
    pub ports: BTreeMap<&'static str, u16>,
    pub health: Health,
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
        name: "db-proxy",
        kind: Kind::Proxy,
        depends_on: vec!["postgres"],
        ports,
        health: Health::Http {
            url: format!("http://127.0.0.1:{admin}/healthz"),
        },
    }
}

/// The native stack: Postgres behind the db-proxy, the embedded backend,
/// the two services.
pub fn native(ports: Ports) -> Vec<Component> {
    vec![
        Component {
            name: "postgres",
            kind: Kind::Postgres,
            depends_on: vec![],
            ports: BTreeMap::from([("postgres", ports.postgres)]),
            health: Health::Postgres {
                port: ports.postgres,
            },
        },
        db_proxy(Some(ports.proxy), ports.proxy_admin),
        Component {
            name: "backend",
            kind: Kind::Backend,
            depends_on: vec![],
            ports: BTreeMap::from([
                ("query", ports.query),
                ("otlp_grpc", ports.otlp_grpc),
                ("otlp_http", ports.otlp_http),
            ]),
            health: Health::Http {
                url: format!("http://127.0.0.1:{}/ready", ports.query),
            },
        },
        Component {
            name: "mythical-server",
            kind: Kind::Server,
            depends_on: vec!["db-proxy", "backend"],
            ports: BTreeMap::from([("http", ports.server)]),
            health: Health::Http {
                url: format!("http://127.0.0.1:{}/healthz", ports.server),
            },
        },
        Component {
            name: "mythical-requester",
            kind: Kind::Requester,
            depends_on: vec!["mythical-server"],
            ports: BTreeMap::from([("http", ports.requester)]),
            health: Health::Http {
                url: format!("http://127.0.0.1:{}/healthz", ports.requester),
            },
        },
    ]
}

/// The docker stack: Postgres behind the db-proxy, the services and either the embedded
/// backend or the Grafana stack. `pick` chooses a free host port near the
/// preferred one.
pub fn docker(backends: Backends, mut pick: impl FnMut(u16) -> u16) -> Vec<Component> {
    let http = |name: &'static str, kind: Kind, port: u16, path: &str, depends_on| Component {
        name,
        kind,
        depends_on,
        ports: BTreeMap::from([("http", port)]),
        health: Health::Http {
            url: format!("http://127.0.0.1:{port}{path}"),
        },
    };
    let postgres = pick(15432);
    let mut plan = vec![Component {
        name: "postgres",
        kind: Kind::Postgres,
        depends_on: vec![],
        ports: BTreeMap::from([("postgres", postgres)]),
        health: Health::Postgres { port: postgres },
    }];
    plan.push(db_proxy(None, pick(PROXY_ADMIN_PORT)));
    let collector = match backends {
        Backends::Embedded => {
            let query = pick(lab_backend::DEFAULT_QUERY_PORT);
            plan.push(Component {
                name: "backend",
                kind: Kind::Backend,
                depends_on: vec![],
                ports: BTreeMap::from([
                    ("query", query),
                    ("otlp_grpc", pick(lab_backend::DEFAULT_OTLP_GRPC_PORT)),
                    ("otlp_http", pick(lab_backend::DEFAULT_OTLP_HTTP_PORT)),
                ]),
                health: Health::Http {
                    url: format!("http://127.0.0.1:{query}/ready"),
                },
            });
            "backend"
        }
        Backends::Lgtm => {
            plan.push(http("tempo", Kind::Tempo, pick(3200), "/ready", vec![]));
            plan.push(http("loki", Kind::Loki, pick(3100), "/ready", vec![]));
            plan.push(http("mimir", Kind::Mimir, pick(9009), "/ready", vec![]));
            plan.push(http(
                "pyroscope",
                Kind::Pyroscope,
                pick(4040),
                "/ready",
                vec![],
            ));
            let mut alloy = http(
                "alloy",
                Kind::Alloy,
                pick(12345),
                "/-/ready",
                vec!["tempo", "loki", "mimir", "pyroscope"],
            );
            alloy.ports.insert("otlp_grpc", pick(4317));
            alloy.ports.insert("otlp_http", pick(4318));
            plan.push(alloy);
            plan.push(http(
                "grafana",
                Kind::Grafana,
                pick(3000),
                "/api/health",
                vec!["postgres", "tempo", "loki", "mimir", "pyroscope"],
            ));
            "alloy"
        }
    };
    let server = pick(4000);
    plan.push(http(
        "mythical-server",
        Kind::Server,
        server,
        "/healthz",
        vec!["db-proxy", collector],
    ));
    plan.push(http(
        "mythical-requester",
        Kind::Requester,
        pick(4001),
        "/healthz",
        vec!["mythical-server"],
    ));
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
                    .all(|d| ordered.iter().any(|o| o.name == *d))
            })
            .expect("the plan has no dependency cycle");
        ordered.push(waiting.remove(ready));
    }
    ordered
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
        let names: Vec<&str> = in_dependency_order(plan).iter().map(|c| c.name).collect();
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
            let by = |name: &str| plan.iter().find(|c| c.name == name).unwrap();
            assert!(by("mythical-server").depends_on.contains(&"db-proxy"));
            assert!(!by("mythical-server").depends_on.contains(&"postgres"));
            assert_eq!(by("db-proxy").depends_on, ["postgres"]);
            assert_eq!(by("db-proxy").kind, Kind::Proxy);
            // Published: its admin API only; the server reaches it inside
            // the lab's network.
            assert_eq!(by("db-proxy").ports.keys().collect::<Vec<_>>(), [&"admin"]);
        }
    }
}
