//! Field defaults at insert time, including CURRENT_TIMESTAMP / CURRENT_DATE / CURRENT_TIME in
//! SQLite's UTC text formats.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::catalog::{DefaultValue, FieldDef};
use crate::error::Result;
use crate::value::Value;

/// (year, month, day, hour, minute, second) in UTC for a Unix time.
pub fn civil_from_unix(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

fn now_parts() -> (i64, u32, u32, u32, u32, u32) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    civil_from_unix(secs)
}

/// The value a field takes when an insert does not give it.
pub fn default_for(f: &FieldDef) -> Result<Value> {
    Ok(match &f.default {
        None => Value::Null,
        Some(DefaultValue::Literal(v)) => v.clone(),
        Some(DefaultValue::CurrentTimestamp) => {
            let (y, mo, d, h, mi, s) = now_parts();
            Value::Text(format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"))
        }
        Some(DefaultValue::CurrentDate) => {
            let (y, mo, d, ..) = now_parts();
            Value::Text(format!("{y:04}-{mo:02}-{d:02}"))
        }
        Some(DefaultValue::CurrentTime) => {
            let (.., h, mi, s) = now_parts();
            Value::Text(format!("{h:02}:{mi:02}:{s:02}"))
        }
        Some(DefaultValue::Expr(e)) => e.eval(&[])?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_unix(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(super::civil_from_unix(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(
            super::civil_from_unix(1_764_110_096),
            (2025, 11, 25, 22, 34, 56)
        );
    }
}
