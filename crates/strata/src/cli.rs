//! The command line (CONTRACT §9): `serve` and the operator commands, which work on the same
//! database as the server without going through HTTP.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use serde_json::json;
use strata_core::Strata;
use strata_core::apikey::{Env, Tier};
use strata_core::clock::SystemClock;
use strata_core::credits::GrantKind;
use strata_core::error::CoreError;
use strata_core::id::OrgId;
use strata_core::scope::Scopes;
use strata_core::service::{CoreConfig, NewPartner};
use strata_store::Backend;
use strata_workers::Cadence;

use crate::OpenOptions;

#[derive(Parser, Debug)]
#[command(name = "strata", version, about = "The Layers Partner API control plane")]
pub struct Cli {
    /// Directory of the embedded SQLite database (the default backend).
    #[arg(long, global = true, env = "STRATA_DATA_DIR", default_value = "./strata-data")]
    pub data_dir: PathBuf,
    /// A postgres:// URL; when set, strata runs on PostgreSQL instead of SQLite.
    #[arg(long, global = true, env = "STRATA_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The server secret (64 hex characters) that seals cursors and secrets stored at rest.
    /// Required on PostgreSQL (here or in --secret-key-file); `strata secret generate` makes one.
    #[arg(long, global = true, env = "STRATA_SECRET_KEY", hide_env_values = true, conflicts_with = "secret_key_file")]
    pub secret_key: Option<String>,
    /// A file holding the server secret (64 hex characters), instead of STRATA_SECRET_KEY.
    #[arg(long, global = true, env = "STRATA_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// During a rotation, the previous server secret: it still opens what it sealed, and
    /// `strata secret rotate` re-seals that under the current one.
    #[arg(long, global = true, env = "STRATA_PREVIOUS_SECRET_KEY", hide_env_values = true, conflicts_with = "previous_secret_key_file")]
    pub previous_secret_key: Option<String>,
    /// A file holding the previous server secret, instead of STRATA_PREVIOUS_SECRET_KEY.
    #[arg(long, global = true, env = "STRATA_PREVIOUS_SECRET_KEY_FILE")]
    pub previous_secret_key_file: Option<PathBuf>,
    /// The webhook retry ladder, e.g. `0s,30s,1m,5m,15m,1h,6h,24h` (the default).
    #[arg(long, global = true, env = "STRATA_WEBHOOK_RETRY_SCHEDULE")]
    pub webhook_retry_schedule: Option<String>,
    /// Allow webhook URLs on private networks (10/8, 192.168/16, …).
    #[arg(long, global = true, env = "STRATA_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Rate limits by tier, as JSON overriding the contract's defaults, e.g.
    /// `{"standard": {"readsPerMinute": 240, "writesPerMinute": 120, "longRunningPerMinute": 20,
    /// "dailyWrites": 20000, "concurrentJobs": 10}}` (a tier is given whole; absent = unlimited).
    #[arg(long, global = true, env = "STRATA_TIER_LIMITS")]
    pub tier_limits: Option<String>,
    /// How long the built-in content engine takes per job, in seconds.
    #[arg(long, global = true, env = "STRATA_ENGINE_JOB_SECONDS", default_value_t = 5.0)]
    pub engine_job_seconds: f64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the API (and run the background workers).
    Serve(ServeArgs),
    /// Partner (root) organizations.
    #[command(subcommand)]
    Partners(PartnersCmd),
    /// Operator credit grants.
    #[command(subcommand)]
    Credits(CreditsCmd),
    /// API keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Organizations.
    #[command(subcommand)]
    Orgs(OrgsCmd),
    /// Check the credit ledger's invariants over the whole database.
    #[command(subcommand)]
    Ledger(LedgerCmd),
    /// Load harness: start a server on a fresh database and drive it over HTTP.
    Bench(crate::bench::BenchArgs),
    /// Drills: start several nodes on a scratch database, drive them, check what must hold.
    #[command(subcommand)]
    Drill(crate::drill::DrillCmd),
    /// The server secret: make one, move one out of a PostgreSQL database, rotate it.
    #[command(subcommand)]
    Secret(SecretCmd),
}

#[derive(Subcommand, Debug)]
pub enum SecretCmd {
    /// Print a new random server secret (64 hex characters); touches no database.
    Generate,
    /// Print, once, the secret that a PostgreSQL database made by older strata holds inside it,
    /// and remove it from the database (`strata secret export > server.key`).
    Export,
    /// Re-seal every value sealed at rest under the current secret (STRATA_SECRET_KEY or
    /// --secret-key-file), opening each with the previous one (STRATA_PREVIOUS_SECRET_KEY or
    /// --previous-secret-key-file).
    Rotate,
}

#[derive(Subcommand, Debug)]
pub enum LedgerCmd {
    /// Verify every wallet against its transfers and conservation of credits.
    Check {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[arg(long, env = "STRATA_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Development mode: allows http://localhost webhook URLs.
    #[arg(long)]
    pub dev: bool,
    /// `redis://host:port[/db]`: keep the rate-limit buckets in this Redis, shared by every
    /// node (without it, each process counts on its own).
    #[arg(long, env = "STRATA_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
}

/// Reads a secret from `--secret-key` or the file `--secret-key-file` names (at most one is set).
fn secret_source(hex: &Option<String>, file: &Option<PathBuf>, flag: &str) -> Result<Option<String>, CoreError> {
    match (hex, file) {
        (Some(h), _) => Ok(Some(h.clone())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim().to_owned()))
            .map_err(|e| CoreError::validation(flag, format!("cannot read {}: {e}", path.display()))),
        (None, None) => Ok(None),
    }
}

#[derive(Subcommand, Debug)]
pub enum PartnersCmd {
    /// Create a partner org with an org:admin + * key.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "standard")]
        tier: String,
        /// Credits to grant at creation.
        #[arg(long)]
        credits: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// List partner orgs.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum CreditsCmd {
    /// Grant credits to an org.
    Grant {
        #[arg(long)]
        org: String,
        #[arg(long)]
        credits: i64,
        #[arg(long, default_value = "grant")]
        kind: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Mint a key for any org.
    Create {
        #[arg(long)]
        org: String,
        /// Comma-separated scopes, e.g. `projects:read,content:write`.
        #[arg(long)]
        scopes: String,
        #[arg(long, default_value = "operator")]
        name: String,
        #[arg(long, default_value = "standard")]
        tier: String,
        #[arg(long, default_value = "live")]
        env: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a key's rate-limit tier.
    Tier {
        #[arg(long)]
        key: String,
        #[arg(long)]
        tier: String,
    },
    /// Lift a key's kill switch.
    Unkill {
        #[arg(long)]
        key: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum OrgsCmd {
    /// Revoke or restore an org's API access.
    Access {
        #[arg(long)]
        org: String,
        #[arg(long, conflicts_with = "restore", required_unless_present = "restore")]
        revoke: bool,
        #[arg(long)]
        restore: bool,
    },
}

impl Cli {
    /// What `open` needs, from the flags; an unreadable secret file is a validation error.
    pub fn open_options(&self) -> Result<OpenOptions, CoreError> {
        let backend = match &self.database_url {
            Some(url) => Backend::Postgres { url: url.clone() },
            None => Backend::Sqlite { dir: self.data_dir.clone() },
        };
        let mut core = CoreConfig {
            job_duration_ms: (self.engine_job_seconds.max(0.0) * 1000.0) as i64,
            allow_private_webhooks: self.webhook_allow_private,
            dev_mode: matches!(&self.command, Command::Serve(a) if a.dev),
            ..CoreConfig::default()
        };
        if let Some(ladder) = self.webhook_retry_schedule.as_deref().and_then(strata_core::webhook::parse_ladder) {
            core.retry_ladder_ms = ladder;
        }
        Ok(OpenOptions {
            backend,
            secret_hex: secret_source(&self.secret_key, &self.secret_key_file, "--secret-key-file")?,
            previous_secret_hex: secret_source(&self.previous_secret_key, &self.previous_secret_key_file, "--previous-secret-key-file")?,
            core,
        })
    }
}

/// Writes one line of command output to stdout.
fn out(line: impl std::fmt::Display) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
}

fn parse_tier(s: &str) -> Result<Tier, CoreError> {
    Tier::parse(s).ok_or_else(|| CoreError::validation("tier", "must be sandbox, standard, pilot, partner or internal"))
}

/// Runs the command; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    if cli.webhook_retry_schedule.as_deref().is_some_and(|s| strata_core::webhook::parse_ladder(s).is_none()) {
        eprintln_error(&CoreError::validation("STRATA_WEBHOOK_RETRY_SCHEDULE", "must be a comma-separated list like 0s,30s,1m,5m"));
        return 2;
    }
    let mut opts = match cli.open_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln_error(&e);
            return 2;
        }
    };
    if let Some(json) = &cli.tier_limits {
        match opts.core.tier_limits.clone().with_overrides(json) {
            Ok(t) => opts.core.tier_limits = t,
            Err(e) => {
                eprintln_error(&CoreError::validation("STRATA_TIER_LIMITS", e));
                return 2;
            }
        }
    }
    if let Command::Bench(args) = cli.command {
        // The harness uses a fresh database: a temporary SQLite directory unless a URL is given.
        let temp_sqlite = cli.database_url.is_none();
        return match crate::bench::run(&opts, temp_sqlite, args).await {
            Ok(line) => {
                out(line);
                0
            }
            Err(e) => {
                eprintln_error(&e);
                1
            }
        };
    }
    if let Command::Drill(cmd) = cli.command {
        // The drill makes its own database, Redis and nodes; it opens nothing here.
        return crate::drill::run(cmd).await;
    }
    match cli.command {
        Command::Secret(SecretCmd::Generate) => {
            out(strata_core::cursor::ServerSecret::generate().to_hex());
            return 0;
        }
        Command::Secret(SecretCmd::Export) => {
            return match export_secret(&opts).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln_error(&e);
                    1
                }
            };
        }
        _ => {}
    }
    let strata = match crate::open(&opts, Arc::new(SystemClock)).await {
        Ok(s) => s,
        Err(e) => {
            // A refusal to start (no secret, …) is one clear line; a failure is also logged.
            if matches!(e, CoreError::Internal(_)) {
                tracing::error!(error = %e, "cannot open the database");
            }
            eprintln_error(&e);
            return 1;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => serve(strata, args).await,
        Command::Partners(cmd) => partners(strata, cmd).await,
        Command::Credits(CreditsCmd::Grant { org, credits, kind, json }) => grant(strata, &org, credits, &kind, json).await,
        Command::Keys(cmd) => keys(strata, cmd).await,
        Command::Orgs(OrgsCmd::Access { org, revoke, .. }) => access(strata, &org, revoke).await,
        Command::Ledger(LedgerCmd::Check { json }) => ledger_check(strata, json).await,
        Command::Secret(_) => rotate_secret(strata).await,
        Command::Bench(_) | Command::Drill(_) => Ok(()),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln_error(&e);
            1
        }
    }
}

/// `strata secret export`: prints the secret a PostgreSQL database holds inside it, then removes
/// it from the database, only once the line is written (so it is never lost).
async fn export_secret(opts: &OpenOptions) -> Result<(), CoreError> {
    if let Backend::Sqlite { dir } = &opts.backend {
        return Err(CoreError::validation(
            "secret",
            format!(
                "SQLite keeps its server secret in {}, outside the database: there is nothing to export",
                dir.join("server.key").display()
            ),
        ));
    }
    let store = strata_store::SqlStore::connect(&opts.backend).await?.into_port();
    let mut tx = store.write().await?;
    let Some(hex) = tx.setting(crate::LEGACY_SECRET_SETTING).await? else {
        return Err(CoreError::validation("secret", "this database holds no server secret: there is nothing to export"));
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", hex.trim())
        .and_then(|()| stdout.flush())
        .map_err(|e| CoreError::internal(format!("cannot write the secret, so it stays in the database: {e}")))?;
    drop(stdout);
    tx.setting_remove(crate::LEGACY_SECRET_SETTING, &hex).await?;
    tx.commit().await?;
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(
        stderr,
        "the server secret is no longer in the database; give it to every node with --secret-key-file or STRATA_SECRET_KEY"
    );
    Ok(())
}

/// `strata secret rotate`: re-seals every sealed value under the current secret.
async fn rotate_secret(strata: Strata) -> Result<(), CoreError> {
    let r = strata.reseal_all().await?;
    out(format!(
        "re-sealed {} values under the new secret ({} already were, {} changed meanwhile, {} opened with neither secret)",
        r.resealed, r.already_current, r.changed_meanwhile, r.unreadable
    ));
    if r.unreadable > 0 {
        return Err(CoreError::internal(format!("{} sealed values open with neither secret; they were left as they are", r.unreadable)));
    }
    Ok(())
}

fn eprintln_error(e: &CoreError) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {e}");
}

async fn serve(strata: Strata, args: ServeArgs) -> Result<(), CoreError> {
    if args.dev {
        out("dev mode: http://localhost and loopback webhook URLs are allowed");
    }
    let strata = match &args.redis_url {
        Some(url) => {
            let limiter = strata_redis::RedisLimiter::new(url)?;
            if !limiter.ping().await {
                tracing::warn!("Redis does not answer yet: requests proceed without rate limits until it does");
            }
            out("rate limits: shared through Redis");
            strata.with_limiter(Arc::new(limiter))
        }
        None => strata,
    };
    if let Some(created) = strata.bootstrap("My Partner Org").await? {
        out(format!("provisioned partner org: {}", created.org.id));
        out(format!("admin key: {}", created.secret.expose()));
        out("(shown once; store it now)");
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| CoreError::internal(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr().map_err(|e| CoreError::internal(e.to_string()))?;
    out(format!("strata listening on http://{addr} ({})", strata.store.backend()));
    tracing::info!(%addr, backend = strata.store.backend(), "listening");
    crate::serve(strata, listener, Cadence::default(), shutdown_signal()).await.map_err(|e| CoreError::internal(e.to_string()))
}

async fn shutdown_signal() {
    terminated().await;
    tracing::info!("shutting down");
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn terminated() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

async fn partners(strata: Strata, cmd: PartnersCmd) -> Result<(), CoreError> {
    match cmd {
        PartnersCmd::Create { name, tier, credits, json } => {
            if credits.is_some_and(|c| c < 0) {
                return Err(CoreError::validation("credits", "must not be negative"));
            }
            let name = strata_core::org::parse_name(&name, "name", 128)?;
            let created = strata.create_partner(NewPartner { name, tier: parse_tier(&tier)? }).await?;
            if let Some(c) = credits.filter(|c| *c > 0) {
                strata.grant_credits(created.org.id, c, GrantKind::Grant).await?;
            }
            if json {
                out(json!({ "organizationId": created.org.id, "apiKey": created.secret.expose() }));
            } else {
                out(format!("partner org: {}", created.org.id));
                out(format!("admin key: {}", created.secret.expose()));
            }
        }
        PartnersCmd::List { json } => {
            let orgs = strata.list_partners().await?;
            if json {
                let items: Vec<_> = orgs.iter().map(strata_core::wire::OrgView::from).collect();
                out(serde_json::to_string(&items).unwrap_or_default());
            } else {
                for o in orgs {
                    out(format!("{}  {:<10} {}", o.id, o.status.as_str(), o.name));
                }
            }
        }
    }
    Ok(())
}

async fn keys(strata: Strata, cmd: KeysCmd) -> Result<(), CoreError> {
    match cmd {
        KeysCmd::Create { org, scopes, name, tier, env, json } => {
            let org = OrgId::parse_field(&org, "org")?;
            let list: Vec<String> = scopes.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
            let scopes = Scopes::parse_request(&list, "scopes")?;
            let env = Env::parse(&env).ok_or_else(|| CoreError::validation("env", "must be live or test"))?;
            let name = strata_core::org::parse_name(&name, "name", 120)?;
            let (key, secret) = strata.operator_create_key(org, name, scopes, parse_tier(&tier)?, env).await?;
            if json {
                out(json!({ "apiKeyId": key.id, "organizationId": key.org_id, "apiKey": secret.expose() }));
            } else {
                out(format!("key: {} ({})", key.id, key.prefix()));
                out(format!("api key: {}", secret.expose()));
            }
        }
        KeysCmd::Tier { key, tier } => {
            let k = strata.set_key_tier(&key, parse_tier(&tier)?).await?;
            out(format!("{} tier is now {}", k.id, k.tier.as_str()));
        }
        KeysCmd::Unkill { key } => {
            let k = strata.unkill_key(&key).await?;
            out(format!("{} is no longer killed", k.id));
        }
    }
    Ok(())
}

async fn access(strata: Strata, org: &str, revoke: bool) -> Result<(), CoreError> {
    let org = strata.set_org_access(OrgId::parse_field(org, "org")?, revoke).await?;
    out(format!("{} API access {}", org.id, if org.access_revoked { "revoked" } else { "restored" }));
    Ok(())
}

async fn grant(strata: Strata, org: &str, credits: i64, kind: &str, json: bool) -> Result<(), CoreError> {
    let org = OrgId::parse_field(org, "org")?;
    let kind = GrantKind::parse(kind).ok_or_else(|| CoreError::validation("kind", "must be grant, purchase or included"))?;
    let (txn, w) = strata.grant_credits(org, credits, kind).await?;
    if json {
        out(json!({ "transferId": txn, "organizationId": org, "balance": w.balance(), "available": w.available(),
                    "prepaidBalance": w.prepaid_balance, "includedRemaining": w.included_remaining }));
    } else {
        out(format!("{txn}: {org} balance {} (available {})", w.balance(), w.available()));
    }
    Ok(())
}

async fn ledger_check(strata: Strata, json: bool) -> Result<(), CoreError> {
    let r = strata.check_ledger().await?;
    if json {
        out(json!({ "ok": r.violations.is_empty(), "wallets": r.wallets, "transfers": r.transfers, "created": r.created,
                    "destroyed": r.destroyed, "held": r.held, "violations": r.violations }));
    } else {
        out(format!("{} wallets, {} transfers; created {}, destroyed {}, held {}", r.wallets, r.transfers, r.created, r.destroyed, r.held));
        for v in &r.violations {
            out(format!("VIOLATION: {v}"));
        }
    }
    if r.violations.is_empty() { Ok(()) } else { Err(CoreError::internal("ledger invariants are broken")) }
}
