//! The paper's linear latency surrogate (CryptPEFT, fitted on its CrypTen + SHAFT
//! runs): seconds as a function of heads `h`, rank `r` and scope `s`.

/// Which of the paper's two fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaperNetwork {
    Lan,
    Wan,
}

impl PaperNetwork {
    /// `lan` / `wan` by profile name (other profiles have no paper fit).
    pub fn from_profile(p: &cryptpeft_types::NetworkProfile) -> Option<Self> {
        match p.name.as_str() {
            "lan" => Some(Self::Lan),
            "wan" => Some(Self::Wan),
            _ => None,
        }
    }
}

/// WAN: `(0.03828 h + 0.00465 r + 0.48139) s + 0.3212`;
/// LAN: `(0.027466 h + 0.002962 r + 0.123125) s + 0.24229`.
pub fn paper_linear(h: usize, r: usize, s: usize, network: PaperNetwork) -> f64 {
    let (h, r, s) = (h as f64, r as f64, s as f64);
    match network {
        PaperNetwork::Wan => (0.03828 * h + 0.00465 * r + 0.48139) * s + 0.3212,
        PaperNetwork::Lan => (0.027466 * h + 0.002962 * r + 0.123125) * s + 0.24229,
    }
}
