//! How a limit's state for one key is named in Redis.
//!
//! One string per `(limit, key)`: `<prefix>:{<tag>}<rest>:<limit>`, e.g.
//! `tollgate:{key-12345}:0`. The braces make `<tag>` the Redis Cluster hash tag,
//! so every limit of one API key lives in one slot, and a request's per-key
//! charges can be decided by one script on one node.

use std::sync::Arc;

/// How a limit key renders into a Redis key name.
///
/// Why a trait of its own and not `Display`: the rendering is an identity, not a
/// message. Two keys that render alike would share one budget, silently, and
/// `Display` is free to shorten or redact (an API key is shown by its last five
/// characters); nor is `Hash` usable, being seeded per process while several
/// processes must agree. An implementation must render distinct keys distinctly
/// and the same key the same way in every process and version; [`escape`] keeps
/// text from breaking the layout.
///
/// ```
/// use tollgate_redis::RedisKey;
///
/// let mut name = String::new();
/// ("key-12345", "users").write_tag(&mut name);
/// ("key-12345", "users").write_rest(&mut name);
/// assert_eq!(name, "key-12345:users");
/// ```
pub trait RedisKey {
    /// Writes the part that chooses the Redis Cluster slot: the API key, so that
    /// all of one key's limits live together.
    fn write_tag(&self, out: &mut String);

    /// Writes what tells keys with one tag apart, as `:`-led segments (an
    /// endpoint for a per-key-and-endpoint limit); nothing by default.
    fn write_rest(&self, out: &mut String) {
        let _ = out;
    }
}

/// Appends `text` with `%`, `{`, `}` and `:` percent-encoded, so that any text
/// can be a tag or a segment: the hash tag ends at the first `}` and segments
/// are separated by `:`, and the encoding keeps distinct texts distinct.
///
/// ```
/// let mut out = String::new();
/// tollgate_redis::escape("a{b}:c%", &mut out);
/// assert_eq!(out, "a%7Bb%7D%3Ac%25");
/// ```
pub fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            ':' => out.push_str("%3A"),
            c => out.push(c),
        }
    }
}

impl RedisKey for str {
    fn write_tag(&self, out: &mut String) {
        escape(self, out);
    }
}

impl RedisKey for String {
    fn write_tag(&self, out: &mut String) {
        escape(self, out);
    }
}

impl RedisKey for Box<str> {
    fn write_tag(&self, out: &mut String) {
        escape(self, out);
    }
}

impl RedisKey for Arc<str> {
    fn write_tag(&self, out: &mut String) {
        escape(self, out);
    }
}

impl<T: RedisKey + ?Sized> RedisKey for &T {
    fn write_tag(&self, out: &mut String) {
        (**self).write_tag(out);
    }

    fn write_rest(&self, out: &mut String) {
        (**self).write_rest(out);
    }
}

macro_rules! integer_keys {
    ($($t:ty),*) => {$(
        impl RedisKey for $t {
            fn write_tag(&self, out: &mut String) {
                use std::fmt::Write;
                let _ = write!(out, "{self}");
            }
        }
    )*};
}

integer_keys!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
);

/// A key within a key, e.g. `(api_key, endpoint)`: tagged by the first, so a
/// per-key-and-endpoint limit lives in the API key's slot.
impl<A: RedisKey, B: RedisKey> RedisKey for (A, B) {
    fn write_tag(&self, out: &mut String) {
        self.0.write_tag(out);
    }

    fn write_rest(&self, out: &mut String) {
        self.0.write_rest(out);
        out.push(':');
        self.1.write_tag(out);
        self.1.write_rest(out);
    }
}

/// The Redis key of `key`'s state in limit `limit`, under `prefix` (already
/// escaped).
pub(crate) fn state_key<K: RedisKey + ?Sized>(prefix: &str, key: &K, limit: u32) -> String {
    let mut out = String::with_capacity(prefix.len() + 32);
    out.push_str(prefix);
    out.push_str(":{");
    key.write_tag(&mut out);
    out.push('}');
    key.write_rest(&mut out);
    out.push(':');
    out.push_str(&limit.to_string());
    out
}

/// The Redis Cluster slot of a key: CRC16 (XMODEM) of its hash tag (the text
/// between the first `{` and the next `}`, when not empty) or else of the whole
/// key, modulo 16384, as the server computes it.
pub(crate) fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % 16_384
}

/// CRC-16/XMODEM: polynomial 0x1021, initial value 0, as Redis Cluster uses.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_the_servers() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        // `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(slot(b"foo"), 12_182);
        assert_eq!(slot(b"bar"), 5_061);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}".as_slice()));
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(
            slot(state_key("tg", &"key-1", 0).as_bytes()),
            slot(state_key("tg", &("key-1", "users"), 3).as_bytes())
        );
    }

    #[test]
    fn one_api_key_is_one_hash_tag() {
        assert_eq!(state_key("tg", &"key-12345", 0), "tg:{key-12345}:0");
        assert_eq!(
            state_key("tg", &("key-12345", "users"), 3),
            "tg:{key-12345}:users:3"
        );
        assert_eq!(state_key("tg", &7u64, 1), "tg:{7}:1");
    }

    #[test]
    fn text_cannot_end_the_tag_early_or_forge_a_segment() {
        assert_eq!(state_key("tg", &"a}b", 0), "tg:{a%7Db}:0");
        assert_ne!(
            state_key("tg", &("a:b", "c"), 0),
            state_key("tg", &("a", "b:c"), 0)
        );
    }
}
