//! The operator's commands on partners, orgs, keys, credits and the audit log (CONTRACT §9).
//! Each works on the database directly (no HTTP), prints one line per item (or one JSON document
//! with `--json`), and exits non-zero with one line on stderr when it cannot do what was asked.

use clap::Subcommand;
use serde_json::{Value, json};
use strata_core::Strata;
use strata_core::apikey::{Env, Tier};
use strata_core::audit::AuditFilter;
use strata_core::clock::Timestamp;
use strata_core::credits::{CREDIT_EVENT_TYPES, CreditEventFilter, GrantKind};
use strata_core::error::CoreError;
use strata_core::id::{ApiKeyId, OrgId};
use strata_core::org::OrgStatus;
use strata_core::scope::Scopes;
use strata_core::service::{CreditEventView, NewPartner, credits_view};
use strata_core::wire::{AuditView, KeyView, OrgView};

use super::out;

#[derive(Subcommand, Debug)]
pub enum PartnersCmd {
    /// Create a partner org with an org:admin + * key (printed once).
    Create {
        /// 1–128 characters.
        #[arg(long)]
        name: String,
        /// Rate-limit tier of its admin key: sandbox, standard, pilot, partner or internal.
        #[arg(long, default_value = "standard")]
        tier: String,
        /// Credits to grant at creation (prepaid).
        #[arg(long)]
        credits: Option<i64>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List partner orgs, newest first.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show a partner org: status, access, wallet and number of children.
    Show {
        /// The partner's org id (`org_…` or bare UUID).
        #[arg(long)]
        org: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Rename a partner org (a child is renamed by its partner through the API).
    Rename {
        /// The org (`org_…` or the bare UUID).
        #[arg(long)]
        org: String,
        /// The new name, 1–128 characters.
        #[arg(long)]
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum CreditsCmd {
    /// Grant credits to an org from an operator account.
    Grant {
        /// The org (`org_…` or the bare UUID).
        #[arg(long)]
        org: String,
        /// A positive number of credits.
        #[arg(long)]
        credits: i64,
        /// grant or purchase (into prepaid), or included (this period's included credits).
        #[arg(long, default_value = "grant")]
        kind: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// An org's wallet: balance, available, buckets, this period's usage.
    Balance {
        /// The org (`org_…` or the bare UUID).
        #[arg(long)]
        org: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// An org's credit ledger, newest first.
    History {
        /// The org (`org_…` or the bare UUID).
        #[arg(long)]
        org: String,
        /// Only these kinds (repeat for any of several): usage, refund, grant, purchase,
        /// adjustment or allocation.
        #[arg(long)]
        event_type: Vec<String>,
        /// How many entries, 1–1000.
        #[arg(long, default_value_t = 25)]
        limit: u32,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A signed correction against the operator:adjustments account, with a required reason.
    ///
    /// Positive credits go into the prepaid bucket; negative ones come out of prepaid, then
    /// included, and never take the wallet's available below zero.
    Adjust {
        /// The org (`org_…` or the bare UUID).
        #[arg(long)]
        org: String,
        /// Credits to add (e.g. 500) or take away (e.g. -500); never 0.
        #[arg(long, allow_hyphen_values = true)]
        credits: i64,
        /// Why, 1–500 characters (kept on the ledger and in the audit log).
        #[arg(long)]
        reason: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Mint a key for any org (the secret is printed once).
    Create {
        /// The org (`org_…` or the bare UUID).
        #[arg(long)]
        org: String,
        /// Comma-separated scopes, e.g. `projects:read,content:write` (`org:admin` only for a
        /// partner org).
        #[arg(long)]
        scopes: String,
        /// 1–120 characters.
        #[arg(long, default_value = "operator")]
        name: String,
        /// sandbox, standard, pilot, partner or internal.
        #[arg(long, default_value = "standard")]
        tier: String,
        /// live or test.
        #[arg(long, default_value = "live")]
        env: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List an org's keys, newest first (never a secret).
    List {
        /// The org (`org_…` or the bare UUID).
        #[arg(long)]
        org: String,
        /// How many keys, 1–1000.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show one key, by id (`key_…`) or public prefix (`lp_live_…`).
    Show {
        /// The key (`key_…` or the bare UUID).
        #[arg(long)]
        key: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Change a key's rate-limit tier (sandbox, standard, pilot, partner or internal).
    Tier {
        /// The key (`key_…` or the bare UUID).
        #[arg(long)]
        key: String,
        /// The new rate-limit tier: sandbox, standard, pilot, partner or internal.
        #[arg(long)]
        tier: String,
    },
    /// Kill a key: its next request answers 503 KILL_SWITCH until `keys unkill`.
    Kill {
        /// The key (`key_…` or the bare UUID).
        #[arg(long)]
        key: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Lift a key's kill switch.
    Unkill {
        /// The key (`key_…` or the bare UUID).
        #[arg(long)]
        key: String,
    },
    /// Revoke a key for good: its next request is 401.
    Revoke {
        /// The key (`key_…` or the bare UUID).
        #[arg(long)]
        key: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum OrgsCmd {
    /// Revoke or restore an org's API access (a partner's revocation holds for its children).
    Access {
        /// The org (`org_…` or the bare UUID).
        #[arg(long)]
        org: String,
        /// Revoke the org's API access: every key of it answers 503 KILL_SWITCH until restored.
        #[arg(long, conflicts_with = "restore", required_unless_present = "restore")]
        revoke: bool,
        /// Restore the org's API access.
        #[arg(long)]
        restore: bool,
    },
    /// List orgs, newest first: every partner org, or with --parent that partner's children.
    List {
        /// List this partner org's children (`org_…`); without it, the partner orgs.
        #[arg(long)]
        parent: Option<String>,
        /// active, suspended or archived.
        #[arg(long)]
        status: Option<String>,
        /// How many orgs, 1–1000.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show any org: status, access, wallet and number of children.
    Show {
        /// The org (`org_…` or the bare UUID).
        #[arg(long)]
        org: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `strata audit`: an org's audit log with the API's filters.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// The org whose log to read.
    #[arg(long)]
    pub org: String,
    /// Only entries of this type, e.g. `api_key.revoked`, `credits.adjusted`, `auth.rejected`
    /// (repeat for any of several).
    #[arg(long)]
    pub event_type: Vec<String>,
    /// Only entries stamped with this key (`key_…`).
    #[arg(long)]
    pub api_key_id: Option<String>,
    /// RFC 3339 UTC, ending in Z.
    #[arg(long)]
    pub since: Option<String>,
    /// RFC 3339 UTC, ending in Z.
    #[arg(long)]
    pub until: Option<String>,
    /// How many entries, 1–1000.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_tier(s: &str) -> Result<Tier, CoreError> {
    Tier::parse(s).ok_or_else(|| CoreError::validation("tier", "must be sandbox, standard, pilot, partner or internal"))
}

fn org_arg(raw: &str, flag: &str) -> Result<OrgId, CoreError> {
    OrgId::parse_field(raw.trim(), flag)
}

fn limit_arg(limit: u32) -> Result<u32, CoreError> {
    if (1..=strata_core::service::OPERATOR_LIST_MAX).contains(&limit) {
        Ok(limit)
    } else {
        Err(CoreError::out_of_range("limit", 1, i64::from(strata_core::service::OPERATOR_LIST_MAX)))
    }
}

fn print_json(v: &impl serde::Serialize) {
    out(serde_json::to_string_pretty(v).unwrap_or_default());
}

/// One org, with its wallet and children, as `orgs show` and `partners show` print it.
async fn show_org(strata: &Strata, org: OrgId, json: bool) -> Result<(), CoreError> {
    let d = strata.operator_org(org).await?;
    if json {
        let mut v = serde_json::to_value(OrgView::from(&d.org)).unwrap_or(Value::Null);
        v["apiAccessRevoked"] = json!(d.org.access_revoked);
        v["children"] = json!(d.children);
        v["credits"] = serde_json::to_value(credits_view(&d.wallet)).unwrap_or(Value::Null);
        print_json(&v);
    } else {
        let o = &d.org;
        out(format!("{}  {}", o.id, o.name));
        out(format!("  parent:   {}", o.parent_id.map_or("(partner)".to_owned(), |p| p.to_string())));
        out(format!("  status:   {}{}", o.status.as_str(), if o.access_revoked { ", API access revoked" } else { "" }));
        out(format!("  children: {}", d.children));
        out(format!("  credits:  {}", wallet_summary(&d.wallet)));
        out(format!("  created:  {}", o.created_at));
    }
    Ok(())
}

/// A wallet on one line: balance, available, its buckets and this period's usage.
fn wallet_summary(w: &strata_core::credits::Wallet) -> String {
    format!(
        "balance {} (available {}; prepaid {}, included {}, reserved {}); used this period {}",
        w.balance(),
        w.available(),
        w.prepaid_balance,
        w.included_remaining,
        w.reserved,
        w.used_this_period
    )
}

fn key_line(k: &KeyView) -> String {
    format!(
        "{}  {}  {:<8} {:<8} tier {:<8} {}  {}",
        k.id,
        k.prefix,
        k.status,
        if k.kill_switch { "KILLED" } else { "-" },
        k.rate_limit_tier,
        k.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
        k.name
    )
}

fn print_key(k: &KeyView, json: bool) {
    if json { print_json(k) } else { out(key_line(k)) }
}

pub async fn partners(strata: Strata, cmd: PartnersCmd) -> Result<(), CoreError> {
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
                let items: Vec<_> = orgs.iter().map(OrgView::from).collect();
                out(serde_json::to_string(&items).unwrap_or_default());
            } else {
                for o in orgs {
                    out(format!("{}  {:<10} {}", o.id, o.status.as_str(), o.name));
                }
            }
        }
        PartnersCmd::Show { org, json } => {
            let id = org_arg(&org, "org")?;
            if strata.operator_org(id).await?.org.parent_id.is_some() {
                return Err(CoreError::validation("org", "is a child organization; use `strata orgs show`"));
            }
            show_org(&strata, id, json).await?;
        }
        PartnersCmd::Rename { org, name, json } => {
            let name = strata_core::org::parse_name(&name, "name", 128)?;
            let o = strata.rename_partner(org_arg(&org, "org")?, name).await?;
            if json {
                print_json(&OrgView::from(&o));
            } else {
                out(format!("{} is now named {}", o.id, o.name));
            }
        }
    }
    Ok(())
}

pub async fn orgs(strata: Strata, cmd: OrgsCmd) -> Result<(), CoreError> {
    match cmd {
        OrgsCmd::Access { org, revoke, .. } => {
            let org = strata.set_org_access(org_arg(&org, "org")?, revoke).await?;
            out(format!("{} API access {}", org.id, if org.access_revoked { "revoked" } else { "restored" }));
        }
        OrgsCmd::List { parent, status, limit, json } => {
            let parent = parent.as_deref().map(|p| org_arg(p, "parent")).transpose()?;
            let status = status
                .as_deref()
                .map(|s| OrgStatus::parse(s).ok_or_else(|| CoreError::validation("status", "must be active, suspended or archived")))
                .transpose()?;
            let orgs = strata.operator_orgs(parent, status, limit_arg(limit)?).await?;
            if json {
                print_json(&orgs.iter().map(OrgView::from).collect::<Vec<_>>());
            } else {
                for o in orgs {
                    let access = if o.access_revoked { "  (API access revoked)" } else { "" };
                    out(format!("{}  {:<10} {}{access}", o.id, o.status.as_str(), o.name));
                }
            }
        }
        OrgsCmd::Show { org, json } => show_org(&strata, org_arg(&org, "org")?, json).await?,
    }
    Ok(())
}

pub async fn keys(strata: Strata, cmd: KeysCmd) -> Result<(), CoreError> {
    match cmd {
        KeysCmd::Create { org, scopes, name, tier, env, json } => {
            let org = org_arg(&org, "org")?;
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
        KeysCmd::List { org, limit, json } => {
            let keys = strata.operator_keys(org_arg(&org, "org")?, limit_arg(limit)?).await?;
            if json {
                print_json(&keys);
            } else {
                for k in &keys {
                    out(key_line(k));
                }
            }
        }
        KeysCmd::Show { key, json } => print_key(&strata.operator_key(&key).await?, json),
        KeysCmd::Tier { key, tier } => {
            let k = strata.set_key_tier(&key, parse_tier(&tier)?).await?;
            out(format!("{} tier is now {}", k.id, k.tier.as_str()));
        }
        KeysCmd::Kill { key, json } => {
            let k = strata.operator_kill_key(&key).await?;
            if json { print_json(&KeyView::from(&k)) } else { out(format!("{} is killed (lift it with `strata keys unkill`)", k.id)) }
        }
        KeysCmd::Unkill { key } => {
            let k = strata.unkill_key(&key).await?;
            out(format!("{} is no longer killed", k.id));
        }
        KeysCmd::Revoke { key, json } => {
            let k = strata.operator_revoke_key(&key).await?;
            if json { print_json(&KeyView::from(&k)) } else { out(format!("{} is revoked", k.id)) }
        }
    }
    Ok(())
}

pub async fn credits(strata: Strata, cmd: CreditsCmd) -> Result<(), CoreError> {
    match cmd {
        CreditsCmd::Grant { org, credits, kind, json } => {
            let org = org_arg(&org, "org")?;
            let kind = GrantKind::parse(&kind).ok_or_else(|| CoreError::validation("kind", "must be grant, purchase or included"))?;
            let (txn, w) = strata.grant_credits(org, credits, kind).await?;
            if json {
                out(json!({ "transferId": txn, "organizationId": org, "balance": w.balance(), "available": w.available(),
                            "prepaidBalance": w.prepaid_balance, "includedRemaining": w.included_remaining }));
            } else {
                out(format!("{txn}: {org} balance {} (available {})", w.balance(), w.available()));
            }
        }
        CreditsCmd::Balance { org, json } => {
            let w = strata.operator_wallet(org_arg(&org, "org")?).await?;
            if json {
                print_json(&credits_view(&w));
            } else {
                out(format!("{}: {}", w.org_id, wallet_summary(&w)));
            }
        }
        CreditsCmd::History { org, event_type, limit, json } => {
            if event_type.iter().any(|t| !CREDIT_EVENT_TYPES.contains(&t.as_str())) {
                return Err(CoreError::validation("event-type", format!("must be one of {}", CREDIT_EVENT_TYPES.join(", "))));
            }
            let filter = CreditEventFilter { event_types: event_type, ..Default::default() };
            let rows = strata.operator_credit_events(org_arg(&org, "org")?, &filter, limit_arg(limit)?).await?;
            let views: Vec<CreditEventView> = rows.iter().map(CreditEventView::from).collect();
            if json {
                print_json(&views);
            } else {
                for e in &rows {
                    out(format!(
                        "{}  {:<10} {:>+10}  prepaid after {:>8}  {}",
                        e.created_at,
                        e.event_type,
                        e.credits,
                        e.balance_after_prepaid,
                        if e.metadata.is_null() { String::new() } else { e.metadata.to_string() }
                    ));
                }
            }
        }
        CreditsCmd::Adjust { org, credits, reason, json } => {
            let org = org_arg(&org, "org")?;
            let (ids, w) = strata.adjust_credits(org, credits, &reason).await?;
            if json {
                out(json!({ "transferIds": ids, "organizationId": org, "credits": credits, "balance": w.balance(),
                            "available": w.available(), "prepaidBalance": w.prepaid_balance, "includedRemaining": w.included_remaining }));
            } else {
                let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                out(format!("{}: {org} adjusted by {credits:+}; balance {} (available {})", ids.join(", "), w.balance(), w.available()));
            }
        }
    }
    Ok(())
}

pub async fn audit(strata: Strata, a: AuditArgs) -> Result<(), CoreError> {
    let org = org_arg(&a.org, "org")?;
    let filter = AuditFilter {
        event_types: a.event_type,
        project_id: None,
        api_key_id: a.api_key_id.as_deref().map(|k| ApiKeyId::parse_field(k, "api-key-id")).transpose()?,
        since: a.since.as_deref().map(|s| Timestamp::parse_query(s, "since")).transpose()?,
        until: a.until.as_deref().map(|s| Timestamp::parse_query(s, "until")).transpose()?,
    };
    let rows = strata.operator_audit(org, &filter, limit_arg(a.limit)?).await?;
    let views: Vec<AuditView> = rows.iter().map(AuditView::from).collect();
    if a.json {
        print_json(&views);
    } else {
        for v in &views {
            let key = v.api_key_id.map_or("-".to_owned(), |k| k.to_string());
            out(format!("{}  {:<28} {:<12} {key}  {}", v.occurred_at, v.event_type, v.actor, v.data));
        }
    }
    Ok(())
}
