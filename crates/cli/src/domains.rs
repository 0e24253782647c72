//! `helix domains`: a project's custom domains — claim, prove, list,
//! remove.

use clap::Subcommand;
use helix_core::api::{AddDomain, Domain};

use crate::output::warn_if_unserved;
use crate::{ClientArgs, api, print_json};

#[derive(Subcommand)]
pub enum DomainsCommand {
    /// Claim NAME for a project: prints the DNS record that proves it, and verifies it at once if it exists.
    Add {
        /// `shop.example.com`, or `*.preview.example.com` (a wildcard, proven by TXT record).
        name: String,
        #[arg(long)]
        project: String,
        /// With a wildcard: `<branch>.<rest>` serves that branch's preview and
        /// `<deployment-id>.<rest>` that deployment, instead of production.
        #[arg(long)]
        previews: bool,
        /// Redirect every request (308) to this other domain of the project, e.g. www → apex.
        #[arg(long, value_name = "DOMAIN")]
        redirect_to: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check NAME's proof again; exits 1 while it does not hold, saying why.
    Verify {
        name: String,
        /// The project (default: the one of yours that claims NAME).
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Your projects' domains (one project's with --project).
    List {
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop serving NAME and release it.
    Rm {
        name: String,
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn domains(cmd: DomainsCommand) -> anyhow::Result<()> {
    match cmd {
        DomainsCommand::Add { name, project, previews, redirect_to, client } => {
            let body = AddDomain { name, previews, redirect_to };
            let domain: Domain = api(&client)?.post(&format!("/api/v1/projects/{project}/domains"), &body).await?;
            report(&domain, client.json);
        }
        DomainsCommand::Verify { name, project, client } => {
            let project = project_of(&client, &name, project).await?;
            let domain: Domain =
                api(&client)?.post(&format!("/api/v1/projects/{project}/domains/{name}/verify"), &()).await?;
            report(&domain, client.json);
            if !domain.verified {
                std::process::exit(1);
            }
        }
        DomainsCommand::List { project, client } => {
            let path = match &project {
                Some(p) => format!("/api/v1/projects/{p}/domains"),
                None => "/api/v1/domains".to_owned(),
            };
            let list: Vec<Domain> = api(&client)?.get(&path).await?;
            if client.json {
                print_json(&list);
            } else if list.is_empty() {
                println!("no custom domains yet: `helix domains add NAME --project P` claims one");
            } else {
                println!("{:<40} {:<20} {:<10} SERVES", "DOMAIN", "PROJECT", "STATE");
                for d in &list {
                    let state = if d.verified { "verified" } else { "pending" };
                    println!("{:<40} {:<20} {:<10} {}", d.name, d.project, state, serves(d));
                }
            }
        }
        DomainsCommand::Rm { name, project, client } => {
            let project = project_of(&client, &name, project).await?;
            let domain: Domain = api(&client)?.delete(&format!("/api/v1/projects/{project}/domains/{name}")).await?;
            if client.json {
                print_json(&domain);
            } else {
                println!("✔ {} removed from project {}", domain.name, domain.project);
                warn_if_unserved(domain.propagation.as_ref());
            }
        }
    }
    Ok(())
}

/// What a domain serves, in words.
fn serves(d: &Domain) -> String {
    match (&d.redirect_to, d.previews) {
        (Some(to), _) => format!("→ {to}"),
        (None, true) => "previews".to_owned(),
        (None, false) => "production".to_owned(),
    }
}

fn report(d: &Domain, json: bool) {
    if json {
        print_json(d);
        return;
    }
    if d.verified {
        match &d.redirect_to {
            Some(to) => println!("✔ {} is verified: it redirects to {to} (project {})", d.name, d.project),
            None => println!("✔ {} is verified: it serves {} of project {}", d.name, serves(d), d.project),
        }
        warn_if_unserved(d.propagation.as_ref());
        return;
    }
    println!("{} is claimed by project {} and waits for its proof. Create this DNS record:", d.name, d.project);
    println!();
    println!("  {}  TXT  \"{}\"", d.txt_name, d.txt_value);
    if let Some(path) = &d.http_path {
        println!();
        println!("or point {}'s DNS (A/AAAA or CNAME) at this server: the edge answers {path} on it.", d.name);
    }
    if let Some(why) = &d.last_error {
        println!();
        println!("last check: {why}");
    }
    println!();
    println!("then run `helix domains verify {}`", d.name);
}

/// The project that claims `name`: the one given, else the caller's only
/// project claiming it.
async fn project_of(client: &ClientArgs, name: &str, project: Option<String>) -> anyhow::Result<String> {
    if let Some(p) = project {
        return Ok(p);
    }
    let wanted = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let wanted = helix_core::domains::CustomDomain::parse(&wanted, "").map(|d| d.name).unwrap_or(wanted);
    let list: Vec<Domain> = api(client)?.get("/api/v1/domains").await?;
    let mut claims: Vec<&Domain> = list.iter().filter(|d| d.name == wanted).collect();
    match claims.len() {
        0 => anyhow::bail!("none of your projects claims {wanted}: `helix domains list` shows those that do"),
        1 => Ok(claims.remove(0).project.clone()),
        _ => {
            let names: Vec<&str> = claims.iter().map(|d| d.project.as_str()).collect();
            anyhow::bail!(
                "{wanted} is claimed by several of your projects ({}): say which with --project",
                names.join(", ")
            )
        }
    }
}
