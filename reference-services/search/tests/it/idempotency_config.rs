//! The `[idempotency]` settings without a server: the records default to a SQLite file in
//! the tantivy directory and follow `idempotency.path`; an unknown backend, a setting of
//! the other backend and DynamoDB without the AWS transport are refused with a message
//! that names what to change.

use dovetail_events::bus::EmbeddedBus;
use dovetail_search::config::{ENV_PREFIX, IdempotencyBackend};
use dovetail_search::{Application, SearchConfig};
use dovetail_service_kit::config::{ConfigError, load_from};
use dovetail_service_kit::events::Transport;

use crate::support::temp_dir;

/// A configuration on embedded backends under a fresh directory, and its transport.
fn embedded() -> (SearchConfig, Transport, std::path::PathBuf) {
    let dir = temp_dir("search-idempotency-config");
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = SearchConfig::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.index.tantivy_path = dir.join("search");
    config.events.bus_path = dir.join("bus.db");
    let bus = EmbeddedBus::open(&config.events.bus_path).unwrap();
    (config, Transport::Embedded(bus), dir)
}

async fn build_error(config: SearchConfig, transport: &Transport) -> String {
    let error = Application::build(config, transport)
        .await
        .expect_err("the configuration should be refused");
    format!("{error:#}")
}

#[test]
fn an_unknown_idempotency_backend_is_refused_naming_the_variable_and_the_choices() {
    let env = [(
        format!("{ENV_PREFIX}__IDEMPOTENCY__BACKEND"),
        "redis".to_owned(),
    )];
    let error = load_from::<SearchConfig>(None, ENV_PREFIX, env).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, ConfigError::Invalid { .. }), "{message}");
    for expected in [
        "DOVETAIL_SEARCH__IDEMPOTENCY__BACKEND",
        "redis",
        "`sqlite`",
        "`dynamodb`",
    ] {
        assert!(message.contains(expected), "{expected} missing: {message}");
    }

    // In a file, the message names the field.
    let file = temp_dir("search-idempotency-config").with_extension("toml");
    std::fs::write(&file, "[idempotency]\nbackend = \"redis\"\n").unwrap();
    let message = load_from::<SearchConfig>(Some(&file), ENV_PREFIX, [])
        .unwrap_err()
        .to_string();
    let _ = std::fs::remove_file(&file);
    for expected in [
        file.display().to_string().as_str(),
        "idempotency.backend",
        "redis",
    ] {
        assert!(message.contains(expected), "{expected} missing: {message}");
    }
}

#[test]
fn the_idempotency_section_loads_from_variables_and_the_old_top_level_path_is_refused() {
    let env = [
        (
            format!("{ENV_PREFIX}__IDEMPOTENCY__BACKEND"),
            "dynamodb".to_owned(),
        ),
        (
            format!("{ENV_PREFIX}__IDEMPOTENCY__TABLE"),
            "prod-search-records".to_owned(),
        ),
    ];
    let config = load_from::<SearchConfig>(None, ENV_PREFIX, env).unwrap();
    assert_eq!(config.idempotency.backend, IdempotencyBackend::Dynamodb);
    assert_eq!(config.idempotency_table(), "prod-search-records");

    // `idempotency_path` became `idempotency.path`: the old name is an unknown field.
    let env = [(
        format!("{ENV_PREFIX}__IDEMPOTENCY_PATH"),
        "/tmp/records.db".to_owned(),
    )];
    let message = load_from::<SearchConfig>(None, ENV_PREFIX, env)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("unknown field `idempotency_path`") && message.contains("`idempotency`"),
        "{message}"
    );
}

#[tokio::test]
async fn the_records_are_a_sqlite_file_at_idempotency_path() {
    let (mut config, transport, dir) = embedded();
    let path = dir.join("elsewhere").join("records.db");
    config.idempotency.path = Some(path.clone());
    assert_eq!(config.idempotency_path(), path);
    let app = Application::build(config, &transport).await.unwrap();
    assert!(path.exists(), "no records at {}", path.display());
    assert!(
        !dir.join("search").join("idempotency.db").exists(),
        "the default file was created too"
    );
    drop(app);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn dynamodb_records_without_the_aws_transport_are_refused_naming_the_settings() {
    let (mut config, transport, dir) = embedded();
    config.idempotency.backend = IdempotencyBackend::Dynamodb;
    let message = build_error(config, &transport).await;
    assert!(
        message.contains("idempotency.backend = dynamodb")
            && message.contains("events.backend = aws"),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_setting_of_the_other_backend_is_refused() {
    let (mut config, transport, dir) = embedded();
    config.idempotency.table = Some("search-records".to_owned());
    let message = build_error(config, &transport).await;
    assert!(
        message.contains("idempotency.table") && message.contains("idempotency.backend = dynamodb"),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
