//! Human-readable lifetimes for `--ttl`: `30s`, `15m`, `1h`, `7d`, `2w`, or
//! sums of them like `1h30m`.
//!
//! The API takes lifetimes in whole seconds, so that is what this returns.

/// Seconds in a duration written as one or more `<number><unit>` parts,
/// unit one of `s`, `m`, `h`, `d`, `w`. Used as a clap value parser.
pub fn parse_ttl(input: &str) -> Result<u64, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration; write e.g. 30s, 15m, 1h or 7d".to_owned());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(format!(
                "invalid duration {input:?}: expected a number at {rest:?}"
            ));
        }
        let (number, tail) = rest.split_at(digits);
        let mut chars = tail.chars();
        let unit = chars.next().ok_or_else(|| {
            format!("invalid duration {input:?}: {number} needs a unit (s, m, h, d or w)")
        })?;
        let scale: u64 = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            other => {
                return Err(format!(
                    "invalid duration {input:?}: unknown unit {other:?} (use s, m, h, d or w)"
                ))
            }
        };
        let n: u64 = number
            .parse()
            .map_err(|_| format!("invalid duration {input:?}: {number} is too large"))?;
        total = n
            .checked_mul(scale)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| format!("invalid duration {input:?}: too large"))?;
        rest = chars.as_str();
    }
    if total == 0 {
        return Err(format!(
            "invalid duration {input:?}: must be longer than zero"
        ));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    fn check(input: &str, expect: Result<u64, &str>) {
        match (parse_ttl(input), expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{input:?}"),
            (Err(got), Err(needle)) => assert!(got.contains(needle), "{input:?}: {got}"),
            (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn durations() {
        check("30s", Ok(30));
        check("15m", Ok(900));
        check("1h", Ok(3_600));
        check("7d", Ok(604_800));
        check("365d", Ok(31_536_000));
        check("90d", Ok(7_776_000));
        check("2w", Ok(1_209_600));
        check("1h30m", Ok(5_400));
        check(" 1d12h ", Ok(129_600));
        check("", Err("empty"));
        check("10", Err("needs a unit"));
        check("h", Err("expected a number"));
        check("1x", Err("unknown unit"));
        check("1H", Err("unknown unit"));
        check("1.5h", Err("unknown unit"));
        check("-1h", Err("expected a number"));
        check("0s", Err("longer than zero"));
        check("1h 30m", Err("expected a number"));
        check("99999999999999999999s", Err("too large"));
        check("9999999999999999w", Err("too large"));
    }
}
