//! mythical-server: the beasts' HTTP API over Postgres, API-compatible with
//! the original (`GET|POST|DELETE /:beast` on port 4000), fully
//! instrumented, with the `null-name` switch behind the admin API.

mod api;
mod cache;
mod fingerprint;
mod metrics;
pub(crate) use metrics::resident_bytes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::routing::get;
use mythical_storage::{DbConfig, Store};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, Tracer as _};
use opentelemetry_sdk::trace::SdkTracer;

pub use metrics::BUCKETS_MS;

use crate::config::{db_config_from_env, env_flag, env_parse, env_var, listen_addr};
use crate::events::{EventLog, Level, Logfmt};
use crate::faults::{Switchboard, honoured_by};
use crate::telemetry::{Conventions, Telemetry};
use metrics::RequestMetrics;

/// Everything mythical-server reads from its environment.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `MYTHICAL_SERVER_LISTEN`, default 127.0.0.1:4000.
    pub listen: SocketAddr,
    /// `MYTHICAL_ADMIN_LISTEN`: the admin API on its own address; when
    /// unset it is served under `/admin` on the public port.
    pub admin_listen: Option<SocketAddr>,
    pub admin_token: Option<String>,
    pub db: DbConfig,
    pub namespace: String,
    pub version: String,
    /// `MYTHICAL_FAULTS`, e.g. `null-name=0.1`: switches on at start
    /// (without it, the original's `ALWAYS_SUCCEED` decides).
    pub faults: Option<String>,
    /// `MYTHICAL_SERVER_DATABASE_TEARDOWN_TIMEOUT` (ms): the original's
    /// periodic table wipe; off unless set.
    pub teardown_every: Option<Duration>,
    /// `MYTHICAL_LOG_STDOUT`: echo every log event on stdout.
    pub log_stdout: bool,
}

impl ServerConfig {
    pub fn from_env() -> Result<ServerConfig> {
        let admin_listen = match env_var("MYTHICAL_ADMIN_LISTEN") {
            Some(_) => Some(listen_addr("MYTHICAL_ADMIN_LISTEN", 0)?),
            None => None,
        };
        Ok(ServerConfig {
            listen: listen_addr("MYTHICAL_SERVER_LISTEN", 4000)?,
            admin_listen,
            admin_token: env_var("MYTHICAL_ADMIN_TOKEN"),
            db: db_config_from_env()?,
            namespace: env_var("NAMESPACE").unwrap_or_else(|| "mythical".into()),
            version: env_var("MYTHICAL_SERVICE_VERSION")
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").into()),
            faults: env_var("MYTHICAL_FAULTS").or_else(original_fault),
            teardown_every: env_parse::<u64>(
                "MYTHICAL_SERVER_DATABASE_TEARDOWN_TIMEOUT",
                "milliseconds",
            )?
            .filter(|ms| *ms > 1)
            .map(Duration::from_millis),
            log_stdout: env_flag("MYTHICAL_LOG_STDOUT"),
        })
    }
}

/// The original's 10% NULL-name fault, as its `ALWAYS_SUCCEED` decides:
/// `false` turns it on, `true` off. Unset, it is on only when the service
/// runs in the original's compose file (its `TRACING_COLLECTOR_HOST` or
/// `LOGS_TARGET` is set), so the image behaves there as the original does,
/// while the lab itself starts healthy.
fn original_fault() -> Option<String> {
    let in_original =
        env_var("TRACING_COLLECTOR_HOST").is_some() || env_var("LOGS_TARGET").is_some();
    let always_succeed = match env_var("ALWAYS_SUCCEED") {
        Some(value) => value.trim().eq_ignore_ascii_case("true"),
        None => !in_original,
    };
    (!always_succeed).then(|| "null-name=0.1".to_owned())
}

/// What every request handler shares.
pub(crate) struct AppState {
    store: Store,
    /// How long one statement may take (`MYTHICAL_DATABASE_QUERY_TIMEOUT_MS`).
    query_timeout: Duration,
    /// The attributes every database span shares, built once.
    db_attributes: Vec<KeyValue>,
    /// Whether spans also carry the older attribute names.
    conventions: Conventions,
    tracer: SdkTracer,
    events: EventLog,
    metrics: RequestMetrics,
    faults: Arc<Switchboard>,
    /// Migrations applied: the server is ready once Postgres also answers.
    migrated: AtomicBool,
    /// A table wipe is running: requests fail with the original's
    /// "Table is not available".
    teardown: AtomicBool,
    /// Copies of answers, kept while the cache does not evict.
    answers: cache::AnswerCache,
    /// What the standing faults hold: connections, dropped tables.
    leaked: crate::faults::pool_exhaustion::Leaked,
    wiped: crate::faults::table_wipe::Wiped,
}

/// The attributes every database span shares: `db.system` is in both
/// conventions, the rest in the stable one and, when asked, the older one.
fn db_attributes(db: &mythical_storage::DbConfig, conventions: Conventions) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new("db.system.name", "postgresql"),
        KeyValue::new("db.system", "postgresql"),
        KeyValue::new("db.namespace", db.database.clone()),
        KeyValue::new("server.address", db.host.clone()),
        KeyValue::new("server.port", i64::from(db.port)),
    ];
    if conventions.old_database {
        attributes.extend([
            KeyValue::new("db.name", db.database.clone()),
            KeyValue::new("db.user", db.user.clone()),
            KeyValue::new("net.peer.name", db.host.clone()),
            KeyValue::new("net.peer.port", i64::from(db.port)),
        ]);
    }
    attributes
}

/// Runs the server until `shutdown` resolves.
pub async fn run(
    config: ServerConfig,
    telemetry: &Telemetry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let faults = Arc::new(Switchboard::new(honoured_by("mythical-server")));
    if let Some(spec) = &config.faults {
        faults.apply_spec(spec).context("MYTHICAL_FAULTS")?;
    }
    let state = Arc::new(AppState {
        store: Store::connect_lazy(&config.db),
        query_timeout: config.db.query_timeout,
        db_attributes: db_attributes(&config.db, telemetry.conventions),
        conventions: telemetry.conventions,
        tracer: telemetry.tracer.clone(),
        events: EventLog::new(
            telemetry.logger.clone(),
            "mythical-server",
            &config.namespace,
            config.log_stdout,
        )
        .with_clock(faults.clone()),
        metrics: RequestMetrics::new(&telemetry.meter),
        faults: faults.clone(),
        migrated: AtomicBool::new(false),
        teardown: AtomicBool::new(false),
        answers: Default::default(),
        leaked: Default::default(),
        wiped: Default::default(),
    });

    let public = Router::new()
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route(
            "/{beast}",
            get(api::list).post(api::create).delete(api::remove),
        )
        .with_state(state.clone());
    let admin = crate::admin::router(
        "mythical-server",
        faults,
        config.admin_token.clone(),
        Router::new(),
    );

    let listener = bind(config.listen).await?;
    let mut tasks = tokio::task::JoinSet::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let public = match config.admin_listen {
        Some(addr) => {
            let admin_listener = bind(addr).await?;
            tasks.spawn(serve(admin_listener, admin, stop_rx.clone()));
            public
        }
        None => public.merge(admin),
    };
    tasks.spawn(serve(listener, public, stop_rx));
    tasks.spawn(prepare_database(state.clone()));
    if let Some(every) = config.teardown_every {
        tasks.spawn(teardown_loop(state.clone(), every));
    }
    state.events.emit(
        Level::Info,
        None,
        None,
        Logfmt::new().field(
            "message",
            format!("mythical-server listening on {}", config.listen),
        ),
    );

    shutdown.await;
    let _ = stop_tx.send(true);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr}: is another server using that port? Stop it or choose another address")
    })
}

async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await;
}

/// Applies the migrations, retrying while Postgres is away (the original
/// retried its whole start every 5 s; here the API is up meanwhile and
/// `/healthz` says not ready).
async fn prepare_database(state: Arc<AppState>) {
    let mut attempt = 0u32;
    loop {
        let mut span = state.tracer.start("prepare database");
        match state.store.migrate().await {
            Ok(()) => {
                state.migrated.store(true, Ordering::Release);
                span.end();
                state.events.emit(
                    Level::Info,
                    None,
                    None,
                    Logfmt::new().field("message", "database schema ready"),
                );
                return;
            }
            Err(err) => {
                span.set_status(opentelemetry::trace::Status::error(err.to_string()));
                span.end();
                attempt += 1;
                if attempt == 1 || attempt.is_multiple_of(30) {
                    state.events.emit(
                        Level::Warn,
                        None,
                        None,
                        Logfmt::new()
                            .field("message", "database not ready, retrying every second")
                            .field("error", &err),
                    );
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The original's periodic teardown: drop every table, then create them
/// again, with requests failing meanwhile.
async fn teardown_loop(state: Arc<AppState>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.tick().await;
    loop {
        interval.tick().await;
        let mut span = state.tracer.start("table wipe");
        let cx = span.span_context().clone();
        state.teardown.store(true, Ordering::Release);
        let result = async {
            state.store.drop_tables().await?;
            state.store.create_tables().await
        }
        .await;
        state.teardown.store(false, Ordering::Release);
        let line = Logfmt::new().field("traceID", cx.trace_id());
        match result {
            Ok(()) => state.events.emit(
                Level::Info,
                None,
                Some(&cx),
                line.field("message", "dropped and recreated every beast table"),
            ),
            Err(err) => {
                span.set_status(opentelemetry::trace::Status::error(err.to_string()));
                state
                    .events
                    .emit(Level::Error, None, Some(&cx), line.field("error", &err));
            }
        }
        span.end();
    }
}
