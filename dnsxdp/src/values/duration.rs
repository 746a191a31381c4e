//! Durations as the flags and the config file write them: `500ms`, `2s`, `5m`, `1h`, `1d`.

use std::time::Duration;

/// What a duration looks like, for error messages.
pub const EXPECTED: &str = "a duration such as 500ms, 2s, 5m, 1h or 1d";

/// A whole number with a unit (`ms`, `s`, `m`, `h`, `d`); a bare number is seconds.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (n, unit) = number_and_unit(s, EXPECTED)?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60 * 1000,
        "h" => 3600 * 1000,
        "d" => 86400 * 1000,
        _ => return Err(format!("expected {EXPECTED}, got \"{s}\"")),
    };
    n.checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("\"{s}\" is too long"))
}

/// A whole number and the unit after it (trimmed), as durations and sizes are written; the
/// error says what was `expected`.
pub fn number_and_unit<'a>(s: &'a str, expected: &str) -> Result<(u64, &'a str), String> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let n = number
        .parse()
        .map_err(|_| format!("expected {expected}, got \"{s}\""))?;
    Ok((n, unit.trim()))
}

/// The shortest exact way to write `d` in the units `parse` takes.
pub fn display(d: Duration) -> String {
    let ms = d.as_millis();
    [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ]
    .into_iter()
    .find(|&(unit, _)| ms != 0 && ms.is_multiple_of(unit))
    .map(|(unit, name)| format!("{}{name}", ms / unit))
    .unwrap_or_else(|| format!("{ms}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_other_forms() {
        for bad in [
            "",
            "s",
            "1.5s",
            "-1s",
            "2 weeks",
            "1w",
            "99999999999999999999d",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        for s in ["500ms", "2s", "90s", "5m", "1h", "1d", "0ms"] {
            assert_eq!(display(parse(s).unwrap()), s);
        }
    }
}
