//! Any text, however broken, is a parse result or a parse error.

use proptest::prelude::*;

proptest! {
    #[test]
    fn arbitrary_text_never_panics_the_parser(text in "\\PC{0,60}") {
        let _ = lab_traceql::parse(&text);
    }

    #[test]
    fn mutated_queries_never_panic_the_parser(cut in 0usize..120, insert in "\\PC{0,3}") {
        let query = r#"{ resource.service.name = "mythical-requester" && span.http.status_code = 500 } >> { status = error } | count() > 1"#;
        let at = query.char_indices().map(|(i, _)| i).nth(cut % query.chars().count()).unwrap_or(0);
        let mutated = format!("{}{}{}", &query[..at], insert, &query[at..]);
        let _ = lab_traceql::parse(&mutated);
        let _ = lab_traceql::parse(&query[..at]);
    }
}
