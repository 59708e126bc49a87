//! OpenSearch: a real single-node OpenSearch 2.19 from Maven Central, started by the small
//! Java launcher in `xtask/opensearch-launcher` (Java 17; 3.x would need Java 21+).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Provisioned, probe};
use crate::process::Launch;
use crate::{paths, shell};

/// Heap for the node: enough for tests, small enough for a 2-core, shared machine.
const HEAP: &str = "-Xmx512m";

fn launcher_dir() -> PathBuf {
    paths::workspace_root().join("xtask/opensearch-launcher")
}

fn build_dir() -> PathBuf {
    paths::tools_dir().join("opensearch")
}

/// The launcher's sources; a change to any of them rebuilds it.
fn sources() -> [PathBuf; 3] {
    let dir = launcher_dir();
    [
        dir.join("pom.xml"),
        dir.join("src/main/java/dev/dovetail/opensearch/Launcher.java"),
        dir.join("src/main/resources/log4j2.properties"),
    ]
}

/// Builds the launcher and fetches OpenSearch's jars with Maven, unless already built
/// from the same sources.
pub(crate) fn install() -> Result<(), String> {
    let fingerprint = sources()
        .iter()
        .map(|path| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        })
        .collect::<Result<Vec<_>, _>>()?
        .join("\u{0}");
    let marker = build_dir().join("dovetail-sources.txt");
    let jar = build_dir().join("opensearch-launcher.jar");
    if jar.exists() && std::fs::read_to_string(&marker).is_ok_and(|built| built == fingerprint) {
        return Ok(());
    }
    for tool in ["mvn", "java"] {
        if !shell::on_path(tool) {
            return Err(format!(
                "`{tool}` is not installed; the OpenSearch node needs Java 17 and Maven \
                 (Debian: apt-get install openjdk-17-jdk-headless maven)"
            ));
        }
    }
    eprintln!(
        "xtask: building the OpenSearch launcher with Maven into {}",
        build_dir().display()
    );
    let _ = std::fs::remove_dir_all(build_dir().join("lib"));
    shell::output(
        Command::new("mvn")
            .args(["-B", "-q", "-DskipTests", "-f"])
            .arg(launcher_dir().join("pom.xml"))
            .arg(format!("-Dlauncher.buildDir={}", build_dir().display()))
            .arg("package"),
    )?;
    std::fs::write(&marker, fingerprint)
        .map_err(|e| format!("cannot write {}: {e}", marker.display()))
}

/// How to start the node on `http_port`, with its data under `dir`.
pub(crate) fn launch(http_port: u16, transport_port: u16, dir: &Path) -> Result<Launch, String> {
    let build = build_dir();
    Ok(Launch {
        program: "java".into(),
        args: vec![
            HEAP.into(),
            "-Xms512m".into(),
            "-XX:+UseSerialGC".into(),
            "-Djava.awt.headless=true".into(),
            "-Dfile.encoding=UTF-8".into(),
            "-Djava.locale.providers=SPI,COMPAT".into(),
            "-cp".into(),
            format!(
                "{}:{}/*",
                build.join("opensearch-launcher.jar").display(),
                build.join("lib").display()
            ),
            "dev.dovetail.opensearch.Launcher".into(),
            "--http-port".into(),
            http_port.to_string(),
            "--transport-port".into(),
            transport_port.to_string(),
            "--home".into(),
            dir.display().to_string(),
            "--cluster-name".into(),
            "dovetail-test".into(),
        ],
        env: Vec::new(),
        dir: dir.to_path_buf(),
    })
}

/// Ready when the cluster is at least yellow and the launcher has applied its default of
/// zero replicas (a persistent cluster setting it writes just before it reports READY), so
/// that every index the tests create goes green.
pub(crate) fn probe(port: u16) -> Result<(), String> {
    let (status, body) = probe::http_get(port, "/_cluster/health")?;
    let healthy = body.contains("\"status\":\"green\"") || body.contains("\"status\":\"yellow\"");
    if status != 200 || !healthy {
        return Err(format!("cluster health {status}: {body:.120}"));
    }
    let (_, settings) = probe::http_get(port, "/_cluster/settings")?;
    if settings.contains("default_number_of_replicas") {
        Ok(())
    } else {
        Err("the launcher has not applied its replica setting yet".to_owned())
    }
}

/// What the tests see of it, with the version the node reports.
pub(crate) fn provisioned(port: u16) -> Result<Provisioned, String> {
    let (_, body) = probe::http_get(port, "/")?;
    let version = body
        .split("\"number\"")
        .nth(1)
        .and_then(|rest| rest.split('"').nth(1))
        .unwrap_or("unknown")
        .to_owned();
    Ok(Provisioned {
        env: vec![(
            "DOVETAIL_OPENSEARCH_URL".into(),
            format!("http://127.0.0.1:{port}"),
        )],
        version: format!("OpenSearch {version}"),
    })
}
