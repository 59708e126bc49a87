//! Formats an error with all its sources, since SDK errors hide the useful part there.

/// The error and its sources on one line, e.g. `service error: ResourceInUseException: ...`.
///
/// # Example
/// ```
/// let error = std::io::Error::other("disk full");
/// assert_eq!(dovetail_testkit::error_chain(&error), "disk full");
/// ```
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
