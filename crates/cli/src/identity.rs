//! `helix login`, `whoami`, `tokens`, `members`, `orgs` and `audit`: who
//! is calling, what they may do, and what was done.

use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use helix_core::audit::{AuditEntry, ChainReport};
use helix_core::identity::{AddMember, CreateOrg, CreateToken, CreatedToken, Membership, Org, Role, TokenInfo, WhoAmI};

use crate::{ClientArgs, api, print_json};

#[derive(Args)]
pub struct LoginArgs {
    /// The token (default: read from standard input).
    #[arg(long = "with-token", value_name = "TOKEN", env = "HELIX_LOGIN_TOKEN", hide_env_values = true)]
    with_token: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Make a token; its secret is printed this once.
    Create {
        #[arg(long)]
        name: String,
        /// At most your own (default: your own).
        #[arg(long, value_parser = Role::parse)]
        role: Option<Role>,
        /// Narrow it to one project.
        #[arg(long)]
        project: Option<String>,
        /// It may read but change nothing.
        #[arg(long)]
        read_only: bool,
        /// Lifetime: `30d`, `12h`, `90m`, `3600s` (default: until revoked).
        #[arg(long, value_parser = parse_duration)]
        expires: Option<u64>,
        /// Whose token it is (admins; default: yours).
        #[arg(long)]
        user: Option<String>,
        /// The organisation it acts in (server admin; default: yours).
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Your tokens (an admin sees the organisation's).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop a token working.
    Revoke {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum MembersCommand {
    /// Give a user (made on first use) a role in your organisation, or on one project.
    Add {
        user: String,
        #[arg(long, value_parser = Role::parse)]
        role: Role,
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The organisation's members and their roles.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// End a user's membership (the organisation's, or one project's with --project).
    Remove {
        user: String,
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args)]
pub struct OrgsArgs {
    #[command(subcommand)]
    command: Option<OrgsCommand>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand)]
pub enum OrgsCommand {
    /// A new organisation with its first owner (server admin).
    Create {
        name: String,
        #[arg(long)]
        owner: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: Option<AuditCommand>,
    /// Only this project's entries.
    #[arg(long)]
    project: Option<String>,
    /// Keep printing entries as they are written.
    #[arg(short, long)]
    follow: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain: exit 0 when intact, 1 naming the first bad entry.
    Verify {
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `30d` → seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not a duration like 30d, 12h, 90m or 3600s"))?;
    let scale = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    n.checked_mul(scale).filter(|n| *n > 0).ok_or_else(|| format!("{s:?} is not a usable lifetime"))
}

/// Where `helix login` keeps tokens: `$XDG_CONFIG_HOME/helix/auth.json`
/// (default `~/.config/helix/auth.json`), one per API URL.
pub fn auth_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("helix").join("auth.json"))
}

type Saved = std::collections::BTreeMap<String, String>;

fn read_saved() -> Saved {
    auth_file().and_then(|f| std::fs::read(f).ok()).and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// The token `helix login` saved for this API.
pub fn saved_token(api_url: &str) -> Option<String> {
    read_saved().remove(api_url.trim_end_matches('/'))
}

fn write_saved(saved: &Saved) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let file = auth_file().context("no home directory to keep the token in (set HOME or XDG_CONFIG_HOME)")?;
    let dir = file.parent().context("the token file has no directory")?;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let tmp = file.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(saved)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &file)?;
    Ok(file)
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let token = match args.with_token {
        Some(t) => t,
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprint!("Paste a HelixStack API token (helix tokens create): ");
            }
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).context("reading the token from standard input")?;
            line
        }
    };
    let token = token.trim().to_owned();
    anyhow::ensure!(!token.is_empty(), "no token given: pass --with-token TOKEN or pipe one in");
    let url = args.client.api_url.trim_end_matches('/').to_owned();
    let api = helix_client::Api::new(&url, Some(token.clone()))?;
    let who: WhoAmI = api.post("/api/v1/login", &serde_json::json!({})).await.context("logging in")?;
    let mut saved = read_saved();
    saved.insert(url.clone(), token);
    let file = write_saved(&saved)?;
    if args.client.json {
        print_json(&who);
    } else {
        println!("✔ logged in to {url} as {} ({}, {})", who.user, who.org, who.role);
        println!("  token saved in {}", file.display());
    }
    Ok(())
}

pub async fn logout(client: ClientArgs) -> anyhow::Result<()> {
    let url = client.api_url.trim_end_matches('/').to_owned();
    let mut saved = read_saved();
    if saved.remove(&url).is_none() {
        println!("not logged in to {url}");
        return Ok(());
    }
    write_saved(&saved)?;
    println!("✔ logged out of {url} (the token still works until revoked: helix tokens revoke)");
    Ok(())
}

pub async fn whoami(client: ClientArgs) -> anyhow::Result<()> {
    let who: WhoAmI = api(&client)?.get("/api/v1/whoami").await?;
    if client.json {
        print_json(&who);
        return Ok(());
    }
    let mut scope = String::new();
    if let Some(p) = &who.project {
        scope.push_str(&format!(" · project {p} only"));
    }
    if who.read_only {
        scope.push_str(" · read-only");
    }
    if who.server_admin {
        scope.push_str(" · server admin (every organisation)");
    }
    println!("{} in {} · token {} ({}, {}){scope}", who.user, who.org, who.token_name, who.token, who.role);
    for m in &who.memberships {
        println!(
            "  {} {}",
            m.role,
            m.project.as_deref().map_or("(whole organisation)".to_owned(), |p| format!("on {p}"))
        );
    }
    Ok(())
}

pub async fn tokens(cmd: TokensCommand) -> anyhow::Result<()> {
    match cmd {
        TokensCommand::Create { name, role, project, read_only, expires, user, org, client } => {
            let body = CreateToken { name, role, project, read_only, expires_in_secs: expires, user, org };
            let made: CreatedToken = api(&client)?.post("/api/v1/tokens", &body).await?;
            if client.json {
                print_json(&made);
            } else {
                println!(
                    "✔ token {} ({}) for {}: {}",
                    made.info.name,
                    made.info.id,
                    made.info.user,
                    describe(&made.info)
                );
                println!("  {}", made.token);
                println!("  shown this once: keep it secret (HELIX_TOKEN, or helix login --with-token)");
            }
        }
        TokensCommand::List { client } => {
            let list: Vec<TokenInfo> = api(&client)?.get("/api/v1/tokens").await?;
            if client.json {
                print_json(&list);
            } else {
                for t in &list {
                    let used = t.last_used_at_ms.map_or("never used".to_owned(), |ms| format!("used {}", when(ms)));
                    println!("{}  {:<20} {:<10} {}  {used}", t.id, t.name, t.user, describe(t));
                }
            }
        }
        TokensCommand::Revoke { id, client } => {
            let t: TokenInfo = api(&client)?.delete(&format!("/api/v1/tokens/{}", urlencode(&id))).await?;
            if client.json {
                print_json(&t);
            } else {
                println!("✔ revoked {} ({})", t.id, t.name);
            }
        }
    }
    Ok(())
}

fn describe(t: &TokenInfo) -> String {
    let mut s = t.role.to_string();
    if let Some(p) = &t.project {
        s.push_str(&format!(" on {p}"));
    }
    if t.read_only {
        s.push_str(", read-only");
    }
    if let Some(at) = t.revoked_at_ms {
        s.push_str(&format!(", revoked {}", when(at)));
    } else if let Some(at) = t.expires_at_ms {
        s.push_str(&format!(", expires {}", when(at)));
    }
    s
}

fn when(ms: i64) -> String {
    helix_core::cron::rfc3339(ms)
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub async fn members(cmd: MembersCommand) -> anyhow::Result<()> {
    let (list, client): (Vec<Membership>, ClientArgs) = match cmd {
        MembersCommand::Add { user, role, project, client } => {
            (api(&client)?.post("/api/v1/members", &AddMember { user, role, project }).await?, client)
        }
        MembersCommand::List { client } => (api(&client)?.get("/api/v1/members").await?, client),
        MembersCommand::Remove { user, project, client } => {
            let query = project.map(|p| format!("?project={}", urlencode(&p))).unwrap_or_default();
            (api(&client)?.delete(&format!("/api/v1/members/{}{query}", urlencode(&user))).await?, client)
        }
    };
    if client.json {
        print_json(&list);
    } else if list.is_empty() {
        println!("(no memberships)");
    } else {
        for m in &list {
            let on = m.project.as_deref().map_or("whole organisation".to_owned(), |p| format!("project {p}"));
            println!("{:<20} {:<10} {on}", m.user, m.role);
        }
    }
    Ok(())
}

pub async fn orgs(args: OrgsArgs) -> anyhow::Result<()> {
    match args.command {
        Some(OrgsCommand::Create { name, owner, client }) => {
            let org: Org = api(&client)?.post("/api/v1/orgs", &CreateOrg { name, owner: owner.clone() }).await?;
            if client.json {
                print_json(&org);
            } else {
                println!("✔ organisation {} with owner {owner}", org.name);
                println!("  next: helix tokens create --org {} --user {owner} --role owner --name NAME", org.name);
            }
        }
        None => {
            let list: Vec<Org> = api(&args.client)?.get("/api/v1/orgs").await?;
            if args.client.json {
                print_json(&list);
            } else {
                for o in &list {
                    println!("{}", o.name);
                }
            }
        }
    }
    Ok(())
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    if let Some(AuditCommand::Verify { client }) = args.command {
        let report: ChainReport = api(&client)?.get("/api/v1/audit/verify").await?;
        if client.json {
            print_json(&report);
        } else if let Some(b) = &report.first_break {
            eprintln!("✘ the audit log is broken at entry {}: {}", b.seq, b.why);
        } else {
            println!("✔ the audit log is intact: {} entries, each linked to the one before", report.entries);
        }
        if !report.intact {
            std::process::exit(1);
        }
        return Ok(());
    }
    let api = api(&args.client)?;
    let query = args.project.as_ref().map(|p| format!("&project={}", urlencode(p))).unwrap_or_default();
    let json = args.client.json;
    let show = move |e: &AuditEntry| {
        if json {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            let what = [e.project.as_deref(), e.target.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
            let mark = if e.outcome == "ok" { "" } else { " ✘ denied" };
            println!("{:>6}  {}  {:<14} {:<16} {what}{mark}  {}", e.seq, when(e.at_ms), e.actor, e.action, e.detail);
        }
    };
    if args.follow {
        let resp = api.get_streaming(&format!("/api/v1/audit?follow=1{query}")).await?;
        crate::sse::each(resp, |event, data| {
            if event == "entry" {
                let e: AuditEntry = serde_json::from_str(data).context("reading an audit entry")?;
                show(&e);
            }
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        return Ok(());
    }
    #[derive(serde::Deserialize)]
    struct Page {
        entries: Vec<AuditEntry>,
    }
    let mut after = 0;
    loop {
        let page: Page = api.get(&format!("/api/v1/audit?after={after}&limit=5000{query}")).await?;
        let Some(last) = page.entries.last() else { break };
        after = last.seq;
        page.entries.iter().for_each(&show);
    }
    Ok(())
}
