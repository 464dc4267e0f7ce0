//! The incremental watermark: the latest `updated_at` seen.
//!
//! Values are opaque text from the source. Two runs of digits (unix times,
//! sequence numbers) compare as numbers, so `"999" < "1000"`; anything else
//! compares by its bytes, which orders ISO 8601 times written in one format
//! and one offset (the usual `2024-05-01T12:00:00Z`) correctly.

use std::cmp::Ordering;

/// The later of `a` and `b`.
pub(crate) fn later<'a>(a: Option<&'a str>, b: Option<&'a str>) -> Option<&'a str> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if compare(a, b) == Ordering::Less {
            b
        } else {
            a
        }),
        (a, b) => a.or(b),
    }
}

/// The latest of `values`, if any.
pub(crate) fn latest<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    values.into_iter().fold(None, |max, v| later(max, Some(v)))
}

fn compare(a: &str, b: &str) -> Ordering {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if digits(a) && digits(b) {
        let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    } else {
        a.cmp(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_as_numbers() {
        assert_eq!(latest(["999", "1000", "0998"]), Some("1000"));
        assert_eq!(
            latest(["1714564800000", "1714564799999"]),
            Some("1714564800000")
        );
    }

    #[test]
    fn iso_times_compare_by_text() {
        let times = [
            "2024-05-01T12:00:00Z",
            "2024-05-10T00:00:00Z",
            "2024-04-30T23:59:59Z",
        ];
        assert_eq!(latest(times), Some("2024-05-10T00:00:00Z"));
    }

    #[test]
    fn none_is_earliest() {
        assert_eq!(later(None, Some("1")), Some("1"));
        assert_eq!(later(Some("1"), None), Some("1"));
        assert_eq!(latest([]), None);
    }
}
