//! The AWS emulator: ministack from PyPI, serving DynamoDB, DynamoDB Streams, SNS and SQS
//! from one process on one port (SNS only delivers to queues of the same process).
//!
//! Chosen over moto because it honours `ClientRequestToken` on TransactWriteItems and
//! starts in half a second with 50 MB; the comparison is in ARCHITECTURE.md.

use std::path::Path;

use super::{Provisioned, probe};
use crate::process::Launch;
use crate::python_tools;

/// How to start the emulator on `port`, bound to loopback, state in memory only.
pub(crate) fn launch(port: u16, dir: &Path) -> Launch {
    Launch {
        program: python_tools::bin_dir()
            .join("ministack")
            .display()
            .to_string(),
        args: Vec::new(),
        env: [
            ("GATEWAY_PORT", port.to_string()),
            ("BIND_HOST", "127.0.0.1".to_owned()),
            ("SERVICES", "dynamodb,dynamodbstreams,sns,sqs".to_owned()),
            ("PERSIST_STATE", "0".to_owned()),
        ]
        .map(|(key, value)| (key.to_owned(), value))
        .to_vec(),
        dir: dir.to_path_buf(),
    }
}

/// Ready when it answers HTTP.
pub(crate) fn probe(port: u16) -> Result<(), String> {
    probe::http_get(port, "/").map(|_| ())
}

/// What the tests see of it: the standard AWS variables, pointed at the emulator.
pub(crate) fn provisioned(port: u16) -> Result<Provisioned, String> {
    let endpoint = format!("http://127.0.0.1:{port}");
    Ok(Provisioned {
        env: vec![
            ("AWS_ENDPOINT_URL".into(), endpoint),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ],
        version: python_tools::EMULATOR.replace("==", " "),
    })
}
