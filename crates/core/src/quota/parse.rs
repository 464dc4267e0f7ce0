//! Limit strings as people write them: `50/60s`, `50/min`, `20/s`, `50 per 60s`.

use std::str::FromStr;
use std::time::Duration;

use super::Rate;

/// A limit string that is not one of the accepted forms.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("limit `{input}` {problem}: write it like `50/60s`, `50/min`, `20/s` or `50 per 60s`")]
pub struct ParseRateError {
    input: String,
    problem: &'static str,
}

impl ParseRateError {
    fn new(input: &str, problem: &'static str) -> Self {
        Self {
            input: input.to_owned(),
            problem,
        }
    }
}

impl FromStr for Rate {
    type Err = ParseRateError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        let (count, window) = text
            .split_once('/')
            .or_else(|| text.split_once(" per "))
            .ok_or_else(|| ParseRateError::new(input, "has no `/` or `per`"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| ParseRateError::new(input, "does not start with a whole number"))?;
        if count == 0 {
            return Err(ParseRateError::new(input, "allows no request at all"));
        }
        let window = parse_window(window.trim()).ok_or_else(|| {
            ParseRateError::new(input, "has a window that is not a time like `60s` or `min`")
        })?;
        if window < Duration::from_millis(1) {
            return Err(ParseRateError::new(input, "has a window shorter than 1 ms"));
        }
        Ok(Rate::new(count, window))
    }
}

/// `60s`, `60 s`, `s`, `min`, `1m`, `500ms`, `2h`, `day`: an optional whole number
/// and a unit.
fn parse_window(text: &str) -> Option<Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = if number.is_empty() {
        1
    } else {
        number.parse().ok()?
    };
    let unit_nanos: u64 = match unit.trim() {
        "ms" | "millis" | "millisecond" | "milliseconds" => 1_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000_000,
        "h" | "hr" | "hour" | "hours" => 3_600_000_000_000,
        "d" | "day" | "days" => 86_400_000_000_000,
        _ => return None,
    };
    number.checked_mul(unit_nanos).map(Duration::from_nanos)
}

/// Parses a duration written like a window (`5s`, `1min`, `250ms`, `2h`).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(tollgate_core::parse_duration("250ms"), Some(Duration::from_millis(250)));
/// assert_eq!(tollgate_core::parse_duration("1min"), Some(Duration::from_secs(60)));
/// assert_eq!(tollgate_core::parse_duration("soon"), None);
/// ```
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() || !text.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    parse_window(text)
}

/// The shortest form that parses back to the same window: `s`, `60s`, `500ms`.
pub(super) fn format_window(window: Duration) -> String {
    if window == Duration::from_secs(1) {
        "s".to_owned()
    } else if window.subsec_nanos() == 0 {
        format!("{}s", window.as_secs())
    } else {
        format!("{}ms", window.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_forms_people_write() {
        let minute = Rate::per_minute(50);
        for text in [
            "50/60s",
            "50/min",
            "50/1m",
            "50 per 60s",
            "50 / 60 s",
            "50 per minute",
        ] {
            assert_eq!(text.parse::<Rate>(), Ok(minute), "{text}");
        }
        assert_eq!("20/s".parse::<Rate>(), Ok(Rate::per_second(20)));
        assert_eq!(
            "5/250ms".parse::<Rate>(),
            Ok(Rate::new(5, Duration::from_millis(250)))
        );
        assert_eq!(
            "10000/day".parse::<Rate>(),
            Ok(Rate::new(10_000, Duration::from_secs(86_400)))
        );
    }

    #[test]
    fn rejects_everything_else_with_an_accepted_form() {
        for text in [
            "50",
            "50/mn",
            "fifty/min",
            "0/s",
            "50/0s",
            "-1/s",
            "50/60x",
            "",
        ] {
            let err = text.parse::<Rate>().unwrap_err().to_string();
            assert!(err.contains(&format!("`{text}`")), "{err}");
            assert!(err.contains("`50/60s`"), "{err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["50/60s", "20/s", "5/250ms", "7/3600s"] {
            let rate: Rate = text.parse().unwrap();
            assert_eq!(rate.to_string(), text);
            assert_eq!(rate.to_string().parse::<Rate>(), Ok(rate));
        }
    }
}
