//! Evaluating promql-parser's AST over every step of a range at once:
//! each node yields a scalar per step or series with a value (or none) per
//! step, so a selector reads its series once for the whole range.

use std::collections::{BTreeMap, HashMap};

use lab_signals::{Labels, Sample, SeriesSource};
use promql_parser::label::Matcher;
use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, Offset,
    VectorMatchCardinality, VectorSelector,
};

use crate::QueryError;

/// A function of the samples in a window `(start, end]`.
type WindowFn<'a> = dyn Fn(&[Sample], i64, i64) -> Option<f64> + 'a;

/// Bucket series of one histogram: (`le`, value per step).
type Buckets = Vec<(f64, Vec<Option<f64>>)>;

/// Prometheus' default lookback for instant vector selectors.
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Clone)]
pub struct Series {
    pub labels: Labels,
    /// One value (or none) per step.
    pub values: Vec<Option<f64>>,
}

#[derive(Debug, Clone)]
pub enum Val {
    Scalar(Vec<f64>),
    Vector(Vec<Series>),
    Str(String),
}

/// A series' labels and its raw (Unix milliseconds, value) samples.
pub type RawSeries = (Labels, Vec<(i64, f64)>);

pub struct Eval<'a, S: SeriesSource + ?Sized> {
    pub source: &'a S,
    /// The evaluation times, Unix milliseconds.
    pub steps: Vec<i64>,
}

fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
        None => 0,
    }
}

fn matchers(vs: &VectorSelector) -> Vec<Matcher> {
    let mut all = vs.matchers.matchers.clone();
    if let Some(name) = &vs.name {
        all.push(Matcher::new(
            promql_parser::label::MatchOp::Equal,
            "__name__",
            name,
        ));
    }
    all
}

fn accepts(vs: &VectorSelector, labels: &Labels) -> bool {
    let base = matchers(vs);
    let hit = |set: &[Matcher]| {
        set.iter()
            .all(|m| m.is_match(labels.get(&m.name).unwrap_or("")))
    };
    if vs.matchers.or_matchers.is_empty() {
        hit(&base)
    } else {
        vs.matchers
            .or_matchers
            .iter()
            .any(|alt| hit(&base) && hit(alt))
    }
}

/// The labels `by`/`on` keep, or those `without`/`ignoring` leave (never
/// the metric name).
fn grouped(labels: &Labels, modifier: &LabelModifier) -> Labels {
    let (names, include) = match modifier {
        LabelModifier::Include(names) => (names, true),
        LabelModifier::Exclude(names) => (names, false),
    };
    Labels::new(
        labels
            .iter()
            .filter(|(k, _)| {
                let listed = names.labels.iter().any(|n| n == k);
                if include {
                    listed
                } else {
                    *k != "__name__" && !listed
                }
            })
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
}

fn drop_name(labels: &Labels) -> Labels {
    labels.without("__name__")
}

impl<S: SeriesSource + ?Sized> Eval<'_, S> {
    fn n(&self) -> usize {
        self.steps.len()
    }

    /// The samples of every series the selector accepts in `[from, to]`.
    fn select(
        &self,
        vs: &VectorSelector,
        from: i64,
        to: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, QueryError> {
        if vs.at.is_some() {
            return Err(QueryError::Unsupported("the @ modifier".into()));
        }
        let mut out = Vec::new();
        let accept = |labels: &Labels| accepts(vs, labels);
        self.source.for_each_series(&accept, from, to, &mut |view| {
            if !view.samples.is_empty() {
                out.push((view.labels.clone(), view.samples.to_vec()));
            }
        });
        Ok(out)
    }

    pub fn eval(&self, expr: &Expr) -> Result<Val, QueryError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; self.n()])),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(series) => Ok(Val::Vector(
                    series
                        .into_iter()
                        .map(|s| Series {
                            labels: drop_name(&s.labels),
                            values: s.values.into_iter().map(|v| v.map(|x| -x)).collect(),
                        })
                        .collect(),
                )),
                Val::Str(_) => Err(QueryError::Type("unary minus needs a number".into())),
            },
            Expr::VectorSelector(vs) => self.instant(vs),
            Expr::MatrixSelector(_) => Err(QueryError::Type(
                "a range vector cannot be the result of an expression: wrap it in a function such as rate()".into(),
            )),
            Expr::Subquery(_) => Err(QueryError::Unsupported("subqueries".into())),
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::Binary(b) => self.binary(b),
            Expr::Call(c) => self.call(c),
            Expr::Extension(_) => Err(QueryError::Unsupported("extension expressions".into())),
        }
    }

    fn instant(&self, vs: &VectorSelector) -> Result<Val, QueryError> {
        let offset = offset_ms(&vs.offset);
        let first = self.steps[0] - offset - LOOKBACK_MS;
        let last = *self.steps.last().unwrap() - offset;
        let series = self
            .select(vs, first, last)?
            .into_iter()
            .map(|(labels, samples)| {
                let values = self
                    .steps
                    .iter()
                    .map(|&t| {
                        let t = t - offset;
                        let i = samples.partition_point(|s| s.t <= t);
                        (i > 0 && samples[i - 1].t > t - LOOKBACK_MS).then(|| samples[i - 1].v)
                    })
                    .collect();
                Series { labels, values }
            })
            .collect();
        Ok(Val::Vector(series))
    }

    /// The samples a range vector holds at the (one) evaluation time, as
    /// they were stored: Unix milliseconds and value, names kept.
    pub fn raw_samples(&self, ms: &MatrixSelector) -> Result<Vec<RawSeries>, QueryError> {
        let range = ms.range.as_millis() as i64;
        let end = self.steps[0] - offset_ms(&ms.vs.offset);
        Ok(self
            .select(&ms.vs, end - range, end)?
            .into_iter()
            .map(|(labels, samples)| {
                let points = samples
                    .iter()
                    .filter(|s| s.t > end - range && s.t <= end)
                    .map(|s| (s.t, s.v))
                    .collect();
                (labels, points)
            })
            .filter(|(_, points): &RawSeries| !points.is_empty())
            .collect())
    }

    /// A range function over a matrix selector, at every step.
    fn over_range(&self, ms: &MatrixSelector, f: &WindowFn<'_>) -> Result<Vec<Series>, QueryError> {
        let range = ms.range.as_millis() as i64;
        let offset = offset_ms(&ms.vs.offset);
        let first = self.steps[0] - offset - range;
        let last = *self.steps.last().unwrap() - offset;
        Ok(self
            .select(&ms.vs, first, last)?
            .into_iter()
            .map(|(labels, samples)| {
                let values = self
                    .steps
                    .iter()
                    .map(|&t| {
                        let end = t - offset;
                        let start = end - range;
                        let from = samples.partition_point(|s| s.t <= start);
                        let to = samples.partition_point(|s| s.t <= end);
                        if to > from {
                            f(&samples[from..to], start, end)
                        } else {
                            None
                        }
                    })
                    .collect();
                Series {
                    labels: drop_name(&labels),
                    values,
                }
            })
            .collect())
    }

    fn scalar_arg(&self, expr: &Expr) -> Result<Vec<f64>, QueryError> {
        match self.eval(expr)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(QueryError::Type("expected a scalar argument".into())),
        }
    }

    fn vector_arg(&self, expr: &Expr) -> Result<Vec<Series>, QueryError> {
        match self.eval(expr)? {
            Val::Vector(v) => Ok(v),
            _ => Err(QueryError::Type(
                "expected an instant vector argument".into(),
            )),
        }
    }

    fn string_arg(&self, expr: &Expr) -> Result<String, QueryError> {
        match self.eval(expr)? {
            Val::Str(s) => Ok(s),
            _ => Err(QueryError::Type("expected a string argument".into())),
        }
    }

    fn call(&self, call: &Call) -> Result<Val, QueryError> {
        let args = &call.args.args;
        let name = call.func.name;
        let matrix = |i: usize| -> Result<&MatrixSelector, QueryError> {
            match args.get(i).map(|a| a.as_ref()) {
                Some(Expr::MatrixSelector(ms)) => Ok(ms),
                Some(Expr::Subquery(_)) => Err(QueryError::Unsupported("subqueries".into())),
                _ => Err(QueryError::Type(format!(
                    "{name}() expects a range vector such as metric[5m]"
                ))),
            }
        };
        let map = |f: &dyn Fn(f64) -> f64| -> Result<Val, QueryError> {
            let series = self.vector_arg(&args[0])?;
            Ok(Val::Vector(
                series
                    .into_iter()
                    .map(|s| Series {
                        labels: drop_name(&s.labels),
                        values: s.values.into_iter().map(|v| v.map(f)).collect(),
                    })
                    .collect(),
            ))
        };
        match name {
            "rate" => Ok(Val::Vector(self.over_range(matrix(0)?, &|s, a, b| {
                extrapolated(s, a, b, true, true)
            })?)),
            "increase" => {
                Ok(Val::Vector(self.over_range(matrix(0)?, &|s, a, b| {
                    extrapolated(s, a, b, true, false)
                })?))
            }
            "delta" => Ok(Val::Vector(self.over_range(matrix(0)?, &|s, a, b| {
                extrapolated(s, a, b, false, false)
            })?)),
            "irate" => {
                Ok(Val::Vector(self.over_range(matrix(0)?, &|s, _, _| {
                    instant_change(s, true)
                })?))
            }
            "idelta" => {
                Ok(Val::Vector(self.over_range(matrix(0)?, &|s, _, _| {
                    instant_change(s, false)
                })?))
            }
            "avg_over_time" => Ok(Val::Vector(self.over_range(matrix(0)?, &|s, _, _| {
                Some(s.iter().map(|x| x.v).sum::<f64>() / s.len() as f64)
            })?)),
            "sum_over_time" => {
                Ok(Val::Vector(self.over_range(matrix(0)?, &|s, _, _| {
                    Some(s.iter().map(|x| x.v).sum())
                })?))
            }
            "count_over_time" => Ok(Val::Vector(
                self.over_range(matrix(0)?, &|s, _, _| Some(s.len() as f64))?,
            )),
            "min_over_time" => Ok(Val::Vector(self.over_range(matrix(0)?, &|s, _, _| {
                s.iter().map(|x| x.v).reduce(f64::min)
            })?)),
            "max_over_time" => Ok(Val::Vector(self.over_range(matrix(0)?, &|s, _, _| {
                s.iter().map(|x| x.v).reduce(f64::max)
            })?)),
            "last_over_time" => {
                let ms = matrix(0)?;
                let mut series = self.over_range(ms, &|s, _, _| s.last().map(|x| x.v))?;
                // last_over_time keeps the metric name.
                for s in &mut series {
                    if let Some(name) = &ms.vs.name {
                        s.labels = s.labels.with("__name__", name);
                    }
                }
                Ok(Val::Vector(series))
            }
            "stddev_over_time" | "stdvar_over_time" => {
                let std = name == "stddev_over_time";
                Ok(Val::Vector(self.over_range(matrix(0)?, &|s, _, _| {
                    let values: Vec<f64> = s.iter().map(|x| x.v).collect();
                    let var = variance(&values);
                    Some(if std { var.sqrt() } else { var })
                })?))
            }
            "quantile_over_time" => {
                let q = self.scalar_arg(&args[0])?[0];
                Ok(Val::Vector(self.over_range(matrix(1)?, &|s, _, _| {
                    let mut values: Vec<f64> = s.iter().map(|x| x.v).collect();
                    Some(quantile(q, &mut values))
                })?))
            }
            "abs" => map(&f64::abs),
            "ceil" => map(&f64::ceil),
            "floor" => map(&f64::floor),
            "exp" => map(&f64::exp),
            "ln" => map(&f64::ln),
            "log2" => map(&f64::log2),
            "log10" => map(&f64::log10),
            "sqrt" => map(&f64::sqrt),
            "round" => {
                let to = match args.get(1) {
                    Some(a) => self.scalar_arg(a)?[0],
                    None => 1.0,
                };
                map(&move |x| (x / to).round() * to)
            }
            "clamp" => {
                let (lo, hi) = (self.scalar_arg(&args[1])?[0], self.scalar_arg(&args[2])?[0]);
                map(&move |x| x.max(lo).min(hi))
            }
            "clamp_min" => {
                let lo = self.scalar_arg(&args[1])?[0];
                map(&move |x| x.max(lo))
            }
            "clamp_max" => {
                let hi = self.scalar_arg(&args[1])?[0];
                map(&move |x| x.min(hi))
            }
            "time" => Ok(Val::Scalar(
                self.steps.iter().map(|&t| t as f64 / 1000.0).collect(),
            )),
            "vector" => {
                let v = self.scalar_arg(&args[0])?;
                Ok(Val::Vector(vec![Series {
                    labels: Labels::default(),
                    values: v.into_iter().map(Some).collect(),
                }]))
            }
            "scalar" => {
                let series = self.vector_arg(&args[0])?;
                Ok(Val::Scalar(
                    (0..self.n())
                        .map(|i| {
                            let present: Vec<f64> =
                                series.iter().filter_map(|s| s.values[i]).collect();
                            if present.len() == 1 {
                                present[0]
                            } else {
                                f64::NAN
                            }
                        })
                        .collect(),
                ))
            }
            "timestamp" => {
                let series = self.vector_arg(&args[0])?;
                let steps = &self.steps;
                Ok(Val::Vector(
                    series
                        .into_iter()
                        .map(|s| Series {
                            labels: drop_name(&s.labels),
                            values: s
                                .values
                                .iter()
                                .zip(steps)
                                .map(|(v, t)| v.map(|_| *t as f64 / 1000.0))
                                .collect(),
                        })
                        .collect(),
                ))
            }
            "sort" | "sort_desc" => {
                let mut series = self.vector_arg(&args[0])?;
                let desc = name == "sort_desc";
                series.sort_by(|a, b| {
                    let (x, y) = (
                        a.values[0].unwrap_or(f64::NAN),
                        b.values[0].unwrap_or(f64::NAN),
                    );
                    if desc {
                        y.total_cmp(&x)
                    } else {
                        x.total_cmp(&y)
                    }
                });
                Ok(Val::Vector(series))
            }
            "absent" => {
                let series = self.vector_arg(&args[0])?;
                let labels = match args[0].as_ref() {
                    Expr::VectorSelector(vs) => Labels::new(
                        vs.matchers
                            .matchers
                            .iter()
                            .filter(|m| {
                                m.op == promql_parser::label::MatchOp::Equal && m.name != "__name__"
                            })
                            .map(|m| (m.name.clone(), m.value.clone())),
                    ),
                    _ => Labels::default(),
                };
                Ok(Val::Vector(vec![Series {
                    labels,
                    values: (0..self.n())
                        .map(|i| (!series.iter().any(|s| s.values[i].is_some())).then_some(1.0))
                        .collect(),
                }]))
            }
            "label_replace" => {
                let series = self.vector_arg(&args[0])?;
                let (dst, replacement, src, regex) = (
                    self.string_arg(&args[1])?,
                    self.string_arg(&args[2])?,
                    self.string_arg(&args[3])?,
                    self.string_arg(&args[4])?,
                );
                let regex = regex::Regex::new(&format!("^(?:{regex})$")).map_err(|e| {
                    QueryError::Execution(format!(
                        "invalid regular expression in label_replace(): {e}"
                    ))
                })?;
                Ok(Val::Vector(
                    series
                        .into_iter()
                        .map(|s| {
                            let value = s.labels.get(&src).unwrap_or("").to_owned();
                            let labels = match regex.captures(&value) {
                                Some(caps) => {
                                    let mut out = String::new();
                                    caps.expand(&replacement, &mut out);
                                    if out.is_empty() {
                                        s.labels.without(&dst)
                                    } else {
                                        s.labels.with(&dst, &out)
                                    }
                                }
                                None => s.labels.clone(),
                            };
                            Series {
                                labels,
                                values: s.values,
                            }
                        })
                        .collect(),
                ))
            }
            "label_join" => {
                let series = self.vector_arg(&args[0])?;
                let dst = self.string_arg(&args[1])?;
                let sep = self.string_arg(&args[2])?;
                let srcs: Vec<String> = args[3..]
                    .iter()
                    .map(|a| self.string_arg(a))
                    .collect::<Result<_, _>>()?;
                Ok(Val::Vector(
                    series
                        .into_iter()
                        .map(|s| {
                            let joined: Vec<&str> =
                                srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect();
                            Series {
                                labels: s.labels.with(&dst, &joined.join(&sep)),
                                values: s.values,
                            }
                        })
                        .collect(),
                ))
            }
            "histogram_quantile" => {
                let q = self.scalar_arg(&args[0])?;
                let series = self.vector_arg(&args[1])?;
                Ok(Val::Vector(histogram_quantile(&q, series, self.n())))
            }
            other => Err(QueryError::Unsupported(format!("the function {other}()"))),
        }
    }

    fn aggregate(&self, a: &AggregateExpr) -> Result<Val, QueryError> {
        let op = a.op.to_string();
        let series = self.vector_arg(&a.expr)?;
        let key = |labels: &Labels| -> Labels {
            match &a.modifier {
                Some(modifier) => grouped(labels, modifier),
                None => Labels::default(),
            }
        };
        let param = match &a.param {
            Some(p) if op != "count_values" => Some(self.scalar_arg(p)?),
            _ => None,
        };
        let mut groups: BTreeMap<Labels, Vec<usize>> = BTreeMap::new();
        for (i, s) in series.iter().enumerate() {
            groups.entry(key(&s.labels)).or_default().push(i);
        }
        let n = self.n();
        if op == "topk" || op == "bottomk" {
            let k = param.expect("topk and bottomk take a parameter");
            let mut keep = vec![vec![None; n]; series.len()];
            for members in groups.values() {
                for step in 0..n {
                    let mut present: Vec<(usize, f64)> = members
                        .iter()
                        .filter_map(|&i| series[i].values[step].map(|v| (i, v)))
                        .collect();
                    present.sort_by(|x, y| {
                        if op == "topk" {
                            y.1.total_cmp(&x.1)
                        } else {
                            x.1.total_cmp(&y.1)
                        }
                    });
                    for (i, v) in present.into_iter().take(k[step].max(0.0) as usize) {
                        keep[i][step] = Some(v);
                    }
                }
            }
            return Ok(Val::Vector(
                series
                    .into_iter()
                    .zip(keep)
                    .filter(|(_, v)| v.iter().any(Option::is_some))
                    .map(|(s, values)| Series {
                        labels: s.labels,
                        values,
                    })
                    .collect(),
            ));
        }
        let mut out = Vec::new();
        for (labels, members) in groups {
            let values = (0..n)
                .map(|step| {
                    let mut present: Vec<f64> = members
                        .iter()
                        .filter_map(|&i| series[i].values[step])
                        .collect();
                    if present.is_empty() {
                        return Ok(None);
                    }
                    Ok(Some(match op.as_str() {
                        "sum" => present.iter().sum(),
                        "avg" => present.iter().sum::<f64>() / present.len() as f64,
                        "min" => present.iter().copied().fold(f64::INFINITY, f64::min),
                        "max" => present.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        "count" => present.len() as f64,
                        "group" => 1.0,
                        "stddev" => variance(&present).sqrt(),
                        "stdvar" => variance(&present),
                        "quantile" => quantile(
                            param.as_ref().expect("quantile takes a parameter")[step],
                            &mut present,
                        ),
                        other => {
                            return Err(QueryError::Unsupported(format!(
                                "the aggregation {other}"
                            )));
                        }
                    }))
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.push(Series { labels, values });
        }
        Ok(Val::Vector(out))
    }

    fn binary(&self, b: &BinaryExpr) -> Result<Val, QueryError> {
        let op = b.op.to_string();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let comparison = b.op.is_comparison_operator();
        let lhs = self.eval(&b.lhs)?;
        let rhs = self.eval(&b.rhs)?;
        let apply = |x: f64, y: f64| -> Option<f64> { operate(&op, x, y, comparison, return_bool) };
        match (lhs, rhs) {
            (Val::Scalar(x), Val::Scalar(y)) => Ok(Val::Scalar(
                x.iter()
                    .zip(&y)
                    .map(|(a, b)| apply(*a, *b).unwrap_or(0.0))
                    .collect(),
            )),
            (Val::Vector(v), Val::Scalar(s)) => Ok(Val::Vector(self.vector_scalar(
                v,
                &s,
                apply,
                comparison && !return_bool,
            ))),
            (Val::Scalar(s), Val::Vector(v)) => Ok(Val::Vector(self.vector_scalar(
                v,
                &s,
                |x, y| apply(y, x),
                comparison && !return_bool,
            ))),
            (Val::Vector(l), Val::Vector(r)) => {
                self.vector_vector(b, &op, l, r, comparison, return_bool)
            }
            _ => Err(QueryError::Type(format!(
                "operator {op} needs numbers or vectors"
            ))),
        }
    }

    fn vector_scalar(
        &self,
        v: Vec<Series>,
        s: &[f64],
        f: impl Fn(f64, f64) -> Option<f64>,
        keep_name: bool,
    ) -> Vec<Series> {
        v.into_iter()
            .map(|series| Series {
                labels: if keep_name {
                    series.labels
                } else {
                    drop_name(&series.labels)
                },
                values: series
                    .values
                    .iter()
                    .zip(s)
                    .map(|(v, s)| v.and_then(|v| f(v, *s)))
                    .collect(),
            })
            .filter(|series| series.values.iter().any(Option::is_some))
            .collect()
    }

    fn vector_vector(
        &self,
        b: &BinaryExpr,
        op: &str,
        l: Vec<Series>,
        r: Vec<Series>,
        comparison: bool,
        return_bool: bool,
    ) -> Result<Val, QueryError> {
        let modifier = b.modifier.as_ref();
        let matching = modifier.and_then(|m| m.matching.as_ref());
        let signature = |labels: &Labels| -> Labels {
            match matching {
                Some(modifier) => grouped(labels, modifier),
                None => drop_name(labels),
            }
        };
        if b.op.is_set_operator() {
            let right: HashMap<Labels, Vec<&Series>> =
                r.iter().fold(HashMap::new(), |mut map, s| {
                    map.entry(signature(&s.labels)).or_default().push(s);
                    map
                });
            let present_right = |sig: &Labels, step: usize| {
                right
                    .get(sig)
                    .is_some_and(|v| v.iter().any(|s| s.values[step].is_some()))
            };
            let mut out: Vec<Series> = Vec::new();
            match op {
                "and" | "unless" => {
                    for s in l {
                        let sig = signature(&s.labels);
                        let values = s
                            .values
                            .iter()
                            .enumerate()
                            .map(|(i, v)| v.filter(|_| present_right(&sig, i) == (op == "and")))
                            .collect();
                        out.push(Series {
                            labels: s.labels,
                            values,
                        });
                    }
                }
                _ => {
                    let left_sigs: Vec<(Labels, Vec<bool>)> = l
                        .iter()
                        .map(|s| {
                            (
                                signature(&s.labels),
                                s.values.iter().map(Option::is_some).collect(),
                            )
                        })
                        .collect();
                    out.extend(l);
                    for s in r {
                        let sig = signature(&s.labels);
                        let values = s
                            .values
                            .iter()
                            .enumerate()
                            .map(|(i, v)| {
                                v.filter(|_| {
                                    !left_sigs
                                        .iter()
                                        .any(|(ls, present)| *ls == sig && present[i])
                                })
                            })
                            .collect();
                        out.push(Series {
                            labels: s.labels,
                            values,
                        });
                    }
                }
            }
            out.retain(|s| s.values.iter().any(Option::is_some));
            return Ok(Val::Vector(out));
        }
        let card = modifier
            .map(|m| m.card.clone())
            .unwrap_or(VectorMatchCardinality::OneToOne);
        // The "one" side is indexed by signature; the other side walks it.
        let (many, one, swapped, include) = match &card {
            VectorMatchCardinality::OneToMany(include) => (r, l, true, Some(include.clone())),
            VectorMatchCardinality::ManyToOne(include) => (l, r, false, Some(include.clone())),
            _ => (l, r, false, None),
        };
        let mut index: HashMap<Labels, &Series> = HashMap::new();
        for s in &one {
            if index.insert(signature(&s.labels), s).is_some() {
                return Err(QueryError::Execution(format!(
                    "found duplicate series for the match group {} on the {} hand-side of the operation: many-to-many matching not allowed: matching labels must be unique on one side",
                    signature(&s.labels),
                    if swapped { "left" } else { "right" }
                )));
            }
        }
        let mut out = Vec::new();
        let mut seen: HashMap<Labels, ()> = HashMap::new();
        for s in &many {
            let sig = signature(&s.labels);
            let Some(other) = index.get(&sig) else {
                continue;
            };
            let mut labels = if comparison && !return_bool {
                s.labels.clone()
            } else {
                drop_name(&s.labels)
            };
            match (&include, &card) {
                (Some(include), _) => {
                    for name in &include.labels {
                        labels = match other.labels.get(name) {
                            Some(v) => labels.with(name, v),
                            None => labels.without(name),
                        };
                    }
                }
                (None, _) => {
                    if matching.is_some_and(LabelModifier::is_include) {
                        labels = sig.clone();
                    }
                    if seen.insert(labels.clone(), ()).is_some() {
                        return Err(QueryError::Execution(format!(
                            "found duplicate series for the match group {sig} on the left hand-side of the operation: many-to-many matching not allowed"
                        )));
                    }
                }
            }
            let values = s
                .values
                .iter()
                .zip(&other.values)
                .map(|(a, b)| match (a, b) {
                    (Some(a), Some(b)) => {
                        let (x, y) = if swapped { (*b, *a) } else { (*a, *b) };
                        // A filtering comparison keeps the left side's value.
                        operate(op, x, y, comparison, return_bool)
                            .map(|v| if comparison && !return_bool { x } else { v })
                    }
                    _ => None,
                })
                .collect();
            out.push(Series { labels, values });
        }
        out.retain(|s| s.values.iter().any(Option::is_some));
        Ok(Val::Vector(out))
    }
}

/// `x op y`; comparisons filter (None) or give 0/1 with `bool`.
fn operate(op: &str, x: f64, y: f64, comparison: bool, return_bool: bool) -> Option<f64> {
    if comparison {
        let holds = match op {
            "==" => x == y,
            "!=" => x != y,
            ">" => x > y,
            "<" => x < y,
            ">=" => x >= y,
            "<=" => x <= y,
            _ => false,
        };
        return if return_bool {
            Some(if holds { 1.0 } else { 0.0 })
        } else {
            holds.then_some(x)
        };
    }
    Some(match op {
        "+" => x + y,
        "-" => x - y,
        "*" => x * y,
        "/" => x / y,
        "%" => x % y,
        "^" => x.powf(y),
        "atan2" => x.atan2(y),
        _ => f64::NAN,
    })
}

fn variance(values: &[f64]) -> f64 {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64
}

/// Prometheus' quantile: linear interpolation between closest ranks.
fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(f64::total_cmp);
    let rank = q * (values.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let upper = (lower + 1).min(values.len() - 1);
    let weight = rank - lower as f64;
    values[lower] * (1.0 - weight) + values[upper] * weight
}

/// Prometheus' extrapolated rate/increase/delta over one window.
fn extrapolated(
    samples: &[Sample],
    range_start: i64,
    range_end: i64,
    counter: bool,
    rate: bool,
) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let first = samples[0];
    let last = *samples.last().unwrap();
    let mut result = last.v - first.v;
    if counter {
        for pair in samples.windows(2) {
            if pair[1].v < pair[0].v {
                result += pair[0].v;
            }
        }
    }
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let mut to_start = (first.t - range_start) as f64 / 1000.0;
    let to_end = (range_end - last.t) as f64 / 1000.0;
    let average = sampled / (samples.len() - 1) as f64;
    if counter && result > 0.0 && first.v >= 0.0 {
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average / 2.0
    };
    result *= interval / sampled;
    if rate {
        result /= (range_end - range_start) as f64 / 1000.0;
    }
    Some(result)
}

/// `irate` / `idelta`: from the last two samples.
fn instant_change(samples: &[Sample], rate: bool) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (prev, last) = (samples[samples.len() - 2], samples[samples.len() - 1]);
    if !rate {
        return Some(last.v - prev.v);
    }
    let change = if last.v < prev.v {
        last.v
    } else {
        last.v - prev.v
    };
    let seconds = (last.t - prev.t) as f64 / 1000.0;
    (seconds > 0.0).then(|| change / seconds)
}

/// Groups `_bucket` series by their labels without `le` and interpolates
/// the quantile within the bucket it falls in, at each step.
fn histogram_quantile(q: &[f64], series: Vec<Series>, n: usize) -> Vec<Series> {
    let mut groups: BTreeMap<Labels, Buckets> = BTreeMap::new();
    for s in series {
        let Some(le) = s.labels.get("le").and_then(|le| {
            le.parse::<f64>()
                .ok()
                .or_else(|| (le == "+Inf").then_some(f64::INFINITY))
        }) else {
            continue;
        };
        groups
            .entry(drop_name(&s.labels).without("le"))
            .or_default()
            .push((le, s.values));
    }
    groups
        .into_iter()
        .map(|(labels, mut buckets)| {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let values = (0..n)
                .map(|step| {
                    let counts: Vec<(f64, f64)> = buckets
                        .iter()
                        .filter_map(|(le, v)| v[step].map(|c| (*le, c)))
                        .collect();
                    bucket_quantile(q[step], counts)
                })
                .collect();
            Series { labels, values }
        })
        .collect()
}

fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> Option<f64> {
    if buckets.is_empty() {
        return None;
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) || buckets.len() < 2 {
        return Some(f64::NAN);
    }
    // Counts must not fall from one bucket to the next (scrapes can race).
    for i in 1..buckets.len() {
        if buckets[i].1 < buckets[i - 1].1 {
            buckets[i].1 = buckets[i - 1].1;
        }
    }
    let observations = buckets.last().unwrap().1;
    if observations == 0.0 {
        return Some(f64::NAN);
    }
    let mut rank = q * observations;
    let b = buckets.partition_point(|bucket| bucket.1 < rank);
    if b == buckets.len() - 1 {
        return Some(buckets[buckets.len() - 2].0);
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return Some(buckets[0].0);
    }
    let mut start = 0.0;
    let end = buckets[b].0;
    let mut count = buckets[b].1;
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    Some(start + (end - start) * (rank / count))
}
