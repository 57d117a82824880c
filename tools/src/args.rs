//! Value parsers shared by both binaries' flags, so that every flag taking a
//! time (or a probability) reads it the same way and refuses the same nonsense
//! at parse time, naming the flag.

use std::time::Duration;
use tunstack::tcp::MemoryLimits;

/// Parses a non-negative decimal number of seconds ("30", "0.2") into a `Duration`.
pub fn seconds(s: &str) -> Result<Duration, String> {
    duration(s, 1.0, "seconds")
}

/// Parses a positive decimal number of seconds: a timeout of zero means nothing.
pub fn positive_seconds(s: &str) -> Result<Duration, String> {
    match seconds(s)? {
        Duration::ZERO => Err("expected a number of seconds above 0, like 0.5 or 10".into()),
        d => Ok(d),
    }
}

/// Parses a non-negative decimal number of milliseconds ("20", "0.5") into a `Duration`.
pub fn millis(s: &str) -> Result<Duration, String> {
    duration(s, 1000.0, "milliseconds")
}

/// `s` as a number of `unit`s, `per_second` of which make a second.
fn duration(s: &str, per_second: f64, unit: &str) -> Result<Duration, String> {
    let expected = || format!("expected a non-negative number of {unit}, like 0.2 or 30");
    let v: f64 = s.parse().map_err(|_| expected())?;
    // f64 parsing also takes "inf", "NaN" and negatives, none of which is a time.
    if !v.is_finite() || v < 0.0 {
        return Err(expected());
    }
    Duration::try_from_secs_f64(v / per_second).map_err(|_| format!("{s} {unit} is too long a time"))
}

/// Parses a buffer size in bytes, with an optional binary suffix ("65536",
/// "512K", "6M", "1G"), from 4 KiB to 1 GiB (the most a window can scale to, RFC 7323).
pub fn buffer_size(s: &str) -> Result<usize, String> {
    let bytes = bytes(s)?;
    if (4096..=1 << 30).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(format!("{s} is out of range: from 4K to 1G"))
    }
}

/// A number of bytes with an optional binary suffix (K, M, G).
fn bytes(s: &str) -> Result<usize, String> {
    let expected = || format!("expected a size in bytes, like 262144, 256K or 6M, not {s:?}");
    let suffixes = [(['K', 'k'], 1usize << 10), (['M', 'm'], 1 << 20), (['G', 'g'], 1 << 30)];
    let (digits, unit) = suffixes
        .iter()
        .find_map(|&(letters, unit)| s.strip_suffix(letters).map(|d| (d, unit)))
        .unwrap_or((s, 1));
    let n: usize = digits.parse().map_err(|_| expected())?;
    n.checked_mul(unit).ok_or_else(expected)
}

/// Parses the TCP memory budget (Linux's `tcp_mem`, in bytes, not pages):
/// one size, the hard limit, with pressure from 3/4 of it until usage falls
/// below 1/2 ("64M"); or three, `MIN,PRESSURE,MAX` ("32M,48M,64M"), in
/// that order. From 1M to 1T.
pub fn memory_limits(s: &str) -> Result<MemoryLimits, String> {
    let sizes = s.split(',').map(bytes).collect::<Result<Vec<_>, _>>()?;
    let limits = match sizes[..] {
        [max] => MemoryLimits::with_max(max),
        [min, pressure, max] => MemoryLimits { min, pressure, max },
        _ => return Err("expected one size (the maximum) or three: MIN,PRESSURE,MAX".into()),
    };
    if !(1 << 20..=1 << 40).contains(&limits.max) {
        return Err(format!("{s}: the maximum is out of range: from 1M to 1T"));
    }
    if !(limits.min <= limits.pressure && limits.pressure <= limits.max) {
        return Err(format!("{s}: expected MIN <= PRESSURE <= MAX"));
    }
    Ok(limits)
}

/// Parses a probability: a number from 0 to 1.
pub fn probability(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err("must be between 0 and 1".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_sizes_take_suffixes_and_stay_in_range() {
        assert_eq!(buffer_size("65536"), Ok(65536));
        assert_eq!(buffer_size("256K"), Ok(256 << 10));
        assert_eq!(buffer_size("6M"), Ok(6 << 20));
        assert_eq!(buffer_size("1024m"), Ok(1 << 30));
        assert_eq!(buffer_size("1G"), Ok(1 << 30));
        assert!(buffer_size("2G").is_err());
        for bad in ["", "M", "-1", "1.5M", "4095", "1025M", "6G", "99999999999999999999M"] {
            assert!(buffer_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_limits_take_one_size_or_three_in_order() {
        assert_eq!(memory_limits("64M"), Ok(MemoryLimits::with_max(64 << 20)));
        assert_eq!(
            memory_limits("1M,2M,3M"),
            Ok(MemoryLimits {
                min: 1 << 20,
                pressure: 2 << 20,
                max: 3 << 20
            })
        );
        for bad in ["", "64", "2T", "3M,2M,1M", "1M,2M", "1M,2M,3M,4M", "x"] {
            assert!(memory_limits(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn seconds_take_decimals_and_refuse_what_is_no_time() {
        assert_eq!(seconds("30"), Ok(Duration::from_secs(30)));
        assert_eq!(seconds("0.2"), Ok(Duration::from_millis(200)));
        assert_eq!(seconds(".5"), Ok(Duration::from_millis(500)));
        assert_eq!(seconds("1e3"), Ok(Duration::from_secs(1000)));
        assert_eq!(seconds("0"), Ok(Duration::ZERO));
        for bad in ["-1", "-0.2", "inf", "-inf", "NaN", "", "two", "1s", "1e30"] {
            let e = seconds(bad).expect_err(bad);
            assert!(e.contains("seconds"), "{bad}: {e}");
        }
    }

    #[test]
    fn millis_are_thousandths_of_a_second() {
        assert_eq!(millis("20"), Ok(Duration::from_millis(20)));
        assert_eq!(millis("0.5"), Ok(Duration::from_micros(500)));
        assert_eq!(millis("0"), Ok(Duration::ZERO));
        for bad in ["-5", "NaN", "inf", "5ms"] {
            let e = millis(bad).expect_err(bad);
            assert!(e.contains("milliseconds"), "{bad}: {e}");
        }
    }

    #[test]
    fn probabilities_lie_between_0_and_1() {
        assert_eq!(probability("0"), Ok(0.0));
        assert_eq!(probability("0.25"), Ok(0.25));
        assert_eq!(probability("1"), Ok(1.0));
        for bad in ["-0.1", "1.5", "NaN", "x"] {
            assert!(probability(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_timeout_must_be_above_zero() {
        assert_eq!(positive_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(positive_seconds("0").unwrap_err().contains("above 0"));
        assert!(positive_seconds("-1").is_err());
    }
}
