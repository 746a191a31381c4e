//! Memory sizes as the flags and the config file write them: `512K`, `64M`, `1G`.

use crate::values::duration::number_and_unit;

/// What a size looks like, for error messages.
pub const EXPECTED: &str = "a size such as 512K, 64M or 1G";

/// A whole number of bytes, or of KiB, MiB or GiB with `K`, `M` or `G`.
pub fn parse(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (n, unit) = number_and_unit(s, EXPECTED)?;
    let unit: u64 = match unit {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        _ => return Err(format!("expected {EXPECTED}, got \"{s}\"")),
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("\"{s}\" is too large"))
}

/// `bytes` in the largest unit `parse` takes that writes it exactly.
pub fn display(bytes: u64) -> String {
    [(1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")]
        .into_iter()
        .find(|&(unit, _)| bytes != 0 && bytes.is_multiple_of(unit))
        .map(|(unit, name)| format!("{}{name}", bytes / unit))
        .unwrap_or_else(|| bytes.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_round_trips() {
        assert_eq!(parse("512K"), Ok(512 << 10));
        assert_eq!(parse("64M"), Ok(64 << 20));
        assert_eq!(parse("1G"), Ok(1 << 30));
        assert_eq!(parse("1000"), Ok(1000));
        for n in [1000, 512 << 10, 3 << 20, 1 << 30] {
            assert_eq!(parse(&display(n)), Ok(n));
        }
        assert_eq!(display(64 << 20), "64M");
    }

    #[test]
    fn rejects_other_forms() {
        for bad in ["", "M", "1.5G", "-1", "2T", "99999999999G"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
