//! `network-latency`: the db-proxy holds every chunk between
//! mythical-server and Postgres for 300 ms ± 100 ms, as a congested or
//! far-away network would. Every statement takes at least a round trip of
//! that; Postgres itself, asked directly, answers at once.

use anyhow::{Result, bail};
use lab_proxy::{Direction, Toxics};

use super::{InfraKind, Params, known_params, param, proxy_component, toxic_action};

pub const KIND: InfraKind = InfraKind {
    name: "network-latency",
    summary: "the db-proxy delays the server↔Postgres traffic 300 ms ± 100 ms \
              (--param latency_ms=, jitter_ms=, direction=both|upstream|downstream, seed=)",
    symptoms: "every request is slow, on every beast and method, without errors; the server's database \
               spans take 400 ms and more while Postgres answers the lab's own SELECT 1 in a millisecond \
               and no session waits on a lock",
    component: proxy_component,
    action: toxic_action,
    toxics: Some(toxics),
};

const PARAMS: &[&str] = &["latency_ms", "jitter_ms", "direction", "seed"];

fn toxics(params: &Params) -> Result<Toxics> {
    known_params(KIND.name, params, PARAMS)?;
    let direction = match params.get("direction").map(|d| d.trim()) {
        None | Some("both") => Direction::Both,
        Some("upstream") => Direction::Upstream,
        Some("downstream") => Direction::Downstream,
        Some(other) => bail!(
            "--param direction={other}: expected both, upstream (server → Postgres) or downstream (Postgres → server)"
        ),
    };
    let toxics = Toxics {
        latency: param(params, "latency_ms", 300, "milliseconds, e.g. 300")?,
        jitter: param(params, "jitter_ms", 100, "milliseconds, e.g. 100")?,
        seed: params
            .contains_key("seed")
            .then(|| param(params, "seed", 0, "a number"))
            .transpose()?,
        direction,
        ..Toxics::default()
    };
    toxics.validate()?;
    Ok(toxics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_300_ms_with_100_ms_jitter_both_ways() {
        let t = toxics(&Params::new()).unwrap();
        assert_eq!(
            (t.latency, t.jitter, t.direction, t.seed),
            (300, 100, Direction::Both, None)
        );
        let given = Params::from([
            ("latency_ms".to_owned(), "500".to_owned()),
            ("seed".to_owned(), "7".to_owned()),
        ]);
        let t = toxics(&given).unwrap();
        assert_eq!((t.latency, t.seed), (500, Some(7)));
    }

    #[test]
    fn a_bad_parameter_is_named() {
        let typo = Params::from([("latency".to_owned(), "5".to_owned())]);
        assert!(
            toxics(&typo)
                .unwrap_err()
                .to_string()
                .contains("latency_ms")
        );
        let word = Params::from([("latency_ms".to_owned(), "slow".to_owned())]);
        assert!(
            toxics(&word)
                .unwrap_err()
                .to_string()
                .contains("latency_ms=slow")
        );
    }
}
