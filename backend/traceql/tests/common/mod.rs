//! The hand-made data set both test files query: three traces shaped like
//! the lab's.

use std::sync::Arc;

use lab_signals::{
    AttrValue, Attributes, Resource, Span, SpanId, SpanKind, StatusCode, Trace, TraceId,
};

pub const MS: i64 = 1_000_000;
/// Where the data set's clock starts.
pub const BASE: i64 = 1_700_000_000_000 * MS;

fn resource(service: &str) -> Arc<Resource> {
    Arc::new(Resource {
        attributes: Attributes(vec![(
            "service.name".into(),
            AttrValue::Str(service.into()),
        )]),
        ..Default::default()
    })
}

#[allow(clippy::too_many_arguments)]
fn span(
    trace: u8,
    id: u8,
    parent: Option<u8>,
    service: &str,
    name: &str,
    kind: SpanKind,
    status: StatusCode,
    start_ms: i64,
    duration_ms: i64,
    attrs: &[(&str, AttrValue)],
) -> Span {
    Span {
        trace_id: TraceId([trace; 16]),
        span_id: SpanId([id; 8]),
        parent_span_id: parent.map(|p| SpanId([p; 8])),
        name: name.into(),
        kind,
        status,
        status_message: if status == StatusCode::Error {
            "boom".into()
        } else {
            String::new()
        },
        start: BASE + start_ms * MS,
        end: BASE + (start_ms + duration_ms) * MS,
        attributes: Attributes(
            attrs
                .iter()
                .map(|(k, v)| ((*k).into(), v.clone()))
                .collect(),
        ),
        events: Vec::new(),
        links: Vec::new(),
        resource: resource(service),
    }
}

/// Trace 1: a failing POST (requester → server → INSERT error).
/// Trace 2: a healthy GET. Trace 3: a slow GET with two sibling queries.
pub fn traces() -> Vec<Trace> {
    use AttrValue::*;
    use SpanKind::*;
    use StatusCode::*;
    let failing = vec![
        span(
            1,
            1,
            None,
            "mythical-requester",
            "requester",
            Client,
            Error,
            0,
            40,
            &[("beast", Str("owlbear".into()))],
        ),
        span(
            1,
            2,
            Some(1),
            "mythical-requester",
            "POST /:beast",
            Client,
            Error,
            1,
            30,
            &[("http.status_code", Int(500))],
        ),
        span(
            1,
            3,
            Some(2),
            "mythical-server",
            "POST /:beast",
            Server,
            Error,
            5,
            20,
            &[("http.response.status_code", Int(500))],
        ),
        span(
            1,
            4,
            Some(3),
            "mythical-server",
            "INSERT owlbear",
            Client,
            Error,
            8,
            10,
            &[("db.response.status_code", Str("23502".into()))],
        ),
    ];
    let healthy = vec![
        span(
            2,
            1,
            None,
            "mythical-requester",
            "requester",
            Client,
            Ok,
            100,
            12,
            &[("beast", Str("unicorn".into()))],
        ),
        span(
            2,
            2,
            Some(1),
            "mythical-requester",
            "GET /:beast",
            Client,
            Unset,
            101,
            10,
            &[("http.status_code", Int(200))],
        ),
        span(
            2,
            3,
            Some(2),
            "mythical-server",
            "GET /:beast",
            Server,
            Unset,
            102,
            8,
            &[
                ("http.response.status_code", Int(200)),
                ("cache.hit", Bool(true)),
            ],
        ),
    ];
    let slow = vec![
        span(
            3,
            1,
            None,
            "mythical-server",
            "GET /:beast",
            Server,
            Unset,
            200,
            1500,
            &[("beast", Str("beholder".into()))],
        ),
        span(
            3,
            2,
            Some(1),
            "mythical-server",
            "SELECT beholder",
            Client,
            Unset,
            210,
            900,
            &[("db.rows", Float(2.5))],
        ),
        span(
            3,
            3,
            Some(1),
            "mythical-server",
            "SELECT unicorn",
            Client,
            Unset,
            1200,
            100,
            &[],
        ),
    ];
    vec![
        Trace {
            trace_id: TraceId([1; 16]),
            spans: failing,
        },
        Trace {
            trace_id: TraceId([2; 16]),
            spans: healthy,
        },
        Trace {
            trace_id: TraceId([3; 16]),
            spans: slow,
        },
    ]
}
