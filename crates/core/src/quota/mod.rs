//! What a limit allows: a count per window, and the algorithm that enforces it.

mod parse;

pub use parse::parse_duration;

use std::fmt;
use std::time::Duration;

pub use parse::ParseRateError;

/// A count per window: `50 per 60 s`, `20 per 1 s`.
///
/// Parsed from the forms people write (`50/60s`, `50/min`, `20/s`, `50 per 60s`):
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::Rate;
///
/// let rate: Rate = "50/min".parse().unwrap();
/// assert_eq!(rate, Rate::per_minute(50));
/// assert_eq!(rate.window(), Duration::from_secs(60));
/// assert!("50/mn".parse::<Rate>().unwrap_err().to_string().contains("50/60s"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    count: u32,
    window: Duration,
}

impl Rate {
    /// `count` requests per `window`.
    ///
    /// # Panics
    /// If `count` is zero or `window` is shorter than a millisecond: such a rate
    /// admits nothing or cannot be enforced, and is a programming error here (the
    /// parser reports it as an input error instead).
    pub const fn new(count: u32, window: Duration) -> Self {
        assert!(count > 0, "a rate must allow at least one request");
        assert!(
            window.as_millis() >= 1,
            "a rate's window must be at least 1 ms"
        );
        Self { count, window }
    }

    /// `count` requests per second.
    pub const fn per_second(count: u32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    /// `count` requests per minute (60 s).
    pub const fn per_minute(count: u32) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    /// How many requests one window allows.
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// The window's length.
    pub const fn window(&self) -> Duration {
        self.window
    }

    /// The same window with another count (a tier raising or lowering a key's limit).
    pub const fn with_count(self, count: u32) -> Self {
        Self::new(count, self.window)
    }

    /// Requests per second, as a float, for planning and display.
    pub fn per_sec_f64(&self) -> f64 {
        f64::from(self.count) / self.window.as_secs_f64()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, parse::format_window(self.window))
    }
}

/// How a [`Rate`] is enforced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// The sliding log: at most `count` admitted in any window `(t − W, t]`; each
    /// slot returns exactly `W` after the request that used it. The default, and
    /// what "a rolling 60-second window" means.
    #[default]
    Rolling,
    /// Aligned windows (`[k·W, (k+1)·W)` since the epoch): at most `count` in each.
    Fixed,
    /// The generic cell rate algorithm: one request every `W / count` on average,
    /// with up to `burst` at once.
    Gcra {
        /// How many requests may arrive at once after a quiet period.
        burst: u32,
    },
    /// A two-bucket estimate of the rolling window: a few bytes a key instead of
    /// a log, for very many keys. It may admit more than `count` in a rolling
    /// window when the previous window's requests bunched at its end (at most
    /// `2 × count` in the worst case); opt-in for that reason.
    SlidingCounter,
}

impl Algorithm {
    /// The name used in configuration files.
    pub const fn name(&self) -> &'static str {
        match self {
            Algorithm::Rolling => "rolling",
            Algorithm::Fixed => "fixed",
            Algorithm::Gcra { .. } => "gcra",
            Algorithm::SlidingCounter => "sliding-counter",
        }
    }
}

/// A rate and the algorithm that enforces it: everything one limit needs to decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    /// How many per window.
    pub rate: Rate,
    /// How the rate is enforced.
    pub algorithm: Algorithm,
}

impl Quota {
    /// A rolling-window quota (the default algorithm).
    pub const fn rolling(rate: Rate) -> Self {
        Self {
            rate,
            algorithm: Algorithm::Rolling,
        }
    }

    /// An aligned fixed-window quota.
    pub const fn fixed(rate: Rate) -> Self {
        Self {
            rate,
            algorithm: Algorithm::Fixed,
        }
    }

    /// A GCRA quota that allows `burst` requests at once.
    pub const fn gcra(rate: Rate, burst: u32) -> Self {
        Self {
            rate,
            algorithm: Algorithm::Gcra { burst },
        }
    }

    /// A sliding-counter (two-bucket estimate) quota.
    pub const fn sliding_counter(rate: Rate) -> Self {
        Self {
            rate,
            algorithm: Algorithm::SlidingCounter,
        }
    }

    /// The same algorithm and window with another count.
    pub const fn with_count(self, count: u32) -> Self {
        Self {
            rate: self.rate.with_count(count),
            algorithm: self.algorithm,
        }
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.algorithm {
            Algorithm::Gcra { burst } => write!(f, "{} gcra burst {burst}", self.rate),
            other => write!(f, "{} {}", self.rate, other.name()),
        }
    }
}
