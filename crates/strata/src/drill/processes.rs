//! The drills' processes and database: a scratch database (a fresh PostgreSQL database, or a
//! SQLite data directory), a `redis-server` of its own on a free port, and `strata serve`
//! processes started from the strata binary. Every child is spawned with `kill_on_drop`, so a
//! drill that fails or is interrupted leaves none behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Executor, PgConnection};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A drill failure that stops it: a plain sentence saying what could not be done.
pub type Fail = String;

/// How long a process may take to start before the drill gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The drill's own database, `strata_drill_<ulid>`, next to the one a base URL names.
pub struct Database {
    /// The base URL (an existing database to connect to for CREATE / DROP).
    base: String,
    pub name: String,
    /// The URL of the drill's database.
    pub url: String,
}

impl Database {
    /// Creates a fresh empty database beside `base` (e.g.
    /// `postgres://postgres@127.0.0.1:5432/postgres`). Errors if PostgreSQL refuses.
    pub async fn create(base: &str) -> Result<Self, Fail> {
        let name = format!("strata_drill_{}", ulid::Ulid::new().to_string().to_lowercase());
        let mut conn = connect(base).await.map_err(|e| format!("cannot connect to PostgreSQL at {}: {e}", redact(base)))?;
        conn.execute(format!("CREATE DATABASE {name}").as_str()).await.map_err(|e| format!("cannot create database {name}: {e}"))?;
        // postgres://user@host:port[/db][?query]: the same server, the drill's database.
        let (head, query) = base.split_once('?').map_or((base, String::new()), |(h, q)| (h, format!("?{q}")));
        let authority_end = head.find("://").map_or(0, |i| i + 3);
        let root = head[authority_end..].find('/').map_or(head, |i| &head[..authority_end + i]);
        Ok(Self { base: base.to_owned(), url: format!("{root}/{name}{query}"), name })
    }

    /// Drops the database, closing any connection still open to it.
    pub async fn drop_now(&self) -> Result<(), Fail> {
        let mut conn = connect(&self.base).await.map_err(|e| format!("cannot connect to drop {}: {e}", self.name))?;
        conn.execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
            .await
            .map_err(|e| format!("cannot drop database {}: {e}", self.name))?;
        Ok(())
    }

    /// A connection to the drill's database, for the checks.
    pub async fn connect(&self) -> Result<PgConnection, Fail> {
        connect(&self.url).await.map_err(|e| format!("cannot connect to {}: {e}", self.name))
    }
}

/// Connects without logging statements (a slow DROP DATABASE is expected, not news).
async fn connect(url: &str) -> Result<PgConnection, sqlx::Error> {
    url.parse::<PgConnectOptions>()?.disable_statement_logging().connect().await
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => match rest.split_once('@').map(|(user, host)| (user.split_once(':'), host)) {
            Some((Some((user, _)), host)) => format!("{scheme}://{user}:***@{host}"),
            _ => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// The drill's scratch database, of either backend.
pub enum Scratch {
    Postgres(Database),
    /// A SQLite data directory inside the drill's own directory (removed with it).
    Sqlite(PathBuf),
}

impl Scratch {
    /// A fresh PostgreSQL database beside `postgres` (when `backend` is postgres), or a new SQLite
    /// data directory under `dir`.
    pub async fn create(backend: Backend, postgres: &str, dir: &Path) -> Result<Self, Fail> {
        match backend {
            Backend::Postgres => Database::create(postgres).await.map(Scratch::Postgres),
            Backend::Sqlite => {
                let data = dir.join("data");
                std::fs::create_dir_all(&data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
                Ok(Scratch::Sqlite(data))
            }
        }
    }

    /// What `strata` is told to open.
    pub fn store(&self) -> StoreArg {
        match self {
            Scratch::Postgres(db) => StoreArg::Postgres(db.url.clone()),
            Scratch::Sqlite(dir) => StoreArg::Sqlite(dir.clone()),
        }
    }

    /// The database's name (PostgreSQL) or directory (SQLite), for messages.
    pub fn name(&self) -> String {
        match self {
            Scratch::Postgres(db) => db.name.clone(),
            Scratch::Sqlite(dir) => dir.join("strata.db").display().to_string(),
        }
    }

    /// A connection for the checks (read-only on SQLite, beside the server's writer).
    pub async fn connect(&self) -> Result<super::db::Db, Fail> {
        match self {
            Scratch::Postgres(db) => db.connect().await.map(super::db::Db::Pg),
            Scratch::Sqlite(dir) => super::db::Db::sqlite(&dir.join("strata.db")).await,
        }
    }

    /// Drops the PostgreSQL database or removes the SQLite directory.
    pub async fn drop_now(&self) -> Result<(), Fail> {
        match self {
            Scratch::Postgres(db) => db.drop_now().await,
            Scratch::Sqlite(dir) => std::fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display())),
        }
    }
}

/// The two backends a drill can run on.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database a strata process opens.
#[derive(Clone, Debug)]
pub enum StoreArg {
    Postgres(String),
    Sqlite(PathBuf),
}

/// A free TCP port on 127.0.0.1 (bound and released at once).
pub fn free_port() -> Result<u16, Fail> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// The drill's `redis-server`: no persistence, loopback only, in the drill's directory.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl Redis {
    /// Starts `redis-server` on a free port and waits (at most 30 s) until it accepts.
    pub async fn start(dir: &Path) -> Result<Self, Fail> {
        let mut redis = Redis { child: None, port: free_port()?, dir: dir.to_owned() };
        redis.restart().await?;
        Ok(redis)
    }

    /// Starts it (again) on its port, empty, and waits (at most 30 s) until it accepts.
    pub async fn restart(&mut self) -> Result<(), Fail> {
        let port = self.port;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start redis-server (is it installed?): {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if Instant::now() > deadline {
                return Err(format!("redis-server did not accept connections on port {port} within 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Kills the drill's own `redis-server` (by its process handle) and waits for it to exit.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// How every server and operator command is started: the binary, the database and the secret.
#[derive(Clone)]
pub struct Launcher {
    pub bin: PathBuf,
    pub store: StoreArg,
    pub secret_hex: String,
    pub dir: PathBuf,
}

impl Launcher {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        match &self.store {
            StoreArg::Postgres(url) => c.env("STRATA_DATABASE_URL", url).env_remove("STRATA_DATA_DIR"),
            StoreArg::Sqlite(dir) => c.env("STRATA_DATA_DIR", dir).env_remove("STRATA_DATABASE_URL"),
        };
        c.env("STRATA_SECRET_KEY", &self.secret_hex)
            .env_remove("STRATA_REDIS_URL")
            .env_remove("STRATA_TIER_LIMITS")
            .env_remove("STRATA_SECRET_KEY_FILE")
            .kill_on_drop(true);
        c
    }

    /// Runs an operator command (`partners create …`) and returns its stdout; a non-zero exit
    /// is an error carrying its stderr.
    pub async fn operator(&self, args: &[&str]) -> Result<String, Fail> {
        let out = self
            .command()
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        if !out.status.success() {
            return Err(format!("`strata {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts `strata serve` on a port the node picks, in dev mode, sharing `redis_url`, with
    /// jobs of `job_seconds` and a short webhook retry ladder. Logs go to `node<n>.log`.
    pub async fn node(&self, n: usize, redis_url: &str, job_seconds: f64) -> Result<Node, Fail> {
        let settings = ["--engine-job-seconds".to_owned(), job_seconds.to_string()];
        self.serve(n, "127.0.0.1:0", &settings, &["--redis-url", redis_url]).await
    }

    /// Starts `strata <settings> serve --dev --listen <listen> <serve_args>` with a short webhook
    /// retry ladder and waits (at most 30 s) until it listens. Logs go to `node<n>.log`, appended
    /// (a restarted server keeps one log).
    pub async fn serve(&self, n: usize, listen: &str, settings: &[String], serve_args: &[&str]) -> Result<Node, Fail> {
        let log_path = self.dir.join(format!("node{n}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let mut child = self
            .command()
            .args(["--webhook-retry-schedule", "0s,1s,1s,2s,3s,5s,5s,5s"])
            .args(settings)
            .args(["serve", "--listen", listen, "--dev"])
            .args(serve_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start node {n} ({}): {e}", self.bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut printed = Vec::new();
        let started = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("strata listening on ") {
                    let base = rest.split_whitespace().next().unwrap_or_default().to_owned();
                    return Some(base);
                }
                printed.push(line);
            }
            None
        };
        let base = match tokio::time::timeout(START_TIMEOUT, started).await {
            Ok(Some(base)) => base,
            Ok(None) => return Err(format!("node {n} exited before listening; its log:\n{}", tail(&log_path))),
            Err(_) => return Err(format!("node {n} did not listen within 30 s; its log:\n{}", tail(&log_path))),
        };
        // Keep draining stdout so the node never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let provisioned = printed.iter().any(|l| l.starts_with("provisioned partner org"));
        Ok(Node { n, base, child, log_path, provisioned })
    }
}

/// The last lines of a log file, for an error message.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// One running `strata serve`.
pub struct Node {
    pub n: usize,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    child: Child,
    pub log_path: PathBuf,
    /// Whether this node provisioned a first partner at start (it found an empty database).
    pub provisioned: bool,
}

impl Node {
    /// Stops the node: SIGTERM (a graceful drain) by its process id, then SIGKILL after 10 s.
    /// Returns whether it exited by itself, successfully.
    pub async fn stop(mut self) -> bool {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        }
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => {
                let _ = self.child.kill().await;
                false
            }
        }
    }

    /// `kill -9`: SIGKILL by its process handle, then waits for it to be gone.
    pub async fn kill9(mut self) {
        let _ = self.child.kill().await;
    }

    /// Whether the process has exited (crashed) while it should be serving.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}
