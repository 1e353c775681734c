use std::fmt;

/// The kind of an operator error, as the host reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A configuration key is missing or has a bad value.
    InvalidConfig,
    /// An input event could not be processed (its value does not decode, say).
    InvalidInput,
    /// Any other failure the operator detected.
    Internal,
}

impl ErrorCode {
    /// The code's WIT name (`invalid-config`, `invalid-input`, `internal`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidConfig => "invalid-config",
            ErrorCode::InvalidInput => "invalid-input",
            ErrorCode::Internal => "internal",
        }
    }
}

/// An expected failure, returned to the host as a typed `operator-error` (unlike a panic,
/// which traps and kills the instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: ErrorCode,
    message: String,
}

impl Error {
    /// An error with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }
    /// A missing or bad configuration key.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidConfig, message)
    }
    /// An input event that cannot be processed.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }
    /// Any other failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
    /// The error's message.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The message, moved out.
    pub fn into_message(self) -> String {
        self.message
    }
    /// Prefixes the message with `context: `.
    pub fn with_context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl std::error::Error for Error {}

/// A value that does not decode as a `packed` record is bad input.
impl From<sluice_packed::PackedError> for Error {
    fn from(e: sluice_packed::PackedError) -> Self {
        Error::invalid_input(e.to_string())
    }
}
