//! Evaluating a query against traces: each spanset expression picks a set
//! of a trace's spans; a trace matches when the final set is not empty and
//! every pipeline stage keeps it.

use std::collections::HashMap;

use lab_signals::{
    AttrValue, Span, SpanId, SpanKind, StatusCode, Trace, TraceId, TraceSource, UnixNanos,
};

use crate::parse::{
    Aggregate, CmpOp, Cond, Field, Intrinsic, Query, Scope, Spanset, Stage, Static,
};

/// A field's value on one span.
#[derive(Debug, Clone, PartialEq)]
enum Val<'a> {
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    Duration(i64),
    Status(StatusCode),
    Kind(SpanKind),
    Missing,
}

impl Val<'_> {
    fn number(&self) -> Option<f64> {
        match self {
            Val::Int(i) | Val::Duration(i) => Some(*i as f64),
            Val::Float(f) => Some(*f),
            _ => None,
        }
    }
}

fn attr(value: &AttrValue) -> Val<'_> {
    match value {
        AttrValue::Str(s) => Val::Str(s),
        AttrValue::Int(i) => Val::Int(*i),
        AttrValue::Float(f) => Val::Float(*f),
        AttrValue::Bool(b) => Val::Bool(*b),
    }
}

/// One trace with what the operators need: each span's parent index.
struct TraceView<'a> {
    trace: &'a Trace,
    parent: Vec<Option<usize>>,
    root: Option<&'a Span>,
}

impl<'a> TraceView<'a> {
    fn new(trace: &'a Trace) -> TraceView<'a> {
        let index: HashMap<_, _> = trace
            .spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id, i))
            .collect();
        let parent = trace
            .spans
            .iter()
            .map(|s| s.parent_span_id.and_then(|p| index.get(&p).copied()))
            .collect();
        TraceView {
            trace,
            parent,
            root: trace.root(),
        }
    }

    fn value(&self, span: &'a Span, field: &'a Field) -> Val<'a> {
        match field {
            Field::Intrinsic(intrinsic) => match intrinsic {
                Intrinsic::Name => Val::Str(&span.name),
                Intrinsic::Status => Val::Status(span.status),
                Intrinsic::StatusMessage => Val::Str(&span.status_message),
                Intrinsic::Kind => Val::Kind(span.kind),
                Intrinsic::Duration => Val::Duration(span.duration_nanos()),
                Intrinsic::RootName => self.root.map_or(Val::Missing, |r| Val::Str(&r.name)),
                Intrinsic::RootServiceName => self
                    .root
                    .map_or(Val::Missing, |r| Val::Str(r.service_name())),
                Intrinsic::TraceDuration => Val::Duration(self.trace.duration_nanos()),
            },
            Field::Attribute { scope, name } => {
                let on_span = || span.attributes.get(name).map(attr);
                let on_resource = || span.resource.attributes.get(name).map(attr);
                match scope {
                    Scope::Span => on_span(),
                    Scope::Resource => on_resource(),
                    Scope::Any => on_span().or_else(on_resource),
                }
                .unwrap_or(Val::Missing)
            }
        }
    }

    fn is_ancestor(&self, ancestor: usize, mut of: usize) -> bool {
        let mut steps = 0;
        while let Some(parent) = self.parent[of] {
            if parent == ancestor {
                return true;
            }
            of = parent;
            steps += 1;
            if steps > self.parent.len() {
                return false;
            }
        }
        false
    }
}

fn compare(value: &Val<'_>, op: CmpOp, expected: &Static, regex: Option<&regex::Regex>) -> bool {
    use std::cmp::Ordering;
    if let Static::Nil = expected {
        return match op {
            CmpOp::Eq => *value == Val::Missing,
            CmpOp::NotEq => *value != Val::Missing,
            _ => false,
        };
    }
    if *value == Val::Missing {
        return false;
    }
    let ordering: Option<Ordering> = match (value, expected) {
        (Val::Str(s), Static::Str(e)) => {
            if let Some(regex) = regex {
                let hit = regex.is_match(s);
                return if op == CmpOp::Re { hit } else { !hit };
            }
            Some((*s).cmp(e.as_str()))
        }
        (Val::Bool(b), Static::Bool(e)) => Some(b.cmp(e)),
        (Val::Status(s), Static::Status(e)) => return eq_only(op, s == e),
        (Val::Kind(k), Static::Kind(e)) => return eq_only(op, k == e),
        (v, e) => {
            let expected = match e {
                Static::Int(i) | Static::Duration(i) => Some(*i as f64),
                Static::Float(f) => Some(*f),
                _ => None,
            };
            match (v.number(), expected) {
                (Some(a), Some(b)) => a.partial_cmp(&b),
                _ => None,
            }
        }
    };
    let Some(ordering) = ordering else {
        return false;
    };
    match op {
        CmpOp::Eq => ordering == Ordering::Equal,
        CmpOp::NotEq => ordering != Ordering::Equal,
        CmpOp::Lt => ordering == Ordering::Less,
        CmpOp::Le => ordering != Ordering::Greater,
        CmpOp::Gt => ordering == Ordering::Greater,
        CmpOp::Ge => ordering != Ordering::Less,
        CmpOp::Re | CmpOp::NotRe => false,
    }
}

fn eq_only(op: CmpOp, equal: bool) -> bool {
    match op {
        CmpOp::Eq => equal,
        CmpOp::NotEq => !equal,
        _ => false,
    }
}

fn holds(view: &TraceView<'_>, span: &Span, cond: &Cond) -> bool {
    match cond {
        Cond::All => true,
        Cond::Cmp {
            field,
            op,
            value,
            regex,
        } => compare(&view.value(span, field), *op, value, regex.as_ref()),
        Cond::Truthy(field) => view.value(span, field) == Val::Bool(true),
        Cond::And(a, b) => holds(view, span, a) && holds(view, span, b),
        Cond::Or(a, b) => holds(view, span, a) || holds(view, span, b),
        Cond::Not(inner) => !holds(view, span, inner),
    }
}

/// Which of the trace's spans the spanset expression selects.
fn select(view: &TraceView<'_>, spanset: &Spanset) -> Vec<bool> {
    let n = view.trace.spans.len();
    let pairwise = |left: &Spanset, right: &Spanset, related: &dyn Fn(usize, usize) -> bool| {
        let (l, r) = (select(view, left), select(view, right));
        (0..n)
            .map(|j| r[j] && (0..n).any(|i| l[i] && i != j && related(i, j)))
            .collect::<Vec<bool>>()
    };
    match spanset {
        Spanset::Filter(cond) => view
            .trace
            .spans
            .iter()
            .map(|s| holds(view, s, cond))
            .collect(),
        Spanset::And(a, b) => {
            let (l, r) = (select(view, a), select(view, b));
            if l.iter().any(|x| *x) && r.iter().any(|x| *x) {
                l.iter().zip(&r).map(|(a, b)| *a || *b).collect()
            } else {
                vec![false; n]
            }
        }
        Spanset::Or(a, b) => {
            let (l, r) = (select(view, a), select(view, b));
            l.iter().zip(&r).map(|(a, b)| *a || *b).collect()
        }
        Spanset::Descendant(a, b) => pairwise(a, b, &|i, j| view.is_ancestor(i, j)),
        Spanset::Child(a, b) => pairwise(a, b, &|i, j| view.parent[j] == Some(i)),
        Spanset::Sibling(a, b) => pairwise(a, b, &|i, j| {
            view.parent[i].is_some() && view.parent[i] == view.parent[j]
        }),
        Spanset::Ancestor(a, b) => pairwise(a, b, &|i, j| view.is_ancestor(j, i)),
        Spanset::Parent(a, b) => pairwise(a, b, &|i, j| view.parent[i] == Some(j)),
    }
}

/// A matched span, with the attributes the query referenced or selected.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchedSpan {
    pub span_id: SpanId,
    pub name: String,
    pub start: UnixNanos,
    pub duration_nanos: i64,
    /// Keyed by bare name (`http.status_code`, `service.name`, `status`),
    /// as Tempo's search answer keys them.
    pub attributes: Vec<(String, AttrValue)>,
}

/// The spans of one trace that a query kept.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchedSpanset {
    /// The first `spans_per_spanset` matched spans, by start time.
    pub spans: Vec<MatchedSpan>,
    /// How many spans matched in all.
    pub matched: usize,
    /// What the pipeline computed, keyed as written: `count()`,
    /// `avg(duration)` (durations in nanoseconds).
    pub attributes: Vec<(String, AttrValue)>,
}

/// A trace that matched, as Tempo's search lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceMatch {
    pub trace_id: TraceId,
    pub root_service_name: String,
    pub root_trace_name: String,
    /// The earliest span's start.
    pub start: UnixNanos,
    pub duration_ms: i64,
    /// One spanset: without `by()` (not supported) Tempo makes one a trace.
    pub spansets: Vec<MatchedSpanset>,
}

/// What a search found, and how many traces it looked at (for `metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResult {
    /// Newest first.
    pub traces: Vec<TraceMatch>,
    pub inspected_traces: u64,
}

fn collect_fields<'q>(cond: &'q Cond, out: &mut Vec<&'q Field>) {
    match cond {
        Cond::Cmp { field, .. } | Cond::Truthy(field) => out.push(field),
        Cond::And(a, b) | Cond::Or(a, b) => {
            collect_fields(a, out);
            collect_fields(b, out);
        }
        Cond::Not(inner) => collect_fields(inner, out),
        Cond::All => {}
    }
}

fn spanset_fields<'q>(spanset: &'q Spanset, out: &mut Vec<&'q Field>) {
    match spanset {
        Spanset::Filter(cond) => collect_fields(cond, out),
        Spanset::And(a, b)
        | Spanset::Or(a, b)
        | Spanset::Descendant(a, b)
        | Spanset::Child(a, b)
        | Spanset::Sibling(a, b)
        | Spanset::Ancestor(a, b)
        | Spanset::Parent(a, b) => {
            spanset_fields(a, out);
            spanset_fields(b, out);
        }
    }
}

fn to_attr(value: Val<'_>) -> Option<AttrValue> {
    Some(match value {
        Val::Str(s) => AttrValue::Str(s.to_owned()),
        Val::Int(i) | Val::Duration(i) => AttrValue::Int(i),
        Val::Float(f) => AttrValue::Float(f),
        Val::Bool(b) => AttrValue::Bool(b),
        Val::Status(s) => AttrValue::Str(status_name(s).to_owned()),
        Val::Kind(k) => AttrValue::Str(kind_name(k).to_owned()),
        Val::Missing => return None,
    })
}

fn status_name(status: StatusCode) -> &'static str {
    match status {
        StatusCode::Unset => "unset",
        StatusCode::Ok => "ok",
        StatusCode::Error => "error",
    }
}

fn kind_name(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::Unspecified => "unspecified",
        SpanKind::Internal => "internal",
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
    }
}

/// A field's values on the spans of `trace` that `keep` marks, as tag-value
/// discovery lists them: Tempo's type name and the text. Durations are left
/// out, as nearly every span has its own.
pub(crate) fn typed_values(
    trace: &Trace,
    field: &Field,
    keep: &[bool],
    visit: &mut dyn FnMut(&'static str, String),
) {
    let view = TraceView::new(trace);
    for (span, _) in trace.spans.iter().zip(keep).filter(|(_, k)| **k) {
        match view.value(span, field) {
            Val::Str(s) => visit("string", s.to_owned()),
            Val::Int(i) => visit("int", i.to_string()),
            Val::Float(f) => visit("float", f.to_string()),
            Val::Bool(b) => visit("bool", b.to_string()),
            Val::Status(s) => visit("keyword", status_name(s).to_owned()),
            Val::Kind(k) => visit("keyword", kind_name(k).to_owned()),
            Val::Duration(_) | Val::Missing => {}
        }
    }
}

/// What a query kept of one trace: a flag per span, and the pipeline's
/// computed values (`count()`, …).
struct Kept {
    spans: Vec<bool>,
    computed: Vec<(String, AttrValue)>,
}

impl Query {
    /// The traces (newest first, at most `limit`) the source visits for
    /// `[start, end]` with a matching spanset; at most `spans_per_spanset`
    /// spans listed each.
    pub fn search(
        &self,
        source: &(impl TraceSource + ?Sized),
        start: UnixNanos,
        end: UnixNanos,
        limit: usize,
        spans_per_spanset: usize,
    ) -> SearchResult {
        let mut shown: Vec<&Field> = Vec::new();
        spanset_fields(&self.spanset, &mut shown);
        for stage in &self.pipeline {
            match stage {
                Stage::Select(fields) => shown.extend(fields),
                Stage::Filter(cond) => collect_fields(cond, &mut shown),
                Stage::Compare { .. } => {}
            }
        }
        // Name and duration are the span's own fields in the answer; the
        // trace-level intrinsics describe the trace, not the span.
        shown.retain(|f| {
            !matches!(
                f,
                Field::Intrinsic(
                    Intrinsic::Name
                        | Intrinsic::Duration
                        | Intrinsic::RootName
                        | Intrinsic::RootServiceName
                        | Intrinsic::TraceDuration
                )
            )
        });
        let mut unique: Vec<&Field> = Vec::new();
        for field in shown {
            if !unique.iter().any(|f| f.key() == field.key()) {
                unique.push(field);
            }
        }
        let mut traces = Vec::new();
        let mut inspected_traces = 0u64;
        source.for_each_trace(start, end, &mut |trace| {
            inspected_traces += 1;
            if let Some(found) = self.match_trace(trace, &unique, spans_per_spanset) {
                traces.push(found);
            }
        });
        traces.sort_by(|a, b| b.start.cmp(&a.start).then(a.trace_id.cmp(&b.trace_id)));
        traces.truncate(limit);
        SearchResult {
            traces,
            inspected_traces,
        }
    }

    /// Which spans of `trace` the query keeps (all false when the trace does
    /// not match).
    pub(crate) fn matched_spans(&self, trace: &Trace) -> Vec<bool> {
        let view = TraceView::new(trace);
        self.evaluate(&view)
            .map_or_else(|| vec![false; trace.spans.len()], |kept| kept.spans)
    }

    fn evaluate(&self, view: &TraceView<'_>) -> Option<Kept> {
        let trace = view.trace;
        let mut picked = select(view, &self.spanset);
        let mut computed = Vec::new();
        for stage in &self.pipeline {
            match stage {
                Stage::Select(_) => {}
                Stage::Filter(cond) => {
                    for (i, span) in trace.spans.iter().enumerate() {
                        picked[i] = picked[i] && holds(view, span, cond);
                    }
                }
                Stage::Compare {
                    aggregate,
                    field,
                    op,
                    value,
                } => {
                    let spans: Vec<&Span> = trace
                        .spans
                        .iter()
                        .zip(&picked)
                        .filter(|(_, p)| **p)
                        .map(|(s, _)| s)
                        .collect();
                    let numbers: Vec<f64> = match field {
                        Some(field) => spans
                            .iter()
                            .filter_map(|s| view.value(s, field).number())
                            .collect(),
                        None => Vec::new(),
                    };
                    let result = match aggregate {
                        Aggregate::Count => spans.len() as f64,
                        Aggregate::Sum => numbers.iter().sum(),
                        // Over no values there is no average, minimum or
                        // maximum: the stage drops the spanset.
                        _ if numbers.is_empty() => return None,
                        Aggregate::Avg => numbers.iter().sum::<f64>() / numbers.len() as f64,
                        Aggregate::Min => numbers.iter().copied().fold(f64::INFINITY, f64::min),
                        Aggregate::Max => numbers.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    };
                    if !compare(&Val::Float(result), *op, value, None) {
                        return None;
                    }
                    let label = stage_label(*aggregate, field.as_ref());
                    let shown = if *aggregate == Aggregate::Count {
                        AttrValue::Int(spans.len() as i64)
                    } else {
                        AttrValue::Float(result)
                    };
                    computed.push((label, shown));
                }
            }
        }
        picked.iter().any(|p| *p).then_some(Kept {
            spans: picked,
            computed,
        })
    }

    fn match_trace(
        &self,
        trace: &Trace,
        shown: &[&Field],
        spans_per_spanset: usize,
    ) -> Option<TraceMatch> {
        let view = TraceView::new(trace);
        let Kept {
            spans: picked,
            computed,
        } = self.evaluate(&view)?;
        let mut spans: Vec<MatchedSpan> = trace
            .spans
            .iter()
            .zip(&picked)
            .filter(|(_, p)| **p)
            .map(|(span, _)| {
                let mut attributes: Vec<(String, AttrValue)> = shown
                    .iter()
                    .filter_map(|f| to_attr(view.value(span, f)).map(|v| (f.key(), v)))
                    .collect();
                // Tempo names each span's service so Grafana can show it.
                if !attributes.iter().any(|(k, _)| k == "service.name") {
                    attributes.push((
                        "service.name".into(),
                        AttrValue::Str(span.service_name().to_owned()),
                    ));
                }
                MatchedSpan {
                    span_id: span.span_id,
                    name: span.name.clone(),
                    start: span.start,
                    duration_nanos: span.duration_nanos(),
                    attributes,
                }
            })
            .collect();
        spans.sort_by_key(|s| (s.start, s.span_id));
        let matched = spans.len();
        spans.truncate(spans_per_spanset);
        let root = view.root;
        Some(TraceMatch {
            trace_id: trace.trace_id,
            root_service_name: root.map_or("<root span not yet received>".into(), |r| {
                r.service_name().to_owned()
            }),
            root_trace_name: root.map_or(String::new(), |r| r.name.clone()),
            start: trace.start(),
            duration_ms: trace.duration_nanos() / 1_000_000,
            spansets: vec![MatchedSpanset {
                spans,
                matched,
                attributes: computed,
            }],
        })
    }
}

fn stage_label(aggregate: Aggregate, field: Option<&Field>) -> String {
    let name = match aggregate {
        Aggregate::Count => "count",
        Aggregate::Avg => "avg",
        Aggregate::Min => "min",
        Aggregate::Max => "max",
        Aggregate::Sum => "sum",
    };
    format!("{name}({})", field.map(Field::label).unwrap_or_default())
}
