//! Tempo's service graphs: a client span and the server span whose parent
//! it is make one edge between two services; a database call is an edge to
//! the database at once; a span left without its pair for the wait becomes
//! an edge to a virtual node (`user`, or its peer) or is dropped.

use std::collections::{HashMap, VecDeque};

use lab_signals::{Labels, Span, SpanId, SpanKind, StatusCode, TraceId, UnixMillis};

use super::registry::{CounterId, HistogramId, Registry, exponential_buckets, sanitize_label_name};
use super::span_metrics::find_attribute;

/// What names the other side when it sent no span (Tempo's default peer
/// attributes), from the span's own attributes.
const PEER_ATTRIBUTES: [&str; 3] = ["peer.service", "db.name", "db.system"];
/// Any of these makes a client span a database call.
const DATABASE_NAME_ATTRIBUTES: [&str; 3] = ["db.namespace", "db.name", "db.system"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connection {
    /// A plain request: no `connection_type` label.
    Unknown,
    MessagingSystem,
    Database,
    VirtualNode,
}

impl Connection {
    fn label(self) -> &'static str {
        match self {
            Connection::Unknown => "",
            Connection::MessagingSystem => "messaging_system",
            Connection::Database => "database",
            Connection::VirtualNode => "virtual_node",
        }
    }
}

/// Where a client span and its server span meet: the trace, and the
/// client's span id (the server span's parent). `None` is a server span
/// without a parent: a request from outside.
type EdgeKey = (TraceId, Option<SpanId>);

#[derive(Debug, Clone)]
struct Edge {
    trace_id: TraceId,
    connection: Connection,
    client: String,
    server: String,
    client_seconds: f64,
    server_seconds: f64,
    failed: bool,
    /// One per configured dimension; the server span's value wins.
    dimensions: Vec<Option<String>>,
    peer: String,
    expires_ms: UnixMillis,
    serial: u64,
}

impl Edge {
    fn complete(&self) -> bool {
        !self.client.is_empty() && !self.server.is_empty()
    }
}

/// Counts for `GeneratorStats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphStats {
    pub pending_edges: usize,
    pub expired_edges: u64,
    /// Spans that found the pending edges full.
    pub dropped_spans: u64,
}

pub struct ServiceGraph {
    total: CounterId,
    failed: CounterId,
    server_seconds: HistogramId,
    client_seconds: HistogramId,
    /// Attribute names, and their labels.
    dimensions: Vec<(String, String)>,
    wait_ms: i64,
    max_pending: usize,
    pending: HashMap<EdgeKey, Edge>,
    /// Pending edges oldest first, to expire them in order.
    expiry: VecDeque<(EdgeKey, u64)>,
    serial: u64,
    expired_edges: u64,
    dropped_spans: u64,
}

impl ServiceGraph {
    pub fn new(
        registry: &mut Registry,
        dimensions: &[String],
        wait: std::time::Duration,
        max_pending: usize,
    ) -> ServiceGraph {
        let buckets = exponential_buckets(0.1, 2.0, 8);
        ServiceGraph {
            total: registry.counter(
                "traces_service_graph_request_total",
                "Requests between two services (Tempo's service graphs)",
            ),
            failed: registry.counter(
                "traces_service_graph_request_failed_total",
                "Failed requests between two services (Tempo's service graphs)",
            ),
            server_seconds: registry.histogram(
                "traces_service_graph_request_server_seconds",
                "Server-side request durations in seconds (Tempo's service graphs)",
                &buckets,
            ),
            client_seconds: registry.histogram(
                "traces_service_graph_request_client_seconds",
                "Client-side request durations in seconds (Tempo's service graphs)",
                &buckets,
            ),
            dimensions: dimensions
                .iter()
                .map(|d| (d.clone(), sanitize_label_name(d)))
                .collect(),
            wait_ms: wait.as_millis() as i64,
            max_pending,
            pending: HashMap::new(),
            expiry: VecDeque::new(),
            serial: 0,
            expired_edges: 0,
            dropped_spans: 0,
        }
    }

    pub fn stats(&self) -> GraphStats {
        GraphStats {
            pending_edges: self.pending.len(),
            expired_edges: self.expired_edges,
            dropped_spans: self.dropped_spans,
        }
    }

    pub fn observe(&mut self, registry: &mut Registry, span: &Span, now_ms: UnixMillis) {
        let resource = &span.resource.attributes;
        // Tempo leaves a service without a name out of the graph.
        let Some(service) = resource.get("service.name").map(|v| v.to_text()) else {
            return;
        };
        let (key, client_side, connection) = match span.kind {
            SpanKind::Client => (
                (span.trace_id, Some(span.span_id)),
                true,
                Connection::Unknown,
            ),
            SpanKind::Producer => (
                (span.trace_id, Some(span.span_id)),
                true,
                Connection::MessagingSystem,
            ),
            SpanKind::Server => (
                (span.trace_id, span.parent_span_id),
                false,
                Connection::Unknown,
            ),
            SpanKind::Consumer => (
                (span.trace_id, span.parent_span_id),
                false,
                Connection::MessagingSystem,
            ),
            SpanKind::Internal | SpanKind::Unspecified => return,
        };
        let dimensions: Vec<Option<String>> = self
            .dimensions
            .iter()
            .map(|(attribute, _)| {
                find_attribute(attribute, [resource, &span.attributes]).map(|v| v.to_text())
            })
            .collect();
        let seconds = span.duration_nanos() as f64 / 1e9;
        let update = |edge: &mut Edge| {
            edge.trace_id = span.trace_id;
            edge.connection = connection;
            edge.failed |= span.status == StatusCode::Error;
            for (kept, found) in edge.dimensions.iter_mut().zip(&dimensions) {
                if found.is_some() {
                    kept.clone_from(found);
                }
            }
            if let Some(peer) = PEER_ATTRIBUTES
                .iter()
                .find_map(|key| span.attributes.get(key))
            {
                edge.peer = peer.to_text();
            }
            if client_side {
                edge.client = service.clone();
                edge.client_seconds = seconds;
                database_request(edge, span, seconds);
            } else {
                edge.server = service.clone();
                edge.server_seconds = seconds;
            }
        };
        if let Some(edge) = self.pending.get_mut(&key) {
            update(edge);
            if edge.complete() {
                let edge = self.pending.remove(&key).expect("found above");
                self.record(registry, &edge, now_ms);
            }
            return;
        }
        let mut edge = Edge {
            trace_id: span.trace_id,
            connection,
            client: String::new(),
            server: String::new(),
            client_seconds: 0.0,
            server_seconds: 0.0,
            failed: false,
            dimensions: vec![None; self.dimensions.len()],
            peer: String::new(),
            expires_ms: now_ms + self.wait_ms,
            serial: self.serial,
        };
        update(&mut edge);
        if edge.complete() {
            self.record(registry, &edge, now_ms);
            return;
        }
        if self.pending.len() >= self.max_pending {
            self.dropped_spans += 1;
            return;
        }
        self.serial += 1;
        self.expiry.push_back((key, edge.serial));
        self.pending.insert(key, edge);
    }

    /// Edges whose wait is over: to a virtual node when the one span says
    /// who the other side is, else forgotten.
    pub fn expire(&mut self, registry: &mut Registry, now_ms: UnixMillis) {
        while let Some((key, serial)) = self.expiry.front().copied() {
            let Some(edge) = self.pending.get(&key).filter(|e| e.serial == serial) else {
                // Completed since, or replaced by a later edge of that key.
                self.expiry.pop_front();
                continue;
            };
            if edge.expires_ms > now_ms {
                return;
            }
            self.expiry.pop_front();
            let mut edge = self.pending.remove(&key).expect("found above");
            edge.connection = Connection::VirtualNode;
            let is_root_server = key.1.is_none();
            if edge.client.is_empty() && is_root_server {
                edge.client = if edge.peer.is_empty() {
                    "user".to_owned()
                } else {
                    edge.peer.clone()
                };
                self.record(registry, &edge, now_ms);
            } else if !edge.client.is_empty() && edge.server.is_empty() && !edge.peer.is_empty() {
                edge.server = edge.peer.clone();
                self.record(registry, &edge, now_ms);
            } else {
                self.expired_edges += 1;
            }
        }
    }

    fn record(&self, registry: &mut Registry, edge: &Edge, now_ms: UnixMillis) {
        let mut pairs = vec![
            ("client".to_owned(), edge.client.clone()),
            ("server".to_owned(), edge.server.clone()),
            (
                "connection_type".to_owned(),
                edge.connection.label().to_owned(),
            ),
        ];
        for ((_, label), value) in self.dimensions.iter().zip(&edge.dimensions) {
            pairs.push((label.clone(), value.clone().unwrap_or_default()));
        }
        pairs.retain(|(_, v)| !v.is_empty());
        let labels = Labels::new(pairs);
        registry.inc(self.total, &labels, 1.0, now_ms);
        if edge.failed {
            registry.inc(self.failed, &labels, 1.0, now_ms);
        }
        registry.observe(
            self.server_seconds,
            &labels,
            edge.server_seconds,
            edge.trace_id,
            now_ms,
        );
        registry.observe(
            self.client_seconds,
            &labels,
            edge.client_seconds,
            edge.trace_id,
            now_ms,
        );
    }
}

/// A client span naming a database (`db.namespace`, `db.name` or
/// `db.system`) is its own server: the database, named by `peer.service`,
/// `server.address`, `network.peer.address[:network.peer.port]` or the
/// database name, in that order.
fn database_request(edge: &mut Edge, span: &Span, seconds: f64) {
    let sources = [&span.resource.attributes, &span.attributes];
    let Some(database) = DATABASE_NAME_ATTRIBUTES
        .iter()
        .find_map(|key| find_attribute(key, sources))
    else {
        return;
    };
    edge.connection = Connection::Database;
    edge.server_seconds = seconds;
    let text = |key: &str| find_attribute(key, sources).map(|v| v.to_text());
    edge.server = text("peer.service")
        .or_else(|| text("server.address"))
        .or_else(|| {
            text("network.peer.address").map(|host| match text("network.peer.port") {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        })
        .unwrap_or_else(|| database.to_text());
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use lab_signals::{AttrValue, Attributes, Resource};

    use super::*;

    fn span(service: &str, kind: SpanKind, id: u8, parent: Option<u8>) -> Span {
        Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([id; 8]),
            parent_span_id: parent.map(|p| SpanId([p; 8])),
            name: "span".into(),
            kind,
            status: StatusCode::Unset,
            status_message: String::new(),
            start: 0,
            end: 300_000_000,
            attributes: Attributes::default(),
            events: Vec::new(),
            links: Vec::new(),
            resource: Arc::new(Resource {
                attributes: Attributes(vec![(
                    "service.name".into(),
                    AttrValue::Str(service.into()),
                )]),
                ..Resource::default()
            }),
        }
    }

    fn edges(registry: &mut Registry) -> Vec<(String, f64)> {
        let mut found: Vec<(String, f64)> = registry
            .collect(60_000)
            .samples
            .into_iter()
            .filter(|(l, s)| {
                l.get("__name__") == Some("traces_service_graph_request_total") && s.t == 60_000
            })
            .map(|(l, s)| (l.without("__name__").to_string(), s.v))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    fn graph(registry: &mut Registry) -> ServiceGraph {
        ServiceGraph::new(
            registry,
            &["http.target".to_owned()],
            Duration::from_secs(10),
            100,
        )
    }

    #[test]
    fn a_client_span_pairs_with_its_child_server_span_in_either_order() {
        let mut registry = Registry::new(Vec::new(), 0, 0);
        let mut graph = graph(&mut registry);
        let mut client = span("mythical-requester", SpanKind::Client, 1, None);
        client
            .attributes
            .0
            .push(("http.target".into(), AttrValue::Str("/owlbear".into())));
        let mut server = span("mythical-server", SpanKind::Server, 2, Some(1));
        server.status = StatusCode::Error;
        graph.observe(&mut registry, &server, 0);
        assert_eq!(graph.stats().pending_edges, 1);
        graph.observe(&mut registry, &client, 0);
        assert_eq!(graph.stats().pending_edges, 0);
        assert_eq!(
            edges(&mut registry),
            [(r#"{client="mythical-requester", http_target="/owlbear", server="mythical-server"}"#.to_owned(), 1.0)]
        );
    }

    #[test]
    fn a_database_call_is_an_edge_at_once_and_a_lone_root_server_is_called_by_user() {
        let mut registry = Registry::new(Vec::new(), 0, 0);
        let mut graph = graph(&mut registry);
        let mut insert = span("mythical-server", SpanKind::Client, 3, Some(2));
        insert
            .attributes
            .0
            .push(("db.system".into(), AttrValue::Str("postgresql".into())));
        insert
            .attributes
            .0
            .push(("db.name".into(), AttrValue::Str("postgres".into())));
        graph.observe(&mut registry, &insert, 0);
        graph.observe(
            &mut registry,
            &span("mythical-server", SpanKind::Server, 2, None),
            0,
        );
        // A client span that nobody answers, with nothing naming its peer.
        graph.observe(
            &mut registry,
            &span("mythical-requester", SpanKind::Client, 9, None),
            0,
        );
        graph.expire(&mut registry, 5_000);
        assert_eq!(graph.stats().pending_edges, 2);
        graph.expire(&mut registry, 10_000);
        assert_eq!(
            graph.stats(),
            GraphStats {
                pending_edges: 0,
                expired_edges: 1,
                dropped_spans: 0
            }
        );
        assert_eq!(
            edges(&mut registry),
            [
                (
                    r#"{client="mythical-server", connection_type="database", server="postgres"}"#
                        .to_owned(),
                    1.0
                ),
                (
                    r#"{client="user", connection_type="virtual_node", server="mythical-server"}"#
                        .to_owned(),
                    1.0
                ),
            ]
        );
    }
}
