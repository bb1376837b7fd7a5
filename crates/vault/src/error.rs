use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A wrapped key or a field's ciphertext did not open under the key given: the wrong key,
    /// or bytes changed since they were sealed.
    #[error("{what} does not open with the key given (wrong key, or changed since it was sealed)")]
    Open { what: &'static str },
    /// The key-encryption key could not be read.
    #[error("key-encryption key: {0}")]
    Kek(String),
    /// An envelope's ciphertext opened but its plaintext does not match its commitment.
    #[error("the plaintext of {field} does not match its commitment")]
    Commitment { field: String },
    #[error("the system random number generator failed")]
    Random,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
