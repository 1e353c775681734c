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
    /// A keyed state or timer call was refused ([`Error::state_code`] says why).
    State,
}

impl ErrorCode {
    /// The code's WIT name (`invalid-config`, `invalid-input`, `internal`, `state`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidConfig => "invalid-config",
            ErrorCode::InvalidInput => "invalid-input",
            ErrorCode::Internal => "internal",
            ErrorCode::State => "state",
        }
    }
}

/// Why the host refused a keyed state or timer call (WIT `state-error-code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateErrorCode {
    /// The operator's input is not keyed (no `key_by` edge leads into it).
    NotKeyed,
    /// The call was made outside `process` and `on_timer(s)` (in `init`, say), or
    /// outside the Sluice host (in a native test).
    NoCurrentKey,
    /// The row (or timer) index is not in the current call's batch, or is past the
    /// call's limit ([`crate::batch_limit`]).
    BadIndex,
    /// The handle names no declared state, or one of another kind.
    BadHandle,
    /// The declaration was refused (empty name, non-positive time-to-live, the name
    /// declared before with another kind or time-to-live).
    BadDeclaration,
    /// An argument was malformed.
    BadArgument,
    /// The host's state backend failed.
    Backend,
}

impl StateErrorCode {
    /// The code's WIT name (`not-keyed`, `bad-index`, ...).
    pub fn name(self) -> &'static str {
        match self {
            StateErrorCode::NotKeyed => "not-keyed",
            StateErrorCode::NoCurrentKey => "no-current-key",
            StateErrorCode::BadIndex => "bad-index",
            StateErrorCode::BadHandle => "bad-handle",
            StateErrorCode::BadDeclaration => "bad-declaration",
            StateErrorCode::BadArgument => "bad-argument",
            StateErrorCode::Backend => "backend",
        }
    }
}

/// An expected failure, returned to the host as a typed `operator-error` (unlike a panic,
/// which traps and kills the instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: ErrorCode,
    message: String,
    state: Option<StateErrorCode>,
}

impl Error {
    /// An error with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            state: None,
        }
    }
    /// A refused keyed state or timer call: code [`ErrorCode::State`], the message
    /// prefixed with the state error's name (`bad-index: row 7 is ...`).
    pub fn state(code: StateErrorCode, message: impl fmt::Display) -> Self {
        Error {
            code: ErrorCode::State,
            message: format!("{}: {message}", code.name()),
            state: Some(code),
        }
    }
    /// Why the host refused a state or timer call, for errors made by [`Error::state`].
    pub fn state_code(&self) -> Option<StateErrorCode> {
        self.state
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
