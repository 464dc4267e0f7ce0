//! Request traces: one request per line, `<seconds> <key>`.

use std::time::Duration;

/// One request of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// When it arrives, from the start of the trace.
    pub at: Duration,
    /// The API key it carries.
    pub key: String,
}

/// Parses a trace; an error names the line and shows the form to write.
pub fn parse(text: &str) -> Result<Vec<Request>, String> {
    let mut requests = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let number = index + 1;
        let mut fields = line.split_whitespace();
        let (Some(at), Some(key), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!(
                "{number}: `{line}` is not `<seconds> <key>`: write lines like `12.5 key-a`"
            ));
        };
        let at = at
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| {
                format!("{number}: `{at}` is not a time in seconds: write lines like `12.5 key-a`")
            })?;
        requests.push(Request {
            at,
            key: key.to_owned(),
        });
    }
    if requests.is_empty() {
        return Err(" the trace holds no request: write lines like `12.5 key-a`".into());
    }
    Ok(requests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_times_keys_and_comments() {
        let trace = parse("# t key\n0 a\n0.25 b  # late\n\n1.5 a\n").unwrap();
        assert_eq!(trace.len(), 3);
        assert_eq!(
            trace[1],
            Request {
                at: Duration::from_millis(250),
                key: "b".into()
            }
        );
    }

    #[test]
    fn a_bad_line_is_named_with_the_form_to_write() {
        let err = parse("0 a\nsoon b\n").unwrap_err();
        assert!(err.starts_with("2: `soon`"), "{err}");
        assert!(err.contains("`12.5 key-a`"), "{err}");
        assert!(parse("0 a b\n").unwrap_err().starts_with("1: "));
        assert!(parse("# nothing\n").is_err());
    }
}
