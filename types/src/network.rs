use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{field, SpecError};
use crate::{parse_kv, parse_num};

/// Simulated link between client and server: one-way delay and bandwidth.
/// Applied inside the transport because this machine's kernel has no `netem`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkProfile {
    pub name: String,
    /// Bits per second; `None` = unlimited.
    pub bandwidth_bps: Option<f64>,
    pub one_way_delay_s: f64,
}

impl NetworkProfile {
    /// Raw loopback, no shaping.
    pub fn none() -> Self {
        Self {
            name: "none".into(),
            bandwidth_bps: None,
            one_way_delay_s: 0.0,
        }
    }
    /// 1 Gbit/s, 0.5 ms one way.
    pub fn lan() -> Self {
        Self {
            name: "lan".into(),
            bandwidth_bps: Some(1e9),
            one_way_delay_s: 0.5e-3,
        }
    }
    /// 400 Mbit/s, 4 ms one way.
    pub fn wan() -> Self {
        Self {
            name: "wan".into(),
            bandwidth_bps: Some(400e6),
            one_way_delay_s: 4e-3,
        }
    }

    pub fn delay(&self) -> Duration {
        Duration::from_secs_f64(self.one_way_delay_s)
    }

    /// Seconds that `bytes` occupy the link.
    pub fn serialization_s(&self, bytes: u64) -> f64 {
        match self.bandwidth_bps {
            Some(bps) => bytes as f64 * 8.0 / bps,
            None => 0.0,
        }
    }
}

impl fmt::Display for NetworkProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl FromStr for NetworkProfile {
    type Err = SpecError;

    /// `none`, `lan`, `wan`, or `custom:mbit=100,delay_ms=10`.
    fn from_str(s: &str) -> Result<Self, SpecError> {
        match s {
            "none" => Ok(Self::none()),
            "lan" => Ok(Self::lan()),
            "wan" => Ok(Self::wan()),
            _ => {
                let body = s.strip_prefix("custom:").ok_or_else(|| {
                    field(
                        "network",
                        format!("`{s}` is not none, lan, wan or custom:mbit=..,delay_ms=.."),
                    )
                })?;
                let mut p = Self {
                    name: s.to_string(),
                    bandwidth_bps: None,
                    one_way_delay_s: 0.0,
                };
                for (k, v) in parse_kv(body)? {
                    match k.as_str() {
                        "mbit" => {
                            let mbit: f64 = parse_num("mbit", &v)?;
                            if mbit.is_nan() || mbit <= 0.0 {
                                return Err(field("mbit", "must be positive"));
                            }
                            p.bandwidth_bps = Some(mbit * 1e6);
                        }
                        "delay_ms" => {
                            let ms: f64 = parse_num("delay_ms", &v)?;
                            if ms.is_nan() || ms < 0.0 {
                                return Err(field("delay_ms", "must be non-negative"));
                            }
                            p.one_way_delay_s = ms * 1e-3;
                        }
                        other => return Err(field(other, "unknown network field")),
                    }
                }
                Ok(p)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_custom_profiles() {
        assert_eq!(
            "wan".parse::<NetworkProfile>().unwrap().one_way_delay_s,
            4e-3
        );
        let c: NetworkProfile = "custom:mbit=100,delay_ms=10".parse().unwrap();
        assert_eq!(c.bandwidth_bps, Some(1e8));
        assert!((c.serialization_s(1_000_000) - 0.08).abs() < 1e-12);
        assert!("custom:mbit=-1".parse::<NetworkProfile>().is_err());
        assert!("satellite".parse::<NetworkProfile>().is_err());
    }
}
