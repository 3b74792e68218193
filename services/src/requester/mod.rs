//! mythical-requester: the original's traffic against mythical-server
//! (GET or POST 50/50, a uniform beast, a DELETE after some GETs), each
//! request a traced, logged and measured operation, with the `missing-name`
//! switch and a traffic control behind the admin API.

mod names;
mod traffic;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use mythical_storage::Beast;
use opentelemetry::metrics::Gauge;
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanKind, Status, TraceContextExt as _, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;
use prometheus_client::metrics::gauge::Gauge as PromGauge;
use prometheus_client::registry::Registry;
use rand::RngExt;
use serde_json::Value;

pub use names::{NAME_SPACE, random_name};
pub use traffic::{Traffic, TrafficSetting};

use crate::config::{env_flag, env_parse, env_var, listen_addr};
use crate::events::{EventLog, Level, Logfmt};
use crate::faults::{Switchboard, bad_deploy, broken_propagation, duplicate_name, missing_name};
use crate::random;
use crate::telemetry::Telemetry;

/// Everything mythical-requester reads from its environment.
#[derive(Debug, Clone)]
pub struct RequesterConfig {
    /// `MYTHICAL_SERVER_HOST_PORT`, the original's variable (default
    /// `mythical-server:4000`).
    pub server: String,
    /// `MYTHICAL_REQUESTER_LISTEN`: `/metrics` and `/healthz`, default
    /// 127.0.0.1:4001.
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub admin_token: Option<String>,
    /// `MYTHICAL_REQUESTER_LOOPS`: concurrent request loops (the original
    /// ran four).
    pub loops: u32,
    /// `MYTHICAL_REQUESTER_RATE`: requests per second in total; unset for
    /// the original's spiky pacing.
    pub rate: Option<f64>,
    pub namespace: String,
    pub faults: Option<String>,
    pub log_stdout: bool,
}

impl RequesterConfig {
    pub fn from_env() -> Result<RequesterConfig> {
        let admin_listen = match env_var("MYTHICAL_ADMIN_LISTEN") {
            Some(_) => Some(listen_addr("MYTHICAL_ADMIN_LISTEN", 0)?),
            None => None,
        };
        Ok(RequesterConfig {
            server: env_var("MYTHICAL_SERVER_HOST_PORT")
                .unwrap_or_else(|| "mythical-server:4000".into()),
            listen: listen_addr("MYTHICAL_REQUESTER_LISTEN", 4001)?,
            admin_listen,
            admin_token: env_var("MYTHICAL_ADMIN_TOKEN"),
            loops: env_parse("MYTHICAL_REQUESTER_LOOPS", "a number of loops")?.unwrap_or(4),
            rate: env_parse("MYTHICAL_REQUESTER_RATE", "requests per second")?,
            namespace: env_var("NAMESPACE").unwrap_or_else(|| "mythical".into()),
            faults: env_var("MYTHICAL_FAULTS"),
            log_stdout: env_flag("MYTHICAL_LOG_STDOUT"),
        })
    }
}

/// What the request loops share.
struct Requester {
    base_url: String,
    http: reqwest::Client,
    /// A tracer per deploy, each its own resource's `service.version`:
    /// (version, tracer).
    deploys: [(&'static str, SdkTracer); 2],
    conventions: crate::telemetry::Conventions,
    events: EventLog,
    faults: Arc<Switchboard>,
    traffic: Arc<Traffic>,
    danger: Danger,
    /// The previous request's span, linked from the next one to show span
    /// links (the original kept it in a global for the same purpose).
    previous: Mutex<Option<SpanContext>>,
}

/// `mythical_danger_level_30s`: each request adds its beast's danger level;
/// reset every 30 seconds.
struct Danger {
    prometheus: PromGauge,
    otlp: Gauge<i64>,
}

impl Danger {
    fn add(&self, level: u64) {
        let now = self.prometheus.inc_by(level as i64) + level as i64;
        self.otlp.record(now, &[]);
    }
    fn reset(&self) {
        self.prometheus.set(0);
        self.otlp.record(0, &[]);
    }
}

/// Runs the loops and the metrics endpoint until `shutdown` resolves.
pub async fn run(
    config: RequesterConfig,
    telemetry: &Telemetry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let faults = Arc::new(Switchboard::new(crate::faults::honoured_by(
        "mythical-requester",
    )));
    if let Some(spec) = &config.faults {
        faults.apply_spec(spec).context("MYTHICAL_FAULTS")?;
    }
    let traffic = Arc::new(Traffic::new(config.loops, config.rate));
    let mut registry = Registry::default();
    let prometheus = PromGauge::default();
    registry.register(
        "mythical_danger_level_30s",
        "Recent accumulated danger level over the past 30 seconds",
        prometheus.clone(),
    );
    let danger = Danger {
        prometheus,
        otlp: telemetry
            .meter
            .i64_gauge("mythical_danger_level_30s")
            .with_description("Recent accumulated danger level over the past 30 seconds")
            .build(),
    };
    let requester = Arc::new(Requester {
        base_url: format!("http://{}", config.server.trim_start_matches("http://")),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("mythical-requester/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?,
        deploys: [
            ("1.9.2", telemetry.deployed("1.9.2")?),
            ("2.0.0", telemetry.deployed("2.0.0")?),
        ],
        conventions: telemetry.conventions,
        events: EventLog::new(
            telemetry.logger.clone(),
            "mythical-requester",
            &config.namespace,
            config.log_stdout,
        ),
        faults: faults.clone(),
        traffic: traffic.clone(),
        danger,
        previous: Mutex::new(None),
    });

    let registry = Arc::new(registry);
    let public = Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route(
            "/metrics",
            get(move |headers: axum::http::HeaderMap| {
                let registry = registry.clone();
                async move {
                    let mut out = String::new();
                    prometheus_client::encoding::text::encode(&mut out, &registry)
                        .expect("writing to a String cannot fail");
                    crate::exposition::respond(&headers, out)
                }
            }),
        );
    let admin = crate::admin::router(
        "mythical-requester",
        faults,
        config.admin_token.clone(),
        traffic::admin_routes(traffic.clone()),
    );

    let mut tasks = tokio::task::JoinSet::new();
    let listener = bind(config.listen).await?;
    let public = match config.admin_listen {
        Some(addr) => {
            let admin_listener = bind(addr).await?;
            tasks.spawn(async move {
                let _ = axum::serve(admin_listener, admin).await;
            });
            public
        }
        None => public.merge(admin),
    };
    tasks.spawn(async move {
        let _ = axum::serve(listener, public).await;
    });
    for _ in 0..traffic.loops() {
        let requester = requester.clone();
        tasks.spawn(async move {
            loop {
                if requester.traffic.is_paused() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                requester.one_request().await;
                tokio::time::sleep(requester.traffic.next_gap()).await;
            }
        });
    }
    let resetter = requester.clone();
    tasks.spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(30));
        loop {
            every.tick().await;
            resetter.danger.reset();
        }
    });

    shutdown.await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr}: is another program using that port? Stop it or choose another address")
    })
}

/// How one HTTP call to the server went.
struct Outcome {
    status: Option<u16>,
    /// The server's JSON body, when it sent one.
    body: Option<Value>,
    /// What went wrong, when something did: the server's own error text
    /// when it gave one (the original logged only "FAILURE").
    error: Option<String>,
}

/// Which of the requester's deploys a request's context belongs to.
#[derive(Debug, Clone, Copy)]
struct Deploy(usize);

impl Requester {
    async fn one_request(&self) {
        let (method, beast) = random::with(|rng| {
            let method = if rng.random_bool(0.5) { "GET" } else { "POST" };
            (method, Beast::ALL[rng.random_range(0..Beast::ALL.len())])
        });
        // Half the requests go to each deploy, as a canary release splits
        // them.
        let deploy = usize::from(random::with(|rng| rng.random_bool(0.5)));
        let (version, tracer) = &self.deploys[deploy];
        let links = self
            .previous
            .lock()
            .unwrap()
            .clone()
            .map(|previous| vec![Link::with_context(previous)])
            .unwrap_or_default();
        let span = tracer
            .span_builder("requester")
            .with_kind(SpanKind::Client)
            .with_links(links)
            .with_attributes([
                KeyValue::new("beast", beast.as_str()),
                KeyValue::new("http.target", format!("/{beast}")),
                KeyValue::new("http.method", method),
            ])
            .start(tracer);
        *self.previous.lock().unwrap() = Some(span.span_context().clone());
        let cx = Context::current_with_span(span).with_value(Deploy(deploy));
        self.danger.add(beast.danger_level());
        let started = Instant::now();

        let failed = match method {
            "GET" => self.get_then_maybe_delete(&cx, beast).await,
            _ => self.post(&cx, beast, version).await,
        };

        let span = cx.span();
        let trace_id = span.span_context().trace_id();
        self.events.emit(
            Level::Info,
            Some(beast),
            Some(span.span_context()),
            Logfmt::new()
                .field("traceID", trace_id)
                .field("http.method", method)
                .field("endpoint", beast)
                .field("duration", format!("{}ms", started.elapsed().as_millis()))
                .field("loggedtime", rfc3339(SystemTime::now())),
        );
        if failed {
            span.set_status(Status::error("request to mythical-server failed"));
        } else {
            span.set_status(Status::Ok);
        }
        span.end();
    }

    /// GET the beast's names; then, with probability index/5, DELETE the
    /// first one. True when a call failed.
    async fn get_then_maybe_delete(&self, cx: &Context, beast: Beast) -> bool {
        let got = self.call(cx, reqwest::Method::GET, beast, None).await;
        self.log_outcome(cx, "GET", beast, &got, None);
        if got.error.is_some() {
            return true;
        }
        let delete = random::with(|rng| rng.random_range(0..Beast::ALL.len())) < beast.index();
        let first = got
            .body
            .as_ref()
            .and_then(|b| b.get(0))
            .and_then(|b| b.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        match (delete, first) {
            (true, Some(name)) => {
                let body = serde_json::json!({ "name": name });
                let deleted = self
                    .call(cx, reqwest::Method::DELETE, beast, Some(body))
                    .await;
                self.log_outcome(cx, "DELETE", beast, &deleted, Some(&name));
                deleted.error.is_some()
            }
            _ => false,
        }
    }

    async fn post(&self, cx: &Context, beast: Beast, version: &str) -> bool {
        let name = duplicate_name::name_to_send(&self.faults, random::with(names::random_name));
        let body = missing_name::post_body(&self.faults, &name);
        let body = bad_deploy::post_body(&self.faults, version, body);
        let sent = body.get("name").is_some();
        let posted = self
            .call(cx, reqwest::Method::POST, beast, Some(body))
            .await;
        self.log_outcome(cx, "POST", beast, &posted, sent.then_some(name.as_str()));
        posted.error.is_some()
    }

    /// One HTTP call under its own client span, with `traceparent` for the
    /// server to continue the trace.
    async fn call(
        &self,
        parent: &Context,
        method: reqwest::Method,
        beast: Beast,
        body: Option<Value>,
    ) -> Outcome {
        let url = format!("{}/{beast}", self.base_url);
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.as_str().to_owned()),
            KeyValue::new("url.full", url.clone()),
            KeyValue::new("beast", beast.as_str()),
        ];
        if self.conventions.old_http {
            // The names the original's Node instrumentation wrote, which its
            // dashboards and Grafana's TraceQL walkthrough query.
            attributes.extend([
                KeyValue::new("http.method", method.as_str().to_owned()),
                KeyValue::new("http.url", url.clone()),
                KeyValue::new("http.target", format!("/{beast}")),
            ]);
        }
        // The body as it goes on the wire, and its size as OpenTelemetry's
        // HTTP convention records it.
        let body = body.map(|b| serde_json::to_vec(&b).expect("a JSON value serialises"));
        if let Some(bytes) = &body {
            attributes.push(KeyValue::new(
                "http.request.body.size",
                i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            ));
        }
        // The deploy that started the request makes its calls too.
        let (_, tracer) = &self.deploys[parent.get::<Deploy>().map_or(0, |d| d.0)];
        let span = tracer
            .span_builder(format!("{method} /:beast"))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(tracer, parent);
        let cx = parent.with_span(span);
        let mut headers = HeaderMap::new();
        if broken_propagation::propagates(&self.faults) {
            crate::propagation::inject(&cx, &mut headers);
        }
        let mut request = self.http.request(method, &url).headers(headers);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status();
                let body: Option<Value> = response.json().await.ok();
                let error = (!status.is_success()).then(|| {
                    body.as_ref()
                        .and_then(|b| b.get("error"))
                        .and_then(Value::as_str)
                        .map_or_else(|| format!("HTTP {status}"), str::to_owned)
                });
                Outcome {
                    status: Some(status.as_u16()),
                    body,
                    error,
                }
            }
            Err(err) => Outcome {
                status: None,
                body: None,
                error: Some(format!("mythical-server unreachable at {url}: {err}")),
            },
        };
        let span = cx.span();
        if let Some(code) = outcome.status {
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
            if self.conventions.old_http {
                span.set_attribute(KeyValue::new("http.status_code", i64::from(code)));
            }
        }
        if let Some(error) = &outcome.error {
            span.set_attribute(KeyValue::new(
                "error.type",
                outcome
                    .status
                    .map_or_else(|| "unreachable".to_owned(), |c| c.to_string()),
            ));
            span.set_status(Status::error(error.clone()));
        }
        span.end();
        outcome
    }

    fn log_outcome(
        &self,
        cx: &Context,
        method: &str,
        beast: Beast,
        outcome: &Outcome,
        name: Option<&str>,
    ) {
        let span = cx.span();
        let mut line = Logfmt::new()
            .field("traceID", span.span_context().trace_id())
            .field("http.method", method)
            .field("endpoint", beast);
        if let Some(name) = name {
            line = line.field("name", name);
        }
        line = line.field("loggedtime", rfc3339(SystemTime::now()));
        let (level, line) = match &outcome.error {
            None => (Level::Info, line.field("status", "SUCCESS")),
            Some(error) => {
                let mut line = line.field("status", "FAILURE");
                if let Some(code) = outcome.status {
                    line = line.field("code", code);
                }
                (Level::Error, line.field("error", error))
            }
        };
        self.events
            .emit(level, Some(beast), Some(span.span_context()), line);
    }
}

/// `2026-11-23T23:03:10.123Z`, the form of the original's `loggedtime`.
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_writes_utc_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_475_590_123);
        assert_eq!(rfc3339(t), "2026-11-23T23:13:10.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }
}
