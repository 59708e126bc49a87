//! The message attributes of a dead-lettered message: the original ones plus the reason
//! and the source queue, within SQS's limit of 10.

/// The message attribute of a dead-lettered message that says why it was dead-lettered:
/// the handler's reason, or `undecodable: …`.
///
/// ```
/// use dovetail_events::consumer::sqs::REASON_ATTRIBUTE;
/// assert_eq!(REASON_ATTRIBUTE, "dovetail-dlq-reason");
/// ```
pub const REASON_ATTRIBUTE: &str = "dovetail-dlq-reason";
/// The message attribute of a dead-lettered message that names the queue it was taken
/// from (the first attribute dropped when the original has nine or more of its own).
///
/// ```
/// use dovetail_events::consumer::sqs::SOURCE_ATTRIBUTE;
/// assert_eq!(SOURCE_ATTRIBUTE, "dovetail-dlq-source");
/// ```
pub const SOURCE_ATTRIBUTE: &str = "dovetail-dlq-source";
/// The most message attributes an SQS message may carry.
pub(crate) const MAX_ATTRIBUTES: usize = 10;
/// The longest reason kept, in characters (attributes count towards the message size).
pub(crate) const MAX_REASON_CHARS: usize = 1024;

/// A string attribute to add, or an original one to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value<V> {
    /// A new `String` attribute.
    Text(String),
    /// The original message's attribute, copied as it was.
    Original(V),
}

/// The attributes of the dead-letter copy of a message with `original` attributes.
///
/// In order of importance: the reason, the original attributes (by name), then the
/// source queue. Whatever does not fit in [`MAX_ATTRIBUTES`] is dropped, and the reason
/// names what was dropped. Original attributes named like ours (a message dead-lettered
/// before, redriven, and failing again) are replaced.
pub(crate) fn attributes<V>(
    original: impl IntoIterator<Item = (String, V)>,
    reason: &str,
    source_queue: &str,
) -> Vec<(String, Value<V>)> {
    let mut originals: Vec<(String, V)> = original
        .into_iter()
        .filter(|(name, _)| name != REASON_ATTRIBUTE && name != SOURCE_ATTRIBUTE)
        .collect();
    originals.sort_by(|a, b| a.0.cmp(&b.0));

    let mut kept: Vec<(String, Value<V>)> = Vec::with_capacity(MAX_ATTRIBUTES);
    let mut dropped = Vec::new();
    for (name, value) in originals {
        if kept.len() < MAX_ATTRIBUTES - 1 {
            kept.push((name, Value::Original(value)));
        } else {
            dropped.push(name);
        }
    }
    if kept.len() < MAX_ATTRIBUTES - 1 {
        kept.push((
            SOURCE_ATTRIBUTE.to_owned(),
            Value::Text(attribute_text(source_queue, MAX_REASON_CHARS)),
        ));
    } else {
        dropped.push(SOURCE_ATTRIBUTE.to_owned());
    }

    let mut reason = reason.to_owned();
    if !dropped.is_empty() {
        reason = format!(
            "{reason} (attributes dropped to fit the limit of {MAX_ATTRIBUTES}: {})",
            dropped.join(", ")
        );
    }
    kept.insert(
        0,
        (
            REASON_ATTRIBUTE.to_owned(),
            Value::Text(attribute_text(&reason, MAX_REASON_CHARS)),
        ),
    );
    kept
}

/// `text` as an attribute value SQS accepts: never empty, no characters outside the XML
/// range it allows, at most `max_chars` characters.
pub(crate) fn attribute_text(text: &str, max_chars: usize) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if allowed(c) { c } else { '?' })
        .take(max_chars)
        .collect();
    if cleaned.trim().is_empty() {
        "(no reason given)".to_owned()
    } else {
        cleaned
    }
}

/// Characters SQS accepts in message bodies and attribute values.
fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn names<V>(attributes: &[(String, Value<V>)]) -> Vec<&str> {
        attributes.iter().map(|(name, _)| name.as_str()).collect()
    }

    fn text<V>(attributes: &[(String, Value<V>)], name: &str) -> String {
        attributes
            .iter()
            .find_map(|(n, value)| match value {
                Value::Text(text) if n == name => Some(text.clone()),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn few_originals_keep_everything() {
        let attributes = attributes(
            [("type".to_owned(), 1), ("source".to_owned(), 2)],
            "unknown policy",
            "claims",
        );
        assert_eq!(
            names(&attributes),
            [REASON_ATTRIBUTE, "source", "type", SOURCE_ATTRIBUTE]
        );
        assert_eq!(text(&attributes, REASON_ATTRIBUTE), "unknown policy");
        assert_eq!(text(&attributes, SOURCE_ATTRIBUTE), "claims");
    }

    #[test]
    fn nine_originals_drop_the_source_and_say_so() {
        let originals = (0..9).map(|i| (format!("a{i}"), i));
        let attributes = attributes(originals, "bad", "claims");
        assert_eq!(attributes.len(), MAX_ATTRIBUTES);
        assert_eq!(
            text(&attributes, REASON_ATTRIBUTE),
            "bad (attributes dropped to fit the limit of 10: dovetail-dlq-source)"
        );
    }

    #[test]
    fn ten_originals_drop_the_last_by_name_and_the_source() {
        let originals = (0..10).rev().map(|i| (format!("a{i}"), i));
        let attributes = attributes(originals, "bad", "claims");
        assert_eq!(attributes.len(), MAX_ATTRIBUTES);
        assert_eq!(names(&attributes)[1], "a0");
        assert_eq!(names(&attributes)[9], "a8");
        assert!(text(&attributes, REASON_ATTRIBUTE).ends_with(": a9, dovetail-dlq-source)"));
    }

    #[test]
    fn our_own_attributes_are_replaced() {
        let originals = [
            (REASON_ATTRIBUTE.to_owned(), 1),
            (SOURCE_ATTRIBUTE.to_owned(), 2),
        ];
        let attributes = attributes(originals, "again", "claims");
        assert_eq!(names(&attributes), [REASON_ATTRIBUTE, SOURCE_ATTRIBUTE]);
        assert_eq!(text(&attributes, REASON_ATTRIBUTE), "again");
    }

    #[test]
    fn reasons_are_cleaned_and_truncated() {
        assert_eq!(attribute_text("a\u{0}b\u{FFFF}c\nd", 100), "a?b?c\nd");
        assert_eq!(attribute_text("", 100), "(no reason given)");
        assert_eq!(
            attribute_text(&"é".repeat(2000), 1024).chars().count(),
            1024
        );
    }
}
