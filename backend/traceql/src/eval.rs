//! Evaluating a query against traces: each spanset expression picks a set
//! of a trace's spans; a trace matches when the final set is not empty and
//! every pipeline stage keeps it.

use std::collections::HashMap;

use lab_signals::{AttrValue, Span, SpanKind, StatusCode, Trace, TraceSource, UnixNanos};

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
    pub span_id: String,
    pub name: String,
    pub service_name: String,
    pub start: UnixNanos,
    pub duration_nanos: i64,
    pub attributes: Vec<(String, AttrValue)>,
}

/// A trace that matched, as Tempo's search lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceMatch {
    pub trace_id: String,
    pub root_service_name: String,
    pub root_trace_name: String,
    pub start: UnixNanos,
    pub duration_ms: i64,
    pub spans: Vec<MatchedSpan>,
    pub matched: usize,
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
        Val::Status(s) => AttrValue::Str(format!("{s:?}").to_lowercase()),
        Val::Kind(k) => AttrValue::Str(format!("{k:?}").to_lowercase()),
        Val::Missing => return None,
    })
}

impl Query {
    /// The traces (newest first, at most `limit`) in `[start, end]` with a
    /// matching spanset; at most `spans_per_spanset` spans listed each.
    pub fn search(
        &self,
        source: &(impl TraceSource + ?Sized),
        start: UnixNanos,
        end: UnixNanos,
        limit: usize,
        spans_per_spanset: usize,
    ) -> (Vec<TraceMatch>, u64) {
        let mut shown: Vec<&Field> = Vec::new();
        spanset_fields(&self.spanset, &mut shown);
        for stage in &self.pipeline {
            match stage {
                Stage::Select(fields) => shown.extend(fields),
                Stage::Filter(cond) => collect_fields(cond, &mut shown),
                Stage::Compare { .. } => {}
            }
        }
        shown.retain(|f| {
            !matches!(
                f,
                Field::Intrinsic(
                    Intrinsic::Name
                        | Intrinsic::Duration
                        | Intrinsic::RootName
                        | Intrinsic::RootServiceName
                )
            )
        });
        let mut matches = Vec::new();
        let mut inspected = 0u64;
        source.for_each_trace(start, end, &mut |trace| {
            inspected += 1;
            if let Some(found) = self.match_trace(trace, &shown, spans_per_spanset) {
                matches.push(found);
            }
        });
        matches.sort_by_key(|m| std::cmp::Reverse(m.start));
        matches.truncate(limit);
        (matches, inspected)
    }

    fn match_trace(
        &self,
        trace: &Trace,
        shown: &[&Field],
        spans_per_spanset: usize,
    ) -> Option<TraceMatch> {
        let view = TraceView::new(trace);
        let mut picked = select(&view, &self.spanset);
        for stage in &self.pipeline {
            match stage {
                Stage::Select(_) => {}
                Stage::Filter(cond) => {
                    for (i, span) in trace.spans.iter().enumerate() {
                        picked[i] = picked[i] && holds(&view, span, cond);
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
                        Aggregate::Avg if numbers.is_empty() => return None,
                        Aggregate::Avg => numbers.iter().sum::<f64>() / numbers.len() as f64,
                        Aggregate::Min => numbers.iter().copied().fold(f64::NAN, f64::min),
                        Aggregate::Max => numbers.iter().copied().fold(f64::NAN, f64::max),
                    };
                    if !compare(&Val::Float(result), *op, value, None) {
                        return None;
                    }
                }
            }
        }
        let matched: Vec<&Span> = trace
            .spans
            .iter()
            .zip(&picked)
            .filter(|(_, p)| **p)
            .map(|(s, _)| s)
            .collect();
        if matched.is_empty() {
            return None;
        }
        let root = view.root;
        let mut spans: Vec<MatchedSpan> = matched
            .iter()
            .map(|span| MatchedSpan {
                span_id: span.span_id.to_string(),
                name: span.name.clone(),
                service_name: span.service_name().to_owned(),
                start: span.start,
                duration_nanos: span.duration_nanos(),
                attributes: shown
                    .iter()
                    .filter_map(|f| {
                        to_attr(view.value(span, f))
                            .map(|v| (f.label().trim_start_matches('.').to_owned(), v))
                    })
                    .collect(),
            })
            .collect();
        spans.sort_by_key(|s| s.start);
        let matched_count = spans.len();
        spans.truncate(spans_per_spanset);
        Some(TraceMatch {
            trace_id: trace.trace_id.to_string(),
            root_service_name: root.map_or("<root span not yet received>".into(), |r| {
                r.service_name().to_owned()
            }),
            root_trace_name: root.map_or(String::new(), |r| r.name.clone()),
            start: trace.start(),
            duration_ms: trace.duration_nanos() / 1_000_000,
            spans,
            matched: matched_count,
        })
    }
}
