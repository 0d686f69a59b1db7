//! `ezw-server`: runs EZW with the embedded SQLite store, or as one of several nodes on a
//! PostgreSQL database.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ezw_core::model::BillingState;
use ezw_core::OrganizationId;
use ezw_http::{start, ServerOptions};

mod pair;
mod terminal_qr;

/// EZW server: WhatsApp support inbox API. Without a command, runs the server.
#[derive(Debug, Parser)]
#[command(name = "ezw-server", version, about)]
struct Cli {
    /// An administrative command on the data directory instead of running the server.
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on.
    #[arg(long, env = "EZW_BIND", default_value = "127.0.0.1:3010")]
    bind: SocketAddr,
    /// Directory for the database, the server key and demo.json.
    #[arg(long, env = "EZW_DATA_DIR", default_value = "./ezw-data", global = true)]
    data_dir: PathBuf,
    /// Database URL: `postgres://user:password@host:port/database` runs this node on PostgreSQL
    /// (several nodes may share it); default: the SQLite file `ezw.db` in the data directory.
    #[arg(long, env = "EZW_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// PostgreSQL schema for EZW's tables (default `public`).
    #[arg(long, env = "EZW_DATABASE_SCHEMA", global = true)]
    database_schema: Option<String>,
    /// The public base URL vendors reach this server at (webhooks, Twilio status callbacks and
    /// signatures use it). Default: http://<bind>.
    #[arg(long, env = "EZW_PUBLIC_URL")]
    public_url: Option<url::Url>,
    /// Outbox lease in milliseconds: a crashed worker's jobs come back after it.
    #[arg(long, env = "EZW_OUTBOX_LEASE_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    outbox_lease_ms: u64,
    /// Let webhooks target loopback, private and link-local addresses (refused by default as
    /// SSRF protection). For tests and local development only.
    #[arg(long, env = "EZW_ALLOW_PRIVATE_WEBHOOK_TARGETS")]
    allow_private_webhook_targets: bool,
    /// Create (or reuse) a demo workspace and write <data-dir>/demo.json.
    #[arg(long, env = "EZW_DEMO")]
    demo: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Billing administration (works beside a running server).
    #[command(subcommand)]
    Billing(BillingCommand),
    /// Line administration (works beside a running server).
    #[command(subcommand)]
    Lines(LinesCommand),
}

#[derive(Debug, Subcommand)]
enum LinesCommand {
    /// Pairs a QR line from the terminal: requests a new pairing (the running server's session
    /// picks it up), prints each QR code as it rotates, and exits 0 once the phone scanned it,
    /// 1 when the pairing ended without a scan or timed out, 130 on Ctrl-C.
    Pair(PairArgs),
}

#[derive(Debug, clap::Args)]
struct PairArgs {
    /// The line id (`line_...`).
    line_id: String,
    /// How long to wait for the phone, in seconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout_secs: u64,
    /// Pair by phone-number code instead of QR: prints the code to type on the phone (the
    /// line's own number).
    #[arg(long)]
    phone_code: bool,
    /// Draw the QR for a terminal with a light background (default: a dark background).
    #[arg(long)]
    light_background: bool,
}

impl PairArgs {
    fn background(&self) -> terminal_qr::Background {
        if self.light_background {
            terminal_qr::Background::Light
        } else {
            terminal_qr::Background::Dark
        }
    }
}

#[derive(Debug, Subcommand)]
enum BillingCommand {
    /// Settles a checkout (payment confirmed): the checkout becomes settled and its
    /// organization active. Audited as `billing.checkout_settled` by `system`.
    Settle {
        /// The checkout id (`chk_...`) from the customer or `GET /api/billing/status`.
        checkout_id: String,
    },
    /// Sets an organization's billing state. Audited as `billing.state_changed` by `system`.
    SetState {
        /// The organization id (`org_...`).
        organization_id: String,
        /// The new state.
        #[arg(value_parser = ["active", "pending", "restricted"])]
        state: String,
    },
}

/// Runs an administrative command; prints the result as JSON.
async fn run_admin(cli: &Cli, command: &Command) -> Result<serde_json::Value, ezw_core::Error> {
    let ezw = ezw_http::server::open_admin(&cli.data_dir, cli.database_url.as_deref(), cli.database_schema.as_deref())
        .await?;
    let Command::Billing(billing) = command else {
        return Err(ezw_core::Error::internal("not a JSON admin command"));
    };
    match billing {
        BillingCommand::Settle { checkout_id } => {
            let (checkout, organization) = ezw.billing().settle_checkout(checkout_id).await?;
            Ok(serde_json::json!({ "checkout": checkout, "organization": organization }))
        }
        BillingCommand::SetState { organization_id, state } => {
            let org = OrganizationId::parse(organization_id).ok_or_else(|| {
                ezw_core::Error::invalid("invalid_organization_id", "not an organization id (org_...)")
            })?;
            let state = BillingState::parse(state)
                .ok_or_else(|| ezw_core::Error::invalid("invalid_state", "active, pending or restricted"))?;
            let organization = ezw.billing().set_state(&org, state).await?;
            Ok(serde_json::json!({ "organization": organization }))
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    if let Some(Command::Lines(LinesCommand::Pair(args))) = &cli.command {
        return run_pair(&cli, args).await;
    }
    if let Some(command) = &cli.command {
        return match run_admin(&cli, command).await {
            Ok(result) => {
                println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default());
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ezw-server: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let mut config = ezw_core::EzwConfig::default();
    config.lease = std::time::Duration::from_millis(cli.outbox_lease_ms);
    let options = ServerOptions::new(cli.bind, cli.data_dir.clone())
        .config(config)
        .database_url(cli.database_url)
        .database_schema(cli.database_schema)
        .public_url(cli.public_url)
        .allow_private_webhook_targets(cli.allow_private_webhook_targets)
        .demo(cli.demo);
    let server = match start(options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ezw-server: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Some(demo) = &server.demo {
        let json = serde_json::to_string_pretty(demo).unwrap_or_default();
        println!("Demo workspace (also in {}):\n{json}", cli.data_dir.join("demo.json").display());
        println!("Shell variables: source {}", cli.data_dir.join("demo.env").display());
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    std::process::ExitCode::SUCCESS
}

/// `ezw-server lines pair`: prints the outcome and turns it into the exit code.
async fn run_pair(cli: &Cli, args: &PairArgs) -> std::process::ExitCode {
    let timeout = std::time::Duration::from_secs(args.timeout_secs);
    let result =
        match ezw_http::server::open_admin(&cli.data_dir, cli.database_url.as_deref(), cli.database_schema.as_deref())
            .await
        {
            Ok(ezw) => pair::run(&ezw, &args.line_id, args.phone_code, timeout, args.background()).await,
            Err(e) => Err(e),
        };
    match result {
        Ok(outcome @ pair::Outcome::Paired) => {
            println!("{}", outcome.message());
            std::process::ExitCode::from(outcome.exit_code())
        }
        Ok(outcome) => {
            eprintln!("ezw-server: {}", outcome.message());
            std::process::ExitCode::from(outcome.exit_code())
        }
        Err(e) => {
            eprintln!("ezw-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command, LinesCommand};
    use crate::terminal_qr::Background;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_lines_pair_with_defaults() {
        let cli = Cli::try_parse_from(["ezw-server", "lines", "pair", "line_01abc"]).unwrap();
        let Some(Command::Lines(LinesCommand::Pair(args))) = cli.command else { panic!("not lines pair") };
        assert_eq!(args.line_id, "line_01abc");
        assert_eq!(args.timeout_secs, 300);
        assert!(!args.phone_code);
        assert_eq!(args.background(), Background::Dark);
    }

    #[test]
    fn parses_lines_pair_options_and_the_global_storage_flags() {
        let cli = Cli::try_parse_from([
            "ezw-server",
            "lines",
            "pair",
            "line_01abc",
            "--timeout-secs",
            "30",
            "--phone-code",
            "--light-background",
            "--data-dir",
            "/var/lib/ezw",
            "--database-url",
            "postgres://ezw@db/ezw",
            "--database-schema",
            "tenant_a",
        ])
        .unwrap();
        assert_eq!(cli.data_dir, std::path::PathBuf::from("/var/lib/ezw"));
        assert_eq!(cli.database_url.as_deref(), Some("postgres://ezw@db/ezw"));
        assert_eq!(cli.database_schema.as_deref(), Some("tenant_a"));
        let Some(Command::Lines(LinesCommand::Pair(args))) = cli.command else { panic!("not lines pair") };
        assert_eq!(args.timeout_secs, 30);
        assert!(args.phone_code);
        assert_eq!(args.background(), Background::Light);
    }

    #[test]
    fn rejects_a_missing_line_id_and_a_zero_timeout() {
        assert!(Cli::try_parse_from(["ezw-server", "lines", "pair"]).is_err());
        assert!(Cli::try_parse_from(["ezw-server", "lines", "pair", "line_x", "--timeout-secs", "0"]).is_err());
        assert!(Cli::try_parse_from(["ezw-server", "lines", "pair", "line_x", "--timeout-secs", "soon"]).is_err());
    }
}
