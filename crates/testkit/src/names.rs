//! Unique resource names, so every test gets tables, topics, queues and indices of its own.

/// A name unique to this call: `dvt-<prefix>-<12 hex digits>`.
///
/// The result is lowercase ASCII letters, digits and dashes, at most 58 characters, which
/// every backend accepts as a DynamoDB table, SNS topic, SQS queue or OpenSearch index name.
/// Characters of `prefix` outside `[a-z0-9-]` become dashes; it is cut to 40 characters.
///
/// # Example
/// ```
/// let a = dovetail_testkit::unique_name("Policies");
/// let b = dovetail_testkit::unique_name("Policies");
/// assert!(a.starts_with("dvt-policies-"));
/// assert_ne!(a, b);
/// ```
pub fn unique_name(prefix: &str) -> String {
    let prefix: String = prefix
        .chars()
        .take(40)
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("dvt-{prefix}-{}", &id[..12])
}

#[cfg(test)]
mod tests {
    use super::unique_name;

    #[test]
    fn names_fit_every_backend() {
        let name = unique_name(&"Weird Name_!".repeat(10));
        assert!(name.len() <= 58, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
    }
}
