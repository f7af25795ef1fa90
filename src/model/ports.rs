//! Port choice: the pure rules. Whether a port is actually free to bind is
//! asked of the operating system by the caller and passed in as a predicate.

/// The first port handed out when no instance exists yet (seed 000).
pub const DEFAULT_FIRST_PORT: u16 = 8091;
/// The lowest port an instance may use: below it are privileged ports.
pub const MIN_PORT: u16 = 1024;

/// Why a port cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error(
        "port {0} is outside 1024-65535: pick a port in that range, or leave it out to get one"
    )]
    OutOfRange(u32),
    #[error(
        "port {port} is already used by instance {owner}: pick another, or leave it out to get one"
    )]
    UsedByInstance { port: u16, owner: String },
    #[error("port {0} is in use by another program on this host: pick another, or leave it out to get one")]
    NotFree(u16),
    #[error("no free port left between {from} and 65535")]
    Exhausted { from: u16 },
}

/// Check a port the user asked for against the range rule.
pub fn check_range(port: u32) -> Result<u16, PortError> {
    if (MIN_PORT as u32..=65535).contains(&port) {
        Ok(port as u16)
    } else {
        Err(PortError::OutOfRange(port))
    }
}

/// Seed 000's rule: 8091 when nothing is in use, else one above the highest
/// port in use, skipping ports the predicate says are taken on the host.
/// When the top of the range is reached it wraps to the lowest free port
/// above 8091, so a fleet never runs out while gaps exist.
pub fn next_port(used: &[u16], is_free: impl Fn(u16) -> bool) -> Result<u16, PortError> {
    let start = used
        .iter()
        .copied()
        .max()
        .map(|p| p.saturating_add(1).max(DEFAULT_FIRST_PORT))
        .unwrap_or(DEFAULT_FIRST_PORT);
    let candidates = (start..=65535).chain(DEFAULT_FIRST_PORT..start);
    for port in candidates {
        if port >= MIN_PORT && !used.contains(&port) && is_free(port) {
            return Ok(port);
        }
    }
    Err(PortError::Exhausted { from: start })
}

/// A stable 64-bit FNV-1a hash: the same on every build and platform, unlike
/// `std`'s `DefaultHasher`, so a user keeps their port across upgrades.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Seed 001's rule: `base + hash(user_id) % 1000`, then scan upwards for a
/// port that is neither used by an instance nor taken on the host.
pub fn user_port(
    base: u16,
    user_id: &str,
    used: &[u16],
    is_free: impl Fn(u16) -> bool,
) -> Result<u16, PortError> {
    let preferred = u32::from(base) + (stable_hash(user_id.as_bytes()) % 1000) as u32;
    let from = preferred.clamp(u32::from(MIN_PORT), 65535) as u16;
    (from..=65535)
        .find(|p| !used.contains(p) && is_free(*p))
        .ok_or(PortError::Exhausted { from })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_port_is_8091_then_one_above_highest() {
        assert_eq!(next_port(&[], |_| true), Ok(8091));
        assert_eq!(next_port(&[8091], |_| true), Ok(8092));
        assert_eq!(next_port(&[8091, 8094], |_| true), Ok(8095));
        assert_eq!(next_port(&[2000], |_| true), Ok(8091));
    }

    #[test]
    fn skips_ports_taken_on_the_host() {
        assert_eq!(next_port(&[8091], |p| p != 8092 && p != 8093), Ok(8094));
    }

    #[test]
    fn wraps_to_gaps_at_the_top() {
        assert_eq!(next_port(&[65535], |_| true), Ok(8091));
        assert_eq!(next_port(&[65535, 8091], |p| p != 8092), Ok(8093));
        assert!(matches!(
            next_port(&[65535], |_| false),
            Err(PortError::Exhausted { .. })
        ));
    }

    #[test]
    fn range_rule() {
        assert_eq!(check_range(1024), Ok(1024));
        assert_eq!(check_range(65535), Ok(65535));
        assert_eq!(check_range(1023), Err(PortError::OutOfRange(1023)));
        assert_eq!(check_range(0), Err(PortError::OutOfRange(0)));
        assert_eq!(check_range(70000), Err(PortError::OutOfRange(70000)));
    }

    #[test]
    fn user_port_is_stable_and_scans() {
        let p = user_port(9000, "user_123", &[], |_| true).unwrap();
        assert!((9000..10000).contains(&p));
        assert_eq!(user_port(9000, "user_123", &[], |_| true).unwrap(), p);
        assert_eq!(user_port(9000, "user_123", &[p], |_| true).unwrap(), p + 1);
        assert_eq!(user_port(9000, "user_123", &[], |q| q != p).unwrap(), p + 1);
        // FNV-1a test vectors, pinned so that a change of hash (which would
        // move every user's port) is caught.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_hash(b"foobar"), 0x85944171f73967e8);
    }
}
