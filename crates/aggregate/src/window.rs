//! Window specifications and the assignment of event times to windows.
//!
//! A tumbling window is a hopping window whose slide equals its size. An event at time `t`
//! belongs to every window `[start, start + size)` with `start` a multiple of `slide` and
//! `start <= t < start + size`: exactly `size / slide` windows when the slide divides the size.

use std::time::Duration;

/// Why a window specification is unusable. A user error: fix the config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// Size or slide is zero or below one millisecond.
    #[error("window size and slide must be at least 1ms (got size {size:?}, slide {slide:?})")]
    TooSmall {
        /// The configured size.
        size: Duration,
        /// The configured slide.
        slide: Duration,
    },
    /// The slide does not divide the size, so windows would not line up.
    #[error("window slide {slide:?} must divide size {size:?} (e.g. size 1h, slide 5m)")]
    SlideDoesNotDivide {
        /// The configured size.
        size: Duration,
        /// The configured slide.
        slide: Duration,
    },
    /// More than [`WindowSpec::WINDOWS_PER_EVENT_MAX`] windows per event.
    #[error(
        "window size {size:?} / slide {slide:?} puts each event in {count} windows; at most {max} are allowed"
    )]
    TooManyWindows {
        /// The configured size.
        size: Duration,
        /// The configured slide.
        slide: Duration,
        /// size / slide.
        count: u64,
        /// The bound.
        max: u64,
    },
}

/// A tumbling (slide = size) or hopping (slide < size) event-time window, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowSpec {
    size_micros: i64,
    slide_micros: i64,
}

impl WindowSpec {
    /// Bound on `size / slide`: each event is added to this many windows at most.
    pub const WINDOWS_PER_EVENT_MAX: u64 = 1024;

    /// A tumbling window of `size`.
    pub fn tumbling(size: Duration) -> Result<Self, WindowError> {
        Self::hopping(size, size)
    }

    /// A hopping window of `size` that starts every `slide`.
    pub fn hopping(size: Duration, slide: Duration) -> Result<Self, WindowError> {
        let ms = Duration::from_millis(1);
        if size < ms || slide < ms || slide > size {
            return Err(WindowError::TooSmall { size, slide });
        }
        let size_micros =
            i64::try_from(size.as_micros()).map_err(|_| WindowError::TooSmall { size, slide })?;
        let slide_micros =
            i64::try_from(slide.as_micros()).map_err(|_| WindowError::TooSmall { size, slide })?;
        if size_micros % slide_micros != 0 {
            return Err(WindowError::SlideDoesNotDivide { size, slide });
        }
        let count = u64::try_from(size_micros / slide_micros).unwrap_or(u64::MAX);
        if count > Self::WINDOWS_PER_EVENT_MAX {
            return Err(WindowError::TooManyWindows {
                size,
                slide,
                count,
                max: Self::WINDOWS_PER_EVENT_MAX,
            });
        }
        Ok(WindowSpec {
            size_micros,
            slide_micros,
        })
    }

    /// Window length in microseconds.
    pub fn size_micros(&self) -> i64 {
        self.size_micros
    }

    /// Distance between window starts in microseconds.
    pub fn slide_micros(&self) -> i64 {
        self.slide_micros
    }

    /// True when windows do not overlap.
    pub fn is_tumbling(&self) -> bool {
        self.size_micros == self.slide_micros
    }

    /// Start times (µs) of every window containing `t_micros`, earliest first.
    pub fn window_starts(&self, t_micros: i64) -> impl Iterator<Item = i64> + use<> {
        // Floor division so negative times (before 1970) land in the right window too.
        let last = t_micros.div_euclid(self.slide_micros) * self.slide_micros;
        let count = self.size_micros / self.slide_micros;
        let slide = self.slide_micros;
        (0..count).rev().map(move |k| last - k * slide)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tumbling_minute() {
        let w = WindowSpec::tumbling(Duration::from_secs(60)).unwrap();
        let starts: Vec<_> = w.window_starts(90_000_000).collect();
        assert_eq!(starts, vec![60_000_000]);
        // The end is exclusive: an event exactly at a boundary starts the next window.
        assert_eq!(
            w.window_starts(120_000_000).collect::<Vec<_>>(),
            vec![120_000_000]
        );
        assert_eq!(w.window_starts(-1).collect::<Vec<_>>(), vec![-60_000_000]);
    }

    #[test]
    fn hopping_hour_every_five_minutes() {
        let w = WindowSpec::hopping(Duration::from_secs(3600), Duration::from_secs(300)).unwrap();
        let starts: Vec<_> = w.window_starts(3_600_000_000).collect();
        assert_eq!(starts.len(), 12);
        assert_eq!(starts[0], 300_000_000);
        assert_eq!(starts[11], 3_600_000_000);
    }

    #[test]
    fn bad_specs_are_explained() {
        let e = WindowSpec::hopping(Duration::from_secs(60), Duration::from_secs(7)).unwrap_err();
        assert!(e.to_string().contains("must divide"));
        assert!(WindowSpec::tumbling(Duration::ZERO).is_err());
        assert!(WindowSpec::hopping(Duration::from_secs(3600), Duration::from_millis(1)).is_err());
    }

    proptest! {
        #[test]
        fn every_assigned_window_contains_the_event(
            t in -10_000_000_000_000i64..10_000_000_000_000i64,
            slide_s in 1u64..600,
            k in 1u64..20,
        ) {
            let w = WindowSpec::hopping(Duration::from_secs(slide_s * k), Duration::from_secs(slide_s)).unwrap();
            let starts: Vec<_> = w.window_starts(t).collect();
            prop_assert_eq!(starts.len() as u64, k);
            for s in &starts {
                prop_assert!(*s <= t && t < s + w.size_micros());
                prop_assert_eq!(s.rem_euclid(w.slide_micros()), 0);
            }
            // No window that contains t is missing: the one before the first does not contain it.
            prop_assert!(starts[0] - w.slide_micros() + w.size_micros() <= t);
        }
    }
}
