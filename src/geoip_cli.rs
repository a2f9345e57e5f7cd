//! `bridgemesh geoip`: make the loopback test database, and look addresses up in any database.

use anyhow::Context as _;
use bridgemesh_control::geo::{GeoIp, test_db};
use clap::{Args, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Args)]
pub struct GeoipArgs {
    #[command(subcommand)]
    command: GeoipCommand,
}

#[derive(Subcommand)]
enum GeoipCommand {
    /// Write a small City database that places networks of 127.0.0.0/8 in several regions, to try
    /// placement on one machine (nothing is downloaded; see docs/geoip.md).
    TestDb {
        /// Where to write the .mmdb file (replaced if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print where a database places an address, as JSON (`null` when it does not know).
    Lookup {
        /// A MaxMind DB City or Country file, e.g. GeoLite2-City.mmdb.
        #[arg(long)]
        db: PathBuf,
        ip: IpAddr,
    },
}

pub fn run(args: GeoipArgs) -> anyhow::Result<()> {
    match args.command {
        GeoipCommand::TestDb { out } => {
            let networks = test_db::loopback_test_networks();
            std::fs::write(&out, test_db::write_city_db(&networks))
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {} ({}):", out.display(), test_db::TEST_CITY_DATABASE_TYPE);
            for network in &networks {
                println!(
                    "  {:<14} {}, {} ({}) at {}, {}",
                    network.network.to_string(),
                    network.city,
                    network.country,
                    network.continent,
                    network.point.latitude,
                    network.point.longitude
                );
            }
            println!("every other address, 127.0.0.1 and ::1 included, is unknown");
        }
        GeoipCommand::Lookup { db, ip } => {
            let geo = GeoIp::open(&db)?;
            let location = geo
                .try_locate(ip)
                .with_context(|| format!("looking up {ip} in {}", db.display()))?;
            println!("{}", serde_json::to_string_pretty(&location)?);
        }
    }
    Ok(())
}
