//! Per-instance resource limits, as systemd spells them: `MemoryMax=` and
//! `CPUQuota=`. Parsed once, before they are stored or reach a unit file.

use std::fmt;

use super::names::shown;

/// A limit that does not parse, with what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {shown} is not valid: {why}")]
pub struct LimitError {
    pub what: &'static str,
    pub shown: String,
    pub why: &'static str,
}

/// `MemoryMax=`: bytes with an optional K, M, G or T suffix, a percentage,
/// or `infinity`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemoryMax(String);

impl MemoryMax {
    pub fn parse(raw: &str) -> Result<Self, LimitError> {
        let digits = raw.strip_suffix(['K', 'M', 'G', 'T', '%']).unwrap_or(raw);
        let ok = raw == "infinity"
            || (!digits.is_empty()
                && digits.len() <= 20
                && digits.chars().all(|c| c.is_ascii_digit()));
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(LimitError {
                what: "memory limit",
                shown: shown(raw),
                why: "use bytes with an optional K, M, G or T suffix (e.g. 512M), a percentage, or infinity",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `CPUQuota=`: a percentage of one CPU, e.g. `50%` or `200%` (two CPUs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CpuQuota(String);

impl CpuQuota {
    pub fn parse(raw: &str) -> Result<Self, LimitError> {
        let ok = raw.strip_suffix('%').is_some_and(|n| {
            !n.is_empty() && n.len() <= 6 && n.chars().all(|c| c.is_ascii_digit()) && n != "0"
        });
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(LimitError {
                what: "CPU quota",
                shown: shown(raw),
                why: "use a percentage of one CPU, e.g. 50% or 200%",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemoryMax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for CpuQuota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An instance's own limits; `None`: no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceLimits {
    pub memory_max: Option<MemoryMax>,
    pub cpu_quota: Option<CpuQuota>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits() {
        for ok in ["512M", "1G", "1024", "50%", "infinity", "2T", "64K"] {
            assert_eq!(MemoryMax::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "512MB",
            "1G\nExecStartPre=/bin/sh",
            "M",
            "-1",
            "1.5G",
            "infinite",
        ] {
            let e = MemoryMax::parse(bad).unwrap_err();
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn cpu_quotas() {
        for ok in ["50%", "200%", "1%"] {
            assert_eq!(CpuQuota::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "0%", "0.5", "50", "%", "1234567%", "50%\n"] {
            assert!(CpuQuota::parse(bad).is_err(), "{bad:?}");
        }
    }
}
