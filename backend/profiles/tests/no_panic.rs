//! Whatever bytes arrive, decoding answers with profiles or an error:
//! never a panic.

use lab_profiles::ingest::{self, IngestRequest};
use lab_profiles::{pprof, push};
use lab_signals::Labels;
use proptest::prelude::*;
use prost::Message;

fn request(format: &str) -> IngestRequest {
    let pairs = [
        ("name", "app{env=lab}"),
        ("format", format),
        ("from", "1"),
        ("until", "2"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    IngestRequest::from_pairs(&pairs, 0).unwrap()
}

/// A valid pprof, so mutations of it reach past the first byte.
fn valid_pprof() -> Vec<u8> {
    pprof::from_folded(
        &[("main;serve;hash_the_hoard", 30), ("main;idle", 5)],
        ("cpu", "nanoseconds"),
        10_000_000,
        1,
        10,
    )
    .encode_to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic_any_decoder(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let labels = Labels::from_pairs([("service_name", "app")]);
        let _ = pprof::decode(&body, "process_cpu", &labels, None);
        let _ = push::decode(&body);
        for format in ["folded", "lines", "pprof"] {
            let _ = ingest::decode(&request(format), Some("multipart/form-data; boundary=b"), &body);
            let _ = ingest::decode(&request(format), None, &body);
        }
    }

    #[test]
    fn mutated_pprof_never_panics(at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let labels = Labels::from_pairs([("service_name", "app")]);
        let mut body = valid_pprof();
        let i = at.index(body.len());
        body[i] = byte;
        let _ = pprof::decode(&body, "process_cpu", &labels, None);
        let len = cut.index(body.len());
        let _ = pprof::decode(&body[..len], "process_cpu", &labels, None);
    }

    #[test]
    fn random_query_parameters_never_panic(name in ".{0,40}", from in ".{0,12}", rate in ".{0,6}") {
        let pairs = [("name", name), ("from", from), ("sampleRate", rate)]
            .map(|(k, v)| (k.to_owned(), v));
        let _ = IngestRequest::from_pairs(&pairs, i64::MAX);
    }

    #[test]
    fn random_selectors_never_panic(query in ".{0,60}") {
        let _ = lab_profiles::Selector::parse(&query);
        let _ = lab_profiles::Selector::parse(&format!("process_cpu:cpu:nanoseconds:cpu:nanoseconds{{{query}}}"));
    }
}
