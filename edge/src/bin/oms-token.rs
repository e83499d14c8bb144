//! `oms-token`: mints a development token for the edge and prints it, nothing else, on stdout.
//!
//! ```sh
//! oms-token --customer OMS-Cust-001          # acts as that customer
//! oms-token --operator [--name ops] [--ttl 1h]
//! oms-token --operator --es256-key <creds_dir>/edge-jwt-es256.pem   # ES256, checked by its JWKS
//! curl -H "Authorization: Bearer $(oms-token --operator)" localhost:8090/orders
//! ```
//!
//! It reads the OMS config like the services (`oms.toml`, `OMS_PROFILE`, `OMS_*`) for the issuer,
//! audience and HS256 secret (`auth.hs256_secret`, else `<creds_dir>/edge-jwt.secret`), so it
//! must run with the same settings as the edge it is for. With `--es256-key` it signs with that
//! key instead, for verifiers that hold its public JWKS only (`auth.jwks`).

use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser};
use oms_edge::auth::{self, Role};
use oms_edge::place::is_valid_id;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Mints a bearer token for the OMS edge (HS256, or ES256)"
)]
#[command(group(ArgGroup::new("role").required(true).args(["customer", "operator"])))]
struct Args {
    /// A token of this customer (its customer id).
    #[arg(long, value_name = "CUSTOMER_ID")]
    customer: Option<String>,
    /// An operator's token: reads everything, places orders for any customer.
    #[arg(long)]
    operator: bool,
    /// The operator's name (its `sub`).
    #[arg(long, default_value = "ops", conflicts_with = "customer")]
    name: String,
    /// How long the token is valid (`30m`, `12h`, `7days`).
    #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Sign ES256 with this PKCS#8 PEM key (`oms-provision creds` makes
    /// `<creds_dir>/edge-jwt-es256.pem`) instead of HS256 with the secret.
    #[arg(long, value_name = "FILE")]
    es256_key: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match mint(&args) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oms-token: {e}");
            ExitCode::FAILURE
        }
    }
}

fn mint(args: &Args) -> Result<String, String> {
    let (sub, role) = match &args.customer {
        Some(id) => (id.as_str(), Role::Customer),
        None => (args.name.as_str(), Role::Operator),
    };
    if !is_valid_id(sub) {
        return Err(format!(
            "{sub:?} is not a valid id: 1 to 64 characters of letters, digits, '.', '_' or '-'"
        ));
    }
    if args.ttl.is_zero() {
        return Err("--ttl must be more than 0".into());
    }
    let config = oms_config::Config::load().map_err(|e| format!("reading the config: {e}"))?;
    if let Some(path) = &args.es256_key {
        let key = auth::es256::Es256Key::read(path).map_err(|e| e.to_string())?;
        return Ok(key.mint(&config.auth, sub, role, args.ttl));
    }
    let secret = auth::hs256_secret(&config)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "no HS256 secret: set auth.hs256_secret (OMS_AUTH__HS256_SECRET) or provision {}",
                auth::secret_path(&config).display()
            )
        })?;
    Ok(auth::mint(&config.auth, &secret, sub, role, args.ttl))
}
