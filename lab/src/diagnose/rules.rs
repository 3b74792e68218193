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
    Rule { applies: null_name },
    Rule {
        applies: missing_name,
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
        assert_eq!(explain(&other).unwrap().id, "database-error-23505");
    }
}
