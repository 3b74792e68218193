"""An independent OTLP client for the backend's tests: the OpenTelemetry
Python SDK exports one trace, one log record and one counter over OTLP/HTTP
to the endpoint given as the first argument, then flushes and exits."""

import logging
import sys

from opentelemetry import metrics, trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

endpoint = sys.argv[1].rstrip("/")
resource = Resource.create({"service.name": "python-probe", "service.namespace": "mythical"})

tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
trace.set_tracer_provider(tracer_provider)

logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{endpoint}/v1/logs")))
set_logger_provider(logger_provider)
log = logging.getLogger("python-probe")
log.addHandler(LoggingHandler(logger_provider=logger_provider))
log.setLevel(logging.INFO)

reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"))
meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
metrics.set_meter_provider(meter_provider)

tracer = trace.get_tracer("python-probe")
with tracer.start_as_current_span("probe parent", attributes={"probe.kind": "python"}) as parent:
    with tracer.start_as_current_span("probe child") as child:
        child.set_status(trace.Status(trace.StatusCode.ERROR, "probe failure"))
        log.error("probe says hello from python")
    trace_id = format(parent.get_span_context().trace_id, "032x")

counter = metrics.get_meter("python-probe").create_counter("probe_requests", unit="1")
counter.add(3, {"route": "/probe"})

meter_provider.force_flush()
tracer_provider.force_flush()
logger_provider.force_flush()
meter_provider.shutdown()
print(trace_id)
