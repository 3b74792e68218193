//! Any query text, however broken, evaluates or is refused; never a panic.

use lab_signals::{Labels, Sample, Series};
use proptest::prelude::*;

fn data() -> Vec<Series> {
    vec![Series {
        labels: Labels::from_pairs([("__name__", "m"), ("le", "10"), ("job", "a")]),
        samples: (0..10)
            .map(|i| Sample {
                t: i * 15_000,
                v: i as f64,
            })
            .collect(),
        exemplars: Vec::new(),
    }]
}

proptest! {
    #[test]
    fn mutated_queries_never_panic_the_evaluator(cut in 0usize..200, insert in "[a-z0-9(){}\\[\\], +*/<>=!~\"_-]{0,4}") {
        let queries = [
            "histogram_quantile(0.9, sum by (le) (rate(m[1m])))",
            "label_replace(m, \"x\", \"$1\", \"job\", \"(.*)\") * on(job) group_left(le) m",
            "topk(2, m) or absent(nothing) unless m > bool 3",
            "round(clamp(m offset 30s, 1, 5), 2) + quantile_over_time(0.5, m[2m])",
        ];
        let query = queries[cut % queries.len()];
        let at = query.char_indices().map(|(i, _)| i).nth(cut % query.chars().count()).unwrap_or(0);
        let mutated = format!("{}{}{}", &query[..at], insert, &query[at..]);
        let _ = lab_promql::instant_query(&data()[..], &mutated, 150_000);
        let _ = lab_promql::range_query(&data()[..], &mutated, 0, 150_000, 15_000);
    }
}
