//! Resource names, which become table names: the only text put into SQL
//! other than as a bound parameter, so it is checked here first.

use crate::StorageError;

/// The longest resource name: `records_` + 48 stays well under PostgreSQL's
/// 63-byte identifiers, with room for an index suffix.
pub const MAX_RESOURCE_NAME: usize = 48;

/// The records table of `resource` (`records_<resource>`), or why the name
/// cannot be one: `[a-z][a-z0-9_]{0,47}`.
pub(crate) fn records_table(resource: &str) -> Result<String, StorageError> {
    check(resource).map_err(|reason| StorageError::InvalidResource {
        name: resource.to_owned(),
        reason,
    })?;
    Ok(format!("records_{resource}"))
}

fn check(name: &str) -> Result<(), String> {
    let Some(first) = name.chars().next() else {
        return Err("it is empty".to_owned());
    };
    if !first.is_ascii_lowercase() {
        return Err(format!("it starts with `{first}`, not a lowercase letter"));
    }
    if let Some((at, bad)) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
    {
        return Err(format!("it has `{bad}` at byte {at}"));
    }
    if name.len() > MAX_RESOURCE_NAME {
        return Err(format!("it has {} characters", name.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lowercase_identifiers() {
        assert_eq!(records_table("users").unwrap(), "records_users");
        assert_eq!(
            records_table("channel_users2").unwrap(),
            "records_channel_users2"
        );
        assert!(records_table(&"a".repeat(MAX_RESOURCE_NAME)).is_ok());
    }

    #[test]
    fn rejects_what_could_escape_the_identifier() {
        for bad in [
            "",
            "Users",
            "1users",
            "_users",
            "users-x",
            "users\"; DROP TABLE x; --",
            "usérs",
        ] {
            assert!(records_table(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(records_table(&"a".repeat(MAX_RESOURCE_NAME + 1)).is_err());
    }

    #[test]
    fn the_error_says_what_to_write() {
        let message = records_table("Channel-Users").unwrap_err().to_string();
        assert!(message.contains("starts with `C`"), "{message}");
        assert!(message.contains("like `channel_users`"), "{message}");
    }
}
