//! Rules over evidence: each names one root cause from what the telemetry
//! and the database showed. A new fault kind adds a rule here, not a new
//! diagnosis.

use serde::Serialize;

use super::Failure;

/// The diagnosed cause, in the stable shape of `lab diagnose --json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RootCause {
    /// The fault kind's name.
    pub id: String,
    /// The culprit service.
    pub service: String,
    pub summary: String,
    /// The error, verbatim.
    pub message: String,
}

struct Rule {
    applies: fn(&Failure) -> Option<RootCause>,
}

const RULES: &[Rule] = &[
    Rule {
        applies: bad_deploy,
    },
    Rule { applies: null_name },
    Rule {
        applies: missing_name,
    },
    Rule {
        applies: duplicate_name,
    },
    Rule {
        applies: table_wipe,
    },
    Rule {
        applies: pool_exhaustion,
    },
    Rule {
        applies: database_error,
    },
];

/// The first rule that explains the failure.
pub fn explain(failure: &Failure) -> Option<RootCause> {
    RULES.iter().find_map(|rule| (rule.applies)(failure))
}

fn not_null_column(failure: &Failure) -> Option<String> {
    (failure.sqlstate.as_deref() == Some("23502")).then(|| {
        format!(
            "{}.{}",
            failure.table.as_deref().unwrap_or("?"),
            failure.column.as_deref().unwrap_or("?")
        )
    })
}

/// 23502, and the server had received a name but bound NULL.
fn null_name(failure: &Failure) -> Option<RootCause> {
    let column = not_null_column(failure)?;
    (failure.name_received == Some(true) && failure.bound_null).then(|| RootCause {
        id: "null-name".into(),
        service: "mythical-server".into(),
        summary: format!(
            "mythical-server received a name but inserted NULL into {column}, which is NOT NULL: the server drops the name"
        ),
        message: failure.message.clone(),
    })
}

/// 23502, and the request reached the server without a name.
fn missing_name(failure: &Failure) -> Option<RootCause> {
    let column = not_null_column(failure)?;
    (failure.name_received == Some(false) || failure.name_sent == Some(false)).then(|| RootCause {
        id: "missing-name".into(),
        service: "mythical-requester".into(),
        summary: format!(
            "mythical-requester sent a POST without a name; the server passed NULL on to {column}, which is NOT NULL: the requester is at fault"
        ),
        message: failure.message.clone(),
    })
}

/// Enough failing requester traces to tell one version's failures from
/// chance: a failure of either version is relabelled 2.0.0 seven times in
/// ten (as the original does), so when both fail, 1.9.2 keeps about 15%.
const VERSION_SAMPLE: usize = 30;
/// At most this share of the failures from 1.9.2: the background of
/// repeated names, not the deploy.
const OLD_VERSION_SHARE: usize = 50;

/// 23502, and only the requester's version 2.0.0 fails: a deploy broke it.
fn bad_deploy(failure: &Failure) -> Option<RootCause> {
    not_null_column(failure)?;
    let (old, new) = failure.failing_by_version?;
    (new >= VERSION_SAMPLE && old * OLD_VERSION_SHARE <= old + new).then(|| RootCause {
        id: "bad-deploy".into(),
        service: "mythical-requester".into(),
        summary: format!(
            "only mythical-requester 2.0.0 fails ({new} failing traces, none from 1.9.2): its POSTs arrive without a name — roll back 2.0.0"
        ),
        message: failure.message.clone(),
    })
}

/// 23505 on the name's UNIQUE constraint: the requester repeats names.
fn duplicate_name(failure: &Failure) -> Option<RootCause> {
    (failure.sqlstate.as_deref() == Some("23505")).then(|| RootCause {
        id: "duplicate-name".into(),
        service: "mythical-requester".into(),
        summary: format!(
            "{} refuses names that already exist: mythical-requester keeps sending the same name",
            failure.table.as_deref().unwrap_or("the table")
        ),
        message: failure.message.clone(),
    })
}

/// 42P01: the table is gone; the server's own DROP TABLE span says who.
fn table_wipe(failure: &Failure) -> Option<RootCause> {
    (failure.sqlstate.as_deref() == Some("42P01")).then(|| RootCause {
        id: "table-wipe".into(),
        service: "mythical-server".into(),
        summary: "the beasts' tables are gone: mythical-server dropped them (its teardown) and did not create them again".into(),
        message: failure.message.clone(),
    })
}

/// No connection to be had while Postgres itself answers: the server's
/// pool is held by something that never gives connections back.
fn pool_exhaustion(failure: &Failure) -> Option<RootCause> {
    (failure.sqlstate.as_deref() == Some("unavailable") && failure.postgres_answers == Some(true))
        .then(|| RootCause {
            id: "pool-exhaustion".into(),
            service: "mythical-server".into(),
            summary: format!(
                "mythical-server cannot get a connection from its pool while Postgres answers at once; {} sessions idle in transaction hold them",
                failure.idle_in_transaction.map_or("?".into(), |n| n.to_string())
            ),
            message: failure.message.clone(),
        })
}

/// Any other database refusal: named by its SQLSTATE, blamed on the server
/// that issued the statement.
fn database_error(failure: &Failure) -> Option<RootCause> {
    let sqlstate = failure.sqlstate.as_deref()?;
    Some(RootCause {
        id: format!("database-error-{sqlstate}"),
        service: failure.service.clone(),
        summary: format!(
            "Postgres refused {} with SQLSTATE {sqlstate}",
            failure.span_name
        ),
        message: failure.message.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(received: Option<bool>, sent: Option<bool>, null: bool) -> Failure {
        Failure {
            trace_id: "t".into(),
            service: "mythical-server".into(),
            span_name: "INSERT owlbear".into(),
            message:
                r#"null value in column "name" of relation "owlbear" violates not-null constraint"#
                    .into(),
            sqlstate: Some("23502".into()),
            table: Some("owlbear".into()),
            column: Some("name".into()),
            bound_null: null,
            name_received: received,
            name_sent: sent,
            failing_by_version: None,
            postgres_answers: None,
            idle_in_transaction: None,
        }
    }

    #[test]
    fn the_span_evidence_tells_the_culprit() {
        assert_eq!(
            explain(&failure(Some(true), Some(true), true)).unwrap().id,
            "null-name"
        );
        let missing = explain(&failure(Some(false), Some(false), true)).unwrap();
        assert_eq!(missing.id, "missing-name");
        assert_eq!(missing.service, "mythical-requester");
        let mut other = failure(None, None, false);
        other.sqlstate = Some("23505".into());
        assert_eq!(explain(&other).unwrap().id, "duplicate-name");
        other.sqlstate = Some("40001".into());
        assert_eq!(explain(&other).unwrap().id, "database-error-40001");
        let mut deploy = failure(Some(false), Some(false), true);
        deploy.failing_by_version = Some((0, 40));
        assert_eq!(explain(&deploy).unwrap().id, "bad-deploy");
        // A repeated name from 1.9.2 now and then is background.
        deploy.failing_by_version = Some((1, 120));
        assert_eq!(explain(&deploy).unwrap().id, "bad-deploy");
        // Both versions fail: the relabelling leaves 1.9.2 its share.
        deploy.failing_by_version = Some((6, 34));
        assert_eq!(explain(&deploy).unwrap().id, "missing-name");
        // Too few to tell.
        deploy.failing_by_version = Some((0, 12));
        assert_eq!(explain(&deploy).unwrap().id, "missing-name");
    }
}
