use thiserror::Error;

/// A specification that cannot be used, naming the offending field.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SpecError {
    #[error("invalid field `{field}`: {why}")]
    Field { field: String, why: String },
    #[error("cannot parse `{input}`: {why}")]
    Syntax { input: String, why: String },
}

pub(crate) fn field(field: &str, why: impl Into<String>) -> SpecError {
    SpecError::Field {
        field: field.to_string(),
        why: why.into(),
    }
}
