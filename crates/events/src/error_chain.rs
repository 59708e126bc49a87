//! Formats an error with all its sources on one line, since SDK errors keep the useful part
//! in their sources.

/// `error: source: source of source ...`
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
