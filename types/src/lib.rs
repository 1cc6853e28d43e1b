//! Types every part of CryptPEFT shares. Kept free of heavy dependencies so that the
//! deployed server and dealer stay small.

mod adapter;
mod backbone;
pub mod checkpoint;
mod error;
pub mod files;
pub mod memory;
mod network;
pub mod stats;

pub use adapter::{
    Activation, AdapterSpec, AttentionKind, NormKind, PAPER_SELECTED, RELU_SOFTMAX_EPS,
};
pub use backbone::BackboneSpec;
pub use error::SpecError;
pub use network::NetworkProfile;

/// Parses `key=value,key=value` lists such as `h=1,r=300,s=1`.
pub(crate) fn parse_kv(text: &str) -> Result<Vec<(String, String)>, SpecError> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').ok_or_else(|| SpecError::Syntax {
                input: text.to_string(),
                why: format!("`{pair}` is not key=value"),
            })?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

pub(crate) fn parse_num<T: std::str::FromStr>(field: &str, v: &str) -> Result<T, SpecError> {
    v.parse().map_err(|_| SpecError::Field {
        field: field.to_string(),
        why: format!("`{v}` is not a valid number"),
    })
}
