//! What the atoms' signals carry of an error.

use ephemeral::HeaderValue;

/// The longest error text a signal of an atom carries (its `error` header): longer ones are
/// cut at a character boundary, with `…` (the whole text is in the report and the log).
pub(crate) const ERROR_HEADER_MAX: usize = 256;

/// `error` as a signal's `error` header: at most [`ERROR_HEADER_MAX`] bytes.
pub(crate) fn error_header(error: &str) -> HeaderValue {
    if error.len() <= ERROR_HEADER_MAX {
        return HeaderValue::from(error);
    }
    let end = error.floor_char_boundary(ERROR_HEADER_MAX - '…'.len_utf8());
    HeaderValue::from(format!("{}…", &error[..end]))
}
