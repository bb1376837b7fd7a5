//! Test support (feature `testing`): a fresh PostgreSQL database for one test, owned by a fresh
//! role without superuser rights (so row-level security applies to the store exactly as in
//! production), both dropped when the [`TestDatabase`] is dropped, even by a failing test.
//!
//! The server is reached through `SEALTRAIL_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), as a role that may create roles and databases;
//! the roles it creates log in without a password, so that server must trust local
//! connections, as CI's does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub use tokio_postgres;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

/// Environment variable naming the administrative connection for tests.
pub const ADMIN_URL_ENV: &str = "SEALTRAIL_TEST_POSTGRES_URL";
/// The administrative connection when [`ADMIN_URL_ENV`] is unset.
pub const ADMIN_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";

static NEXT_DATABASE: AtomicU64 = AtomicU64::new(0);

/// A database and its owning role, both named `st_<pid>_<time>_<n>`, unique per test.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    admin: Config,
    host: String,
    port: u16,
    /// Extra roles created by the test, dropped with the database.
    roles: Mutex<Vec<String>>,
}

fn admin_config() -> Config {
    let url = std::env::var(ADMIN_URL_ENV).unwrap_or_else(|_| ADMIN_URL_DEFAULT.to_owned());
    url.parse()
        .unwrap_or_else(|error| panic!("{ADMIN_URL_ENV} is not a PostgreSQL URL: {error}"))
}

async fn connect(config: &Config) -> Client {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .unwrap_or_else(|error| panic!("connecting to PostgreSQL for a test: {error}"));
    tokio::spawn(async move {
        // The connection ends when the client is dropped; an error then is expected.
        let _ = connection.await;
    });
    client
}

impl TestDatabase {
    /// Creates the role and the database it owns.
    pub async fn create() -> TestDatabase {
        let admin = admin_config();
        let (host, port) = match (admin.get_hosts().first(), admin.get_ports().first()) {
            (Some(Host::Tcp(host)), port) => (host.clone(), port.copied().unwrap_or(5432)),
            _ => ("127.0.0.1".to_owned(), 5432),
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let name = format!(
            "st_{}_{nanos}_{}",
            std::process::id(),
            NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
        );
        let client = connect(&admin).await;
        // One statement each: CREATE DATABASE cannot run inside a (multi-statement) transaction.
        for statement in [
            format!("CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS"),
            format!("CREATE DATABASE {name} OWNER {name}"),
        ] {
            client
                .batch_execute(&statement)
                .await
                .unwrap_or_else(|error| panic!("creating test database {name}: {error}"));
        }
        TestDatabase {
            name,
            admin,
            host,
            port,
            roles: Mutex::new(Vec::new()),
        }
    }

    /// The database's (and its owner role's) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// URL connecting as the owner role: what `sealtrail serve --database-url` gets.
    pub fn url(&self) -> String {
        self.url_as(&self.name)
    }

    /// URL connecting to this database as `role`.
    pub fn url_as(&self, role: &str) -> String {
        format!(
            "postgres://{role}@{}:{}/{}",
            self.host, self.port, self.name
        )
    }

    /// A superuser connection to this database, for checks behind the store's back.
    pub async fn admin_client(&self) -> Client {
        let mut config = self.admin.clone();
        config.dbname(&self.name);
        connect(&config).await
    }

    /// A connection to this database as `role`.
    pub async fn client_as(&self, role: &str) -> Client {
        let mut config = self.admin.clone();
        config.dbname(&self.name).user(role);
        connect(&config).await
    }

    /// Creates a login role (named after the database plus `suffix`), dropped with the database.
    pub async fn create_role(&self, suffix: &str) -> String {
        let role = format!("{}_{suffix}", self.name);
        connect(&self.admin)
            .await
            .batch_execute(&format!("CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS"))
            .await
            .unwrap_or_else(|error| panic!("creating role {role}: {error}"));
        self.roles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(role.clone());
        role
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        let mut roles = std::mem::take(
            &mut *self
                .roles
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        roles.push(name.clone());
        // Drop may run inside the test's runtime, which must not be blocked on itself: the
        // cleanup gets a thread and a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for dropping the test database");
            runtime.block_on(async move {
                let client = connect(&admin).await;
                let mut statements = vec![format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")];
                statements.extend(
                    roles
                        .iter()
                        .map(|role| format!("DROP ROLE IF EXISTS {role}")),
                );
                for statement in statements {
                    if let Err(error) = client.batch_execute(&statement).await {
                        eprintln!("test cleanup: {statement}: {error}");
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}
