//! `bridgemesh ca`: the cluster CA. Every link between nodes is mutual TLS under it: bridge to
//! bridge (cascade), control to control (Raft), bridge to control (the bridge's session).

use anyhow::Context as _;
use bridgemesh_pki::ca::{self as pki, ClusterCa};
use bridgemesh_proto::BridgeId;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create the cluster CA: writes ca.pem and ca-key.pem (owner-only) into --dir. Refuses to
    /// replace an existing CA key.
    Init {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue a bridge certificate: writes bridge.pem, bridge-key.pem (owner-only) and ca.pem into
    /// --out-dir, the files a bridge needs (`--cascade-cert-dir`). The certificate is the bridge's
    /// credential toward control: control accepts its registration only under this id.
    Issue {
        /// The CA's directory (from `bridgemesh ca init`).
        #[arg(long)]
        dir: PathBuf,
        /// The bridge's id, as it registers with control.
        #[arg(long)]
        bridge_id: String,
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// Issue a control node certificate: writes control.pem, control-key.pem (owner-only) and
    /// ca.pem into --out-dir, the files a control node needs (`--cert-dir`).
    IssueControl {
        /// The CA's directory (from `bridgemesh ca init`).
        #[arg(long)]
        dir: PathBuf,
        /// The node's Raft id (`--id` of `bridgemesh control`).
        #[arg(long)]
        node_id: u64,
        #[arg(long)]
        out_dir: PathBuf,
    },
}

pub fn run(args: CaArgs) -> anyhow::Result<()> {
    match args.command {
        CaCommand::Init { dir } => {
            ClusterCa::generate()?.save(&dir)?;
            println!(
                "wrote {} and {} (keep the key private)",
                dir.join(pki::CA_CERT_FILE).display(),
                dir.join(pki::CA_KEY_FILE).display()
            );
        }
        CaCommand::Issue {
            dir,
            bridge_id,
            out_dir,
        } => {
            let bridge_id = BridgeId::new(bridge_id).context("invalid --bridge-id")?;
            let ca =
                ClusterCa::load(&dir).with_context(|| format!("loading the CA from {}", dir.display()))?;
            ca.issue_bridge_cert(&bridge_id)?.save(&out_dir)?;
            println!(
                "wrote {}, {} and {} for bridge {}",
                out_dir.join(pki::BRIDGE_CERT_FILE).display(),
                out_dir.join(pki::BRIDGE_KEY_FILE).display(),
                out_dir.join(pki::CA_CERT_FILE).display(),
                bridge_id.as_str()
            );
        }
        CaCommand::IssueControl {
            dir,
            node_id,
            out_dir,
        } => {
            if node_id == 0 {
                anyhow::bail!("--node-id must be a positive integer");
            }
            let ca =
                ClusterCa::load(&dir).with_context(|| format!("loading the CA from {}", dir.display()))?;
            ca.issue_control_cert(node_id)?.save_control(&out_dir)?;
            println!(
                "wrote {}, {} and {} for control node {node_id}",
                out_dir.join(pki::CONTROL_CERT_FILE).display(),
                out_dir.join(pki::CONTROL_KEY_FILE).display(),
                out_dir.join(pki::CA_CERT_FILE).display(),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridgemesh_bridge::cascade::BridgeIdentity;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: CaArgs,
    }

    fn ca(args: &[&str]) -> anyhow::Result<()> {
        run(Cmd::try_parse_from(std::iter::once("ca").chain(args.iter().copied()))?.args)
    }

    #[test]
    fn init_and_issue_write_files_that_load_back() {
        let tmp = tempfile::tempdir().unwrap();
        let ca_dir = tmp.path().join("ca");
        let out_dir = tmp.path().join("bridge-1");
        let (ca_dir_str, out_dir_str) = (ca_dir.to_str().unwrap(), out_dir.to_str().unwrap());

        ca(&["init", "--dir", ca_dir_str]).unwrap();
        let loaded_ca = ClusterCa::load(&ca_dir).unwrap();
        // A second init would orphan every certificate issued under the first key.
        assert!(ca(&["init", "--dir", ca_dir_str]).is_err());

        ca(&[
            "issue",
            "--dir",
            ca_dir_str,
            "--bridge-id",
            "eu-1",
            "--out-dir",
            out_dir_str,
        ])
        .unwrap();
        let identity = BridgeIdentity::load(&out_dir).unwrap();
        assert_eq!(identity.bridge_id().as_str(), "eu-1");
        assert_eq!(identity.ca_cert(), loaded_ca.cert_der());

        let control_dir = tmp.path().join("control-3");
        ca(&[
            "issue-control",
            "--dir",
            ca_dir_str,
            "--node-id",
            "3",
            "--out-dir",
            control_dir.to_str().unwrap(),
        ])
        .unwrap();
        let control = bridgemesh_pki::ClusterIdentity::load_control(&control_dir).unwrap();
        assert_eq!(control.name(), &bridgemesh_pki::ClusterName::Control(3));
        // A bridge's directory is not a control node's.
        assert!(bridgemesh_pki::ClusterIdentity::load_control(&out_dir).is_err());
        assert!(
            ca(&[
                "issue-control",
                "--dir",
                ca_dir_str,
                "--node-id",
                "0",
                "--out-dir",
                control_dir.to_str().unwrap()
            ])
            .is_err()
        );

        assert!(
            ca(&[
                "issue",
                "--dir",
                ca_dir_str,
                "--bridge-id",
                "Not Valid",
                "--out-dir",
                out_dir_str
            ])
            .is_err()
        );
    }
}
