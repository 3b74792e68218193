//! OpenTelemetry set-up shared by both services: traces, logs and metrics
//! exported over OTLP as the standard `OTEL_*` variables say.
//!
//! Export runs on the SDK's batch processors: a span or log record is handed
//! to a bounded queue and the request goes on, so a missing or slow
//! collector costs dropped telemetry, never request latency or memory.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{LogExporter, MetricExporter, Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::config::env_var;
use crate::loki_push::LokiPushExporter;
use crate::profiling::Profiler;

/// How many spans, and how many log records, wait for export at most,
/// unless `OTEL_BSP_MAX_QUEUE_SIZE` / `OTEL_BLRP_MAX_QUEUE_SIZE` say
/// otherwise: half the SDK's 2,048. Two export batches (512 each) fit;
/// a queue only fills when the export cannot keep up, and then a longer
/// one drops as much, only later, while holding twice the memory.
const QUEUE: usize = 1024;

/// The SDK's batch processor for spans, with [`QUEUE`] unless the
/// environment sets the queue.
fn batched_spans<E: opentelemetry_sdk::trace::SpanExporter + 'static>(
    exporter: E,
) -> opentelemetry_sdk::trace::BatchSpanProcessor {
    let config = opentelemetry_sdk::trace::BatchConfigBuilder::default();
    let config = match env_var("OTEL_BSP_MAX_QUEUE_SIZE") {
        Some(_) => config,
        None => config.with_max_queue_size(QUEUE),
    };
    opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter)
        .with_batch_config(config.build())
        .build()
}

/// The SDK's batch processor for log records, with [`QUEUE`] unless the
/// environment sets the queue.
fn batched_logs<E: opentelemetry_sdk::logs::LogExporter + 'static>(
    exporter: E,
) -> opentelemetry_sdk::logs::BatchLogProcessor {
    let config = opentelemetry_sdk::logs::BatchConfigBuilder::default();
    let config = match env_var("OTEL_BLRP_MAX_QUEUE_SIZE") {
        Some(_) => config,
        None => config.with_max_queue_size(QUEUE),
    };
    opentelemetry_sdk::logs::BatchLogProcessor::builder(exporter)
        .with_batch_config(config.build())
        .build()
}

/// How the exporters talk to the collector (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

impl OtlpProtocol {
    /// Reads the signal's own variable first, then the general one; the
    /// specification's default is `http/protobuf`.
    fn from_env(signal: &str) -> Result<OtlpProtocol> {
        let value = env_var(&format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"))
            .or_else(|| env_var("OTEL_EXPORTER_OTLP_PROTOCOL"));
        match value.as_deref() {
            None | Some("http/protobuf") => Ok(OtlpProtocol::HttpProtobuf),
            Some("grpc") => Ok(OtlpProtocol::Grpc),
            Some("http/json") => Ok(OtlpProtocol::HttpJson),
            Some(other) => bail!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not a protocol: use grpc, http/protobuf or http/json"
            ),
        }
    }
}

/// Which attribute names spans carry, as `OTEL_SEMCONV_STABILITY_OPT_IN`
/// says for OpenTelemetry's instrumentations: `http` or `database` alone
/// gives only the stable names, `http/dup` and `database/dup` both. Unset,
/// the lab emits both: the original's dashboards and Grafana's guides query
/// the older names (`http.target`, `db.statement`), newer tools the stable
/// ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conventions {
    /// `http.method`, `http.target`, `http.status_code` beside
    /// `http.request.method`, `url.path`, `http.response.status_code`.
    pub old_http: bool,
    /// `db.statement`, `db.name`, `db.operation`, `db.sql.table` beside
    /// `db.query.text`, `db.namespace`, `db.operation.name`,
    /// `db.collection.name`.
    pub old_database: bool,
}

impl Conventions {
    pub fn from_env() -> Conventions {
        Conventions::from_opt_in(env_var("OTEL_SEMCONV_STABILITY_OPT_IN").as_deref())
    }

    fn from_opt_in(value: Option<&str>) -> Conventions {
        let Some(value) = value else {
            return Conventions {
                old_http: true,
                old_database: true,
            };
        };
        let items: Vec<&str> = value.split(',').map(str::trim).collect();
        let old =
            |domain: &str| !items.contains(&domain) || items.contains(&&*format!("{domain}/dup"));
        Conventions {
            old_http: old("http"),
            old_database: old("database"),
        }
    }
}

/// Whether a signal is exported: `OTEL_SDK_DISABLED=true` turns all off,
/// `OTEL_<SIGNAL>S_EXPORTER=none` one of them.
fn exported(signal: &str) -> bool {
    let disabled = env_var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let exporter = env_var(&format!("OTEL_{signal}S_EXPORTER"));
    !disabled && exporter.as_deref() != Some("none")
}

/// The providers of one service, and the handles its code records through.
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
    logger_provider: SdkLoggerProvider,
    meter_provider: SdkMeterProvider,
    pub tracer: SdkTracer,
    pub logger: SdkLogger,
    pub meter: Meter,
    pub resource: Resource,
    pub conventions: Conventions,
    /// The CPU profiler, when `PYROSCOPE_SERVER_ADDRESS` names a server;
    /// taken out and stopped at shutdown.
    profiler: std::sync::Mutex<Option<Profiler>>,
    service_name: String,
    /// The providers of the deploys [`Telemetry::deployed`] made, flushed
    /// and shut down with the rest.
    deploys: std::sync::Mutex<Vec<SdkTracerProvider>>,
}

impl Telemetry {
    /// Builds the three providers. `default_service_name` applies when
    /// `OTEL_SERVICE_NAME` is not set; `OTEL_RESOURCE_ATTRIBUTES` adds to the
    /// resource, and `NAMESPACE` (the original's variable) becomes
    /// `service.namespace`. The original's `TRACING_COLLECTOR_HOST`/`_PORT`
    /// name the collector when no `OTEL_EXPORTER_OTLP_ENDPOINT` does, and
    /// its `LOGS_TARGET` sends the logs to Loki's push API instead of OTLP. Must run inside the tokio runtime (the gRPC
    /// exporter's channel lives there). With `PYROSCOPE_SERVER_ADDRESS` set
    /// it also starts the CPU profiler ([`crate::profiling`]).
    ///
    /// `service_version` is the resource's `service.version`; `None` leaves
    /// it out, for a service whose deploys each trace through their own
    /// provider ([`Telemetry::deployed`]).
    pub fn init(default_service_name: &str, service_version: Option<&str>) -> Result<Telemetry> {
        let service_name =
            env_var("OTEL_SERVICE_NAME").unwrap_or_else(|| default_service_name.to_owned());
        let namespace = env_var("NAMESPACE").unwrap_or_else(|| "mythical".to_owned());
        let mut attributes = vec![KeyValue::new("service.namespace", namespace)];
        if let Some(version) = service_version {
            attributes.push(KeyValue::new("service.version", version.to_owned()));
        }
        let resource = Resource::builder()
            .with_attributes(attributes)
            .with_service_name(service_name.clone())
            .build();

        let mut traces = SdkTracerProvider::builder().with_resource(resource.clone());
        if exported("TRACE") {
            traces = traces.with_span_processor(batched_spans(span_exporter()?));
        }
        let tracer_provider = traces.build();

        let mut logs = SdkLoggerProvider::builder().with_resource(resource.clone());
        if let Some(target) = env_var("LOGS_TARGET") {
            logs = logs.with_log_processor(batched_logs(LokiPushExporter::new(
                &target,
                &service_name,
                timeout(),
            )?));
        } else if exported("LOG") {
            logs = logs.with_log_processor(batched_logs(log_exporter()?));
        }
        let logger_provider = logs.build();

        let mut metrics = SdkMeterProvider::builder().with_resource(resource.clone());
        if exported("METRIC") {
            metrics = metrics.with_periodic_exporter(metric_exporter()?);
        }
        let meter_provider = metrics.build();

        let profiler = Profiler::from_env(&service_name)?;

        // W3C trace context in and out, for the requester and the server alike.
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );

        Ok(Telemetry {
            tracer: tracer_provider.tracer(service_name.clone()),
            logger: opentelemetry::logs::LoggerProvider::logger(
                &logger_provider,
                service_name.clone(),
            ),
            meter: meter_provider.meter("mythical"),
            tracer_provider,
            logger_provider,
            meter_provider,
            resource,
            conventions: Conventions::from_env(),
            profiler: std::sync::Mutex::new(profiler),
            service_name,
            deploys: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// A tracer for one deploy of this service: its own provider, whose
    /// resource is this one's with `service.version = version`, exporting
    /// where this one does. The requester runs two versions side by side,
    /// as a canary release does, so each trace says through its resource,
    /// as a deploy sets it, which version sent it.
    pub fn deployed(&self, version: &str) -> Result<SdkTracer> {
        let resource = Resource::builder_empty()
            .with_attributes(
                self.resource
                    .iter()
                    .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
            )
            .with_attribute(KeyValue::new("service.version", version.to_owned()))
            .build();
        let mut traces = SdkTracerProvider::builder().with_resource(resource);
        if exported("TRACE") {
            traces = traces.with_span_processor(batched_spans(span_exporter()?));
        }
        let provider = traces.build();
        let tracer = provider.tracer(self.service_name.clone());
        self.deploys
            .lock()
            .expect("the deploys are never poisoned")
            .push(provider);
        Ok(tracer)
    }

    /// Sends what is still queued (the last profile too) and stops the
    /// profiler. Blocks the calling thread, so async callers go through
    /// `spawn_blocking`.
    pub fn shutdown(&self) {
        let profiler = self.profiler.lock().map(|mut p| p.take()).ok().flatten();
        if let Some(profiler) = profiler {
            profiler.stop();
        }
        let deploys = std::mem::take(&mut *self.deploys.lock().expect("never poisoned"));
        for deploy in &deploys {
            let _ = deploy.force_flush();
        }
        let _ = self.tracer_provider.force_flush();
        let _ = self.logger_provider.force_flush();
        let _ = self.meter_provider.force_flush();
        for deploy in deploys {
            let _ = deploy.shutdown();
        }
        let _ = self.tracer_provider.shutdown();
        let _ = self.logger_provider.shutdown();
        let _ = self.meter_provider.shutdown();
    }
}

/// The exporters' per-request timeout: `OTEL_EXPORTER_OTLP_TIMEOUT` is
/// read by the exporters themselves; this is the fallback when unset, kept
/// short so a dead collector frees the export thread quickly.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

fn timeout() -> Duration {
    env_var("OTEL_EXPORTER_OTLP_TIMEOUT")
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(EXPORT_TIMEOUT)
}

/// The original's collector variables: `TRACING_COLLECTOR_HOST` and
/// `TRACING_COLLECTOR_PORT` name an OTLP collector (gRPC on 4317, as the
/// original's exporter spoke; HTTP on 4318). They apply only where no
/// `OTEL_EXPORTER_OTLP_*ENDPOINT` says otherwise, and give the collector's
/// base URL and protocol.
fn original_collector(signal: &str) -> Option<(String, OtlpProtocol)> {
    if env_var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || env_var(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")).is_some()
    {
        return None;
    }
    let host = env_var("TRACING_COLLECTOR_HOST")?;
    let port = env_var("TRACING_COLLECTOR_PORT").unwrap_or_else(|| "4317".to_owned());
    let base = if host.contains("://") {
        format!("{}:{port}", host.trim_end_matches('/'))
    } else {
        format!("http://{host}:{port}")
    };
    let protocol = if port == "4318" {
        OtlpProtocol::HttpProtobuf
    } else {
        OtlpProtocol::Grpc
    };
    Some((base, protocol))
}

/// The endpoint and protocol of one signal's exporter: the original's
/// collector variables when they apply (an HTTP endpoint then needs the
/// signal's path), else what the `OTEL_*` variables say.
fn endpoint_and_protocol(signal: &str, path: &str) -> Result<(Option<String>, OtlpProtocol)> {
    Ok(match original_collector(signal) {
        Some((base, OtlpProtocol::Grpc)) => (Some(base), OtlpProtocol::Grpc),
        Some((base, protocol)) => (Some(format!("{base}{path}")), protocol),
        None => (None, OtlpProtocol::from_env(signal)?),
    })
}

macro_rules! exporter {
    ($name:ident, $exporter:ty, $signal:literal, $path:literal) => {
        fn $name() -> Result<$exporter> {
            let (endpoint, protocol) = endpoint_and_protocol($signal, $path)?;
            let built = match protocol {
                OtlpProtocol::Grpc => {
                    let builder = <$exporter>::builder().with_tonic().with_timeout(timeout());
                    match endpoint {
                        Some(endpoint) => builder.with_endpoint(endpoint).build(),
                        None => builder.build(),
                    }
                }
                OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
                    let builder = <$exporter>::builder()
                        .with_http()
                        .with_protocol(if protocol == OtlpProtocol::HttpJson {
                            Protocol::HttpJson
                        } else {
                            Protocol::HttpBinary
                        })
                        .with_timeout(timeout());
                    match endpoint {
                        Some(endpoint) => builder.with_endpoint(endpoint).build(),
                        None => builder.build(),
                    }
                }
            };
            built.with_context(|| {
                format!(
                    "could not build the OTLP {} exporter: check OTEL_EXPORTER_OTLP_ENDPOINT",
                    $signal.to_lowercase()
                )
            })
        }
    };
}

exporter!(span_exporter, SpanExporter, "TRACES", "/v1/traces");
exporter!(log_exporter, LogExporter, "LOGS", "/v1/logs");
exporter!(metric_exporter, MetricExporter, "METRICS", "/v1/metrics");

#[cfg(test)]
mod tests {
    use super::Conventions;

    #[test]
    fn both_attribute_names_unless_the_stable_ones_alone_are_asked_for() {
        let both = Conventions {
            old_http: true,
            old_database: true,
        };
        assert_eq!(Conventions::from_opt_in(None), both);
        assert_eq!(
            Conventions::from_opt_in(Some("http/dup,database/dup")),
            both
        );
        assert_eq!(
            Conventions::from_opt_in(Some("http")),
            Conventions {
                old_http: false,
                old_database: true
            }
        );
        assert_eq!(
            Conventions::from_opt_in(Some("database, http/dup")),
            Conventions {
                old_http: true,
                old_database: false
            }
        );
    }
}
