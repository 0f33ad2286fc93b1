//! A fresh PostgreSQL database per test, dropped when its handle drops.
//!
//! The server is the one `LOOKOUT_TEST_POSTGRES_URL` names (tests/run.sh
//! starts one and exports it when none answers on 127.0.0.1:5432), else
//! 127.0.0.1:5432 as user `postgres`. A test that finds no server fails:
//! it never skips.

use std::time::Duration;

/// The maintenance database's URL: where databases are created and dropped.
pub fn admin_url() -> String {
    std::env::var("LOOKOUT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database of its own, with a random name.
pub struct TestDb {
    /// Its name.
    pub name: String,
    /// A URL that reaches it.
    pub url: String,
}

/// Runs `f` with a client of `url`, on a thread and runtime of its own (the
/// caller may be async or not, and may be dropping).
fn with_client<T: Send + 'static>(
    url: String,
    f: impl AsyncFnOnce(tokio_postgres::Client) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let mut cfg: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
            cfg.connect_timeout(Duration::from_secs(5));
            let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.map_err(|e| format!("{e}"))?;
            tokio::spawn(conn);
            f(client).await
        })
    })
    .join()
    .map_err(|_| "thread panicked".to_string())?
}

/// Runs `sql` on the maintenance database.
fn admin(sql: String) -> Result<(), String> {
    with_client(admin_url(), async move |c| {
        c.batch_execute(&sql).await.map_err(|e| format!("{e:?}"))
    })
}

impl TestDb {
    /// Creates the database; panics (fails the test) when no server answers.
    pub fn create() -> TestDb {
        let name = format!("lookout_test_{:016x}", rand::random::<u64>());
        admin(format!("CREATE DATABASE {name}")).unwrap_or_else(|e| {
            panic!(
                "no PostgreSQL at {} (set LOOKOUT_TEST_POSTGRES_URL, or run tests/run.sh, which starts one): {e}",
                admin_url()
            )
        });
        let mut u = url::Url::parse(&admin_url()).expect("admin URL");
        u.set_path(&format!("/{name}"));
        TestDb { name, url: u.to_string() }
    }

    /// Runs SQL in this database.
    pub fn execute(&self, sql: &str) -> Result<(), String> {
        let (url, sql) = (self.url.clone(), sql.to_string());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| format!("{e}"))?;
                tokio::spawn(conn);
                client.batch_execute(&sql).await.map_err(|e| format!("{e:?}"))
            })
        })
        .join()
        .map_err(|_| "thread panicked".to_string())?
    }

    /// One number from a query in this database.
    pub fn count(&self, sql: &str) -> i64 {
        let sql = sql.to_string();
        with_client(self.url.clone(), async move |c| {
            c.query_one(&sql, &[])
                .await
                .map(|r| r.get::<_, i64>(0))
                .map_err(|e| format!("{e:?}"))
        })
        .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = admin(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// A PostgreSQL server of a test's own (tests/postgres.sh: Debian's
/// binaries, initdb + pg_ctl in a temporary directory), for a test that
/// stops it: the shared one must stay up for the others.
pub struct Private {
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The script's options after the port (TLS), at every start.
    options: Vec<String>,
}

fn script(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("bash")
        .arg(super::root().join("tests/postgres.sh"))
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Private {
    /// Starts one on a free port; panics with its log when it cannot.
    pub fn start() -> Private {
        Private::start_with(Vec::new())
    }

    /// One with `ssl = on` and the server certificate of `ca` (SAN
    /// `IP:127.0.0.1`, `DNS:localhost`). `client_certs`: TCP connections
    /// only over TLS and with a client certificate `ca` signed.
    pub fn start_tls(ca: &super::TestCa, client_certs: bool) -> Private {
        let mut options = vec!["--tls".to_string(), ca.cert.display().to_string(), ca.key.display().to_string()];
        if client_certs {
            options.extend(["--client-ca".to_string(), ca.ca.display().to_string()]);
        }
        Private::start_with(options)
    }

    fn start_with(options: Vec<String>) -> Private {
        let dir = tempfile::tempdir().unwrap();
        // The server may run as `postgres` (when the tests run as root): it
        // must reach its directory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = super::free_port();
        let p = Private { dir, port, options };
        p.up();
        p
    }

    fn path(&self) -> String {
        self.dir.path().join("pg").display().to_string()
    }

    /// Starts it (again), on the same port and data.
    pub fn up(&self) {
        let (path, port) = (self.path(), self.port.to_string());
        let mut args = vec!["start", &path, &port];
        args.extend(self.options.iter().map(String::as_str));
        script(&args).unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
    }

    /// Stops it (fast shutdown: sessions are cut).
    pub fn down(&self) {
        script(&["stop", &self.path()]).unwrap_or_else(|e| panic!("cannot stop PostgreSQL: {e}"));
    }

    /// The URL of its database `test`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/test", self.port)
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let _ = script(&["stop", &self.path()]);
    }
}
