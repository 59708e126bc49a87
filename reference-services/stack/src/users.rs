//! The stack's first users: a staff user and a demo customer, made by the auth service's
//! operator API on the first start, with passwords from the environment or generated,
//! printed once and kept in `credentials.json` (mode 0600) under the data directory, so
//! the demo (and a person trying the API) can log in.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use dovetail_auth::store::Registration;
use serde::{Deserialize, Serialize};

/// The staff user's email.
pub const STAFF_EMAIL: &str = "staff@dovetail.local";
/// The demo customer user's email.
pub const CUSTOMER_EMAIL: &str = "customer@dovetail.local";
/// The customer the demo customer user acts for.
pub const DEMO_CUSTOMER_ID: &str = "cust-demo";
/// The variable that sets the staff user's password on the first start.
pub const STAFF_PASSWORD_VAR: &str = "DOVETAIL_STACK_STAFF_PASSWORD";
/// The variable that sets the demo customer's password on the first start.
pub const CUSTOMER_PASSWORD_VAR: &str = "DOVETAIL_STACK_CUSTOMER_PASSWORD";
/// The file, under the data directory, that keeps the credentials.
pub const CREDENTIALS_FILE: &str = "credentials.json";

/// An email and its password. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    /// The user's email.
    pub email: String,
    /// The user's password.
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// The stack's users: how to log in as staff and as the demo customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The staff user.
    pub staff: Login,
    /// The demo customer user, bound to [`DEMO_CUSTOMER_ID`].
    pub customer: Login,
}

impl Credentials {
    /// The credentials file of the stack whose data directory is `data_dir`.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join(CREDENTIALS_FILE)
    }

    /// The credentials kept in `path`.
    ///
    /// # Errors
    /// When the file cannot be read or is not what the stack writes; the message names
    /// it and says how to get one.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the stack's credentials at {}: the stack writes them on its first \
                 start under its data directory (pass --credentials <file> if it is elsewhere)",
                path.display()
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a credentials file", path.display()))
    }

    /// Writes them to `path`, readable and writable by the owner only.
    fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        file.write_all(serde_json::to_string_pretty(self)?.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

/// What the first start did about the users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seeding {
    /// The users were made now; the credentials are in the file and should be printed.
    Created(Credentials),
    /// The file was there: the users were made by an earlier start.
    Existing(Credentials),
    /// The users exist (in a shared DynamoDB table, say) but this data directory has no
    /// credentials file: they are wherever the first start kept them.
    Elsewhere,
}

impl Seeding {
    /// The credentials, when this data directory has them.
    pub fn credentials(&self) -> Option<&Credentials> {
        match self {
            Self::Created(credentials) | Self::Existing(credentials) => Some(credentials),
            Self::Elsewhere => None,
        }
    }
}

/// Makes the staff user and the demo customer through `admin` unless `data_dir` already
/// has their credentials.
///
/// # Errors
/// When a registration or the credentials file fails; the message says which.
pub async fn seed(admin: &dovetail_auth::Admin, data_dir: &Path) -> anyhow::Result<Seeding> {
    let path = Credentials::path_in(data_dir);
    if path.exists() {
        return Ok(Seeding::Existing(Credentials::read(&path)?));
    }
    let credentials = Credentials {
        staff: Login {
            email: STAFF_EMAIL.to_owned(),
            password: password_from(STAFF_PASSWORD_VAR),
        },
        customer: Login {
            email: CUSTOMER_EMAIL.to_owned(),
            password: password_from(CUSTOMER_PASSWORD_VAR),
        },
    };
    let staff = admin
        .register_staff(&credentials.staff.email, &credentials.staff.password)
        .await
        .context("creating the stack's staff user")?;
    let customer = admin
        .register_customer(
            &credentials.customer.email,
            &credentials.customer.password,
            DEMO_CUSTOMER_ID,
        )
        .await
        .context("creating the stack's demo customer")?;
    if (staff, customer) != (Registration::Created, Registration::Created) {
        return Ok(Seeding::Elsewhere);
    }
    credentials.write(&path)?;
    Ok(Seeding::Created(credentials))
}

/// The password `variable` names, or a new random one (128 bits, base32-like hex).
fn password_from(variable: &str) -> String {
    std::env::var(variable)
        .ok()
        .filter(|password| !password.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}
