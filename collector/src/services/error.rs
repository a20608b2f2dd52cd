//! What a use case answers when it does not do what was asked. Each adapter (the gRPC admin
//! service, the web console) maps the kinds to its own codes in one place.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request itself is wrong: a missing or malformed argument.
    #[error("{0}")]
    Invalid(String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is understood, but the state of things refuses it now.
    #[error("{0}")]
    Refused(String),
    /// Something on the collector's side broke (not the request's fault).
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ServiceError::Invalid(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ServiceError::NotFound(message.into())
    }

    pub fn refused(message: impl Into<String>) -> Self {
        ServiceError::Refused(message.into())
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ServiceError::Internal(message.into())
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
