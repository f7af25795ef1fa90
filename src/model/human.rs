//! Numbers for people: sizes in binary units and durations in their two
//! largest units, as the CLI, the dashboard and error messages show them.

use std::time::Duration;

/// Bytes for people: `512 B`, `1.5 KiB`, `17.5 MiB`, `2.0 GiB` (binary
/// units, one decimal above bytes).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Move up while the value would print as 1024.0 or more.
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration for people, in its two largest units: `45s`, `3m 12s`,
/// `2h 5m`, `3d 4h` (fractions of a second are dropped).
pub fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (days, hours, mins, secs) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {mins}m")
    } else if mins > 0 {
        format!("{mins}m {secs}s")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_boundaries() {
        let cases = [
            (0, "0 B"),
            (512, "512 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            ((1 << 20) - 1, "1.0 MiB"),
            (1 << 20, "1.0 MiB"),
            (17 * (1 << 20) + (1 << 19), "17.5 MiB"),
            ((1 << 30) - (1 << 20), "1023.0 MiB"),
            (2 * (1 << 30), "2.0 GiB"),
            (1 << 40, "1.0 TiB"),
            (u64::MAX, "16.0 EiB"),
        ];
        for (bytes, want) in cases {
            assert_eq!(human_bytes(bytes), want, "{bytes}");
        }
    }

    #[test]
    fn human_duration_boundaries() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (59, "59s"),
            (60, "1m 0s"),
            (192, "3m 12s"),
            (3_599, "59m 59s"),
            (3_600, "1h 0m"),
            (2 * 3_600 + 5 * 60 + 59, "2h 5m"),
            (86_399, "23h 59m"),
            (86_400, "1d 0h"),
            (3 * 86_400 + 4 * 3_600 + 59 * 60, "3d 4h"),
            (400 * 86_400, "400d 0h"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}");
        }
        assert_eq!(human_duration(Duration::from_millis(999)), "0s");
    }
}
