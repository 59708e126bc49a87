//! The consistency tokens' secret: read from its file, or made (32 random bytes, mode
//! 0600) when the file does not exist yet.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use dovetail_bff::ConsistencyKey;

/// The key in `path`, made first when the file is missing.
///
/// # Errors
/// When the file cannot be read or made, or holds fewer than 32 bytes; the message names
/// the file and what to do.
pub fn load_or_create(path: &Path) -> anyhow::Result<ConsistencyKey> {
    let secret = match std::fs::read(path) {
        Ok(secret) => secret,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => create(path)?,
        Err(error) => {
            return Err(error)
                .with_context(|| format!("cannot read the consistency secret {}", path.display()));
        }
    };
    ConsistencyKey::new(&secret).with_context(|| {
        format!(
            "the consistency secret {} is too short; delete it to have a new one made, or \
             put 32 random bytes or more in it",
            path.display()
        )
    })
}

fn create(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut secret = vec![0; 32];
    aws_lc_rs::rand::fill(&mut secret)
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot make the directory {}", parent.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(&secret)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(secret)
        }
        // Another instance made it first: use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path)
            .with_context(|| format!("cannot read the consistency secret {}", path.display())),
        Err(error) => Err(error).with_context(|| format!("cannot make {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_secret_is_made_once_and_read_back() {
        let dir = std::env::temp_dir().join(format!("gateway-secret-{}", std::process::id()));
        let path = dir.join("key");
        let _ = std::fs::remove_dir_all(&dir);
        let made = load_or_create(&path).unwrap();
        let token = made.sign(&dovetail_bff::ConsistencyToken {
            aggregate: "policy/p".into(),
            version: 1,
        });
        let read = load_or_create(&path).unwrap();
        assert!(read.verify(&token).is_ok(), "the same secret, read back");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, b"short").unwrap();
        let error = load_or_create(&path).unwrap_err();
        assert!(format!("{error:#}").contains("too short"), "{error:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
