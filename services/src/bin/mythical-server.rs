//! mythical-server: configured by its environment only, as the original's
//! container is (see `ServerConfig::from_env`).

use mythical_services::server::{self, ServerConfig};
use mythical_services::telemetry::Telemetry;

/// Sampled, so the service's heap profile shows who holds its memory.
#[global_allocator]
static HEAP: mythical_services::heap::Sampled = mythical_services::heap::Sampled;

fn main() -> anyhow::Result<()> {
    mythical_services::heap::limit_arenas();
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    mythical_services::init_console_log();
    let config = ServerConfig::from_env()?;
    let telemetry = Telemetry::init("mythical-server", Some(&config.version))?;
    let result = server::run(config, &telemetry, mythical_services::shutdown_signal()).await;
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    result
}
