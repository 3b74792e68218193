//! Times and durations in the forms the Tempo, Loki and Prometheus APIs
//! accept, so a Grafana datasource of each kind is understood.

use std::time::{SystemTime, UNIX_EPOCH};

use lab_signals::UnixNanos;

/// A parameter that could not be read, with what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid parameter \"{name}\": cannot parse \"{value}\" {expected}")]
pub struct ParamError {
    pub name: String,
    pub value: String,
    pub expected: &'static str,
}

pub fn now_nanos() -> UnixNanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn error(name: &str, value: &str, expected: &'static str) -> ParamError {
    ParamError {
        name: name.to_owned(),
        value: value.to_owned(),
        expected,
    }
}

/// A point in time: RFC 3339, Unix seconds (with a fraction), or — as Loki
/// also takes — Unix nanoseconds (an integer of more than 13 digits is read
/// as nanoseconds, fewer as seconds or milliseconds would be ambiguous).
pub fn time(name: &str, value: &str) -> Result<UnixNanos, ParamError> {
    const EXPECTED: &str = "to a valid timestamp (RFC 3339 or Unix seconds or nanoseconds)";
    let value = value.trim();
    if value.contains('-') && value.contains('T') {
        return rfc3339(value).ok_or_else(|| error(name, value, EXPECTED));
    }
    if !value.contains('.') && value.len() > 13 && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().map_err(|_| error(name, value, EXPECTED));
    }
    // Seconds with a fraction, read as text so no float rounding moves the
    // time by a few hundred nanoseconds.
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let whole_ok = !whole.is_empty()
        && whole
            .trim_start_matches('-')
            .bytes()
            .all(|b| b.is_ascii_digit());
    if !whole_ok || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(error(name, value, EXPECTED));
    }
    let seconds: i64 = whole.parse().map_err(|_| error(name, value, EXPECTED))?;
    let digits = &fraction[..fraction.len().min(9)];
    let nanos: i64 = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().unwrap_or(0)
    };
    seconds
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(if seconds < 0 { -nanos } else { nanos }))
        .ok_or_else(|| error(name, value, EXPECTED))
}

/// A duration: Prometheus' form (`1h30m`, `15s`, `250ms`, `1d`, `1w`,
/// `1y`) or a number of seconds (`15`, `0.5`).
pub fn duration(name: &str, value: &str) -> Result<i64, ParamError> {
    const EXPECTED: &str = "to a valid duration (like 15s, 1m30s or a number of seconds)";
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        if seconds.is_finite() && seconds >= 0.0 {
            return Ok((seconds * 1e9) as i64);
        }
        return Err(error(name, value, EXPECTED));
    }
    let mut total: i64 = 0;
    let mut rest = value;
    if rest.is_empty() {
        return Err(error(name, value, EXPECTED));
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(error(name, value, EXPECTED));
        }
        let number: i64 = rest[..digits]
            .parse()
            .map_err(|_| error(name, value, EXPECTED))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let nanos_per = match &rest[..unit_len] {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "w" => 604_800_000_000_000,
            "y" => 31_536_000_000_000_000,
            _ => return Err(error(name, value, EXPECTED)),
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(nanos_per)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(|| error(name, value, EXPECTED))?;
    }
    Ok(total)
}

/// `2026-11-23T23:03:10.123Z` or with an offset (`+01:00`).
fn rfc3339(text: &str) -> Option<UnixNanos> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || !matches!(bytes[10], b'T' | b't')
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<9}", &fraction[..digits.min(9)]);
        nanos = padded.parse().ok()?;
        rest = &fraction[digits..];
    }
    let offset_seconds = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            if rest.len() != 6 || &rest[3..4] != ":" {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
    };
    // Days from the civil date (proleptic Gregorian).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(seconds * 1_000_000_000 + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_form_the_apis_send() {
        let expected = 1_795_475_590_123_000_000;
        assert_eq!(time("t", "2026-11-23T23:13:10.123Z"), Ok(expected));
        assert_eq!(time("t", "2026-11-24T00:13:10.123+01:00"), Ok(expected));
        assert_eq!(time("t", "1795475590.123"), Ok(expected));
        assert_eq!(time("t", "1795475590123000000"), Ok(expected));
        assert_eq!(time("t", "1795475590"), Ok(1_795_475_590_000_000_000));
        assert_eq!(
            time("t", "2000-02-29T00:00:00Z"),
            Ok(951_782_400_000_000_000)
        );
        let err = time("start", "yesterday").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid parameter \"start\": cannot parse \"yesterday\" to a valid timestamp (RFC 3339 or Unix seconds or nanoseconds)"
        );
        assert!(time("t", "2026-13-01T00:00:00Z").is_err());
    }

    #[test]
    fn durations_in_prometheus_form_or_seconds() {
        assert_eq!(duration("step", "15s"), Ok(15_000_000_000));
        assert_eq!(duration("step", "1m30s"), Ok(90_000_000_000));
        assert_eq!(duration("step", "250ms"), Ok(250_000_000));
        assert_eq!(duration("step", "0.5"), Ok(500_000_000));
        assert_eq!(duration("step", "1h"), Ok(3_600_000_000_000));
        assert!(duration("step", "fast").is_err());
        assert!(duration("step", "5x").is_err());
        assert!(duration("step", "-1").is_err());
    }
}
