//! Runs the real service binaries against a real Postgres and a real OTLP
//! receiver, configured by environment as the original's containers are.

#![allow(dead_code)] // each test binary uses its own part of the kit

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lab_testkit::{TestPostgres, free_port};

pub const TOKEN: &str = "test-admin-token";

/// A running service binary, killed when dropped.
pub struct Service {
    child: Child,
    pub port: u16,
    pub admin_port: Option<u16>,
}

impl Service {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}{path}",
            self.admin_port.unwrap_or(self.port)
        )
    }

    /// Still running (not crashed)?
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("querying the child").is_none()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Telemetry settings: export to `endpoint` with `protocol`, quickly.
pub fn otlp_env(endpoint: &str, protocol: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_BLRP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500".to_owned()),
    ]
}

/// No export at all.
pub fn no_telemetry() -> Vec<(&'static str, String)> {
    vec![("OTEL_SDK_DISABLED", "true".to_owned())]
}

fn spawn(
    binary: &str,
    env: Vec<(&'static str, String)>,
    port: u16,
    admin_port: Option<u16>,
) -> Service {
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    Service {
        child,
        port,
        admin_port,
    }
}

/// Starts mythical-server against `pg` and waits until `/healthz` says ready.
pub async fn start_server(pg: &TestPostgres, mut env: Vec<(&'static str, String)>) -> Service {
    env.extend(pg.env());
    // A caller that picked the port (to scrape it, say) keeps it.
    let port = match env.iter().find(|(k, _)| *k == "MYTHICAL_SERVER_LISTEN") {
        Some((_, addr)) => addr.rsplit(':').next().unwrap().parse().unwrap(),
        None => {
            let port = free_port();
            env.push(("MYTHICAL_SERVER_LISTEN", format!("127.0.0.1:{port}")));
            port
        }
    };
    if !env.iter().any(|(k, _)| *k == "MYTHICAL_ADMIN_TOKEN") {
        env.push(("MYTHICAL_ADMIN_TOKEN", TOKEN.to_owned()));
    }
    let admin_port = env
        .iter()
        .find(|(k, _)| *k == "MYTHICAL_ADMIN_LISTEN")
        .map(|(_, v)| v.rsplit(':').next().unwrap().parse().unwrap());
    let mut server = spawn(env!("CARGO_BIN_EXE_mythical-server"), env, port, admin_port);
    wait_healthy(&mut server, Duration::from_secs(30)).await;
    server
}

/// Starts mythical-requester against `server`.
pub async fn start_requester(server_port: u16, mut env: Vec<(&'static str, String)>) -> Service {
    let port = free_port();
    env.push((
        "MYTHICAL_SERVER_HOST_PORT",
        format!("127.0.0.1:{server_port}"),
    ));
    env.push(("MYTHICAL_REQUESTER_LISTEN", format!("127.0.0.1:{port}")));
    env.push(("MYTHICAL_ADMIN_TOKEN", TOKEN.to_owned()));
    let mut requester = spawn(env!("CARGO_BIN_EXE_mythical-requester"), env, port, None);
    wait_healthy(&mut requester, Duration::from_secs(30)).await;
    requester
}

pub async fn wait_healthy(service: &mut Service, timeout: Duration) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        assert!(service.is_running(), "the service exited during start-up");
        if let Ok(response) = client.get(service.url("/healthz")).send().await
            && response.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the service was not healthy within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Turns a fault switch on through the admin API.
pub async fn set_fault(service: &Service, kind: &str, rate: f64) {
    let response = reqwest::Client::new()
        .put(service.admin_url(&format!("/admin/faults/{kind}")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "rate": rate }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}
