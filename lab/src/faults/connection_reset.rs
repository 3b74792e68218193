//! `connection-reset`: the db-proxy ends the server's connections to
//! Postgres with a TCP RST a few bytes in — the open ones and every new
//! one — as a stateful firewall or a NAT that forgot its table would. The
//! server's statements fail with "connection reset by peer" while Postgres,
//! asked directly, answers at once.

use anyhow::Result;
use lab_proxy::Toxics;

use super::{InfraKind, Params, known_params, param, proxy_component, toxic_action};

pub const KIND: InfraKind = InfraKind {
    name: "connection-reset",
    summary: "the db-proxy resets the server↔Postgres connections, open and new, after a few bytes \
              (--param probability=, after_bytes=, existing=true|false, seed=)",
    symptoms: "requests fail with 500 on every beast; the server's database spans fail without a SQLSTATE, \
               with \"connection reset by peer\", while Postgres answers the lab's own SELECT 1 at once",
    component: proxy_component,
    action: toxic_action,
    toxics: Some(toxics),
};

const PARAMS: &[&str] = &["probability", "after_bytes", "existing", "seed"];

fn toxics(params: &Params) -> Result<Toxics> {
    known_params(KIND.name, params, PARAMS)?;
    let toxics = Toxics {
        reset: param(params, "probability", 1.0, "a probability from 0 to 1")?,
        // Into the start-up message: a connection never gets to a query.
        reset_after_bytes: param(params, "after_bytes", 64, "a number of bytes")?,
        existing: param(params, "existing", true, "true or false")?,
        seed: params
            .contains_key("seed")
            .then(|| param(params, "seed", 0, "a number"))
            .transpose()?,
        ..Toxics::default()
    };
    toxics.validate()?;
    Ok(toxics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_reset_every_connection_open_and_new() {
        let t = toxics(&Params::new()).unwrap();
        assert_eq!((t.reset, t.reset_after_bytes, t.existing), (1.0, 64, true));
        let half = Params::from([("probability".to_owned(), "1.5".to_owned())]);
        assert!(toxics(&half).unwrap_err().to_string().contains("reset"));
    }
}
