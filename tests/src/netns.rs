//! Network namespaces as test hosts: a small internet on one machine, for tests of what crosses a
//! network (TLS by name, NAT, firewalls that drop UDP, IPv6).
//!
//! # Layout
//! A [`Lab`] is one router namespace and any number of host namespaces, each joined to the router
//! by a veth pair on a subnet of its own:
//!
//! ```text
//!   host "server"  eth0 198.18.1.2/24, 2001:db8:1::2/64 ──┐
//!   host "alice"   eth0 198.18.2.2/24, 2001:db8:2::2/64 ──┼── router (forwards, .1 / ::1 on each link)
//!   host "bob"     eth0 198.18.3.2/24, 2001:db8:3::2/64 ──┘
//! ```
//!
//! Addresses come from the benchmarking range 198.18.0.0/15 and the documentation prefix
//! 2001:db8::/32, and the router has no route out of the lab, so nothing a test sends leaves the
//! namespaces it made. Every namespace has its own `hosts` file and an empty resolver list (the
//! machine's resolver is unreachable from inside anyway).
//!
//! Names carry the test process's id, so tests running side by side never collide, and a lab left
//! behind by a killed test is removed by the next [`Lab::new`] once its process is gone.
//!
//! Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN), `ip` (iproute2) and, for firewall rules, `nft`.

use anyhow::{Context as _, bail};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Every namespace this harness makes is called `bm-<tag>-<pid>-<n>`.
const NAME_PREFIX: &str = "bm-";
/// Hosts one lab holds at most: each takes a /24 of 198.18.0.0/16.
const HOSTS_MAX: u8 = 250;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// One network namespace, deleted (with every process still in it) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// A new, empty namespace with its loopback up.
    pub fn create(tag: &str) -> anyhow::Result<Self> {
        assert!(
            !tag.is_empty() && tag.len() <= 12 && tag.bytes().all(|b| b.is_ascii_alphanumeric()),
            "a namespace tag is 1–12 ASCII letters or digits, not {tag:?}"
        );
        let name = format!(
            "{NAME_PREFIX}{tag}-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name])?;
        let netns = Self { name };
        netns.ip(&["link", "set", "lo", "up"])?;
        // Its own /etc overlay: `ip netns exec` binds these files over /etc/hosts and
        // /etc/resolv.conf, so names resolve only as the test says.
        std::fs::create_dir_all(netns.etc_dir()).context("creating the namespace's /etc overlay")?;
        netns.set_hosts(&[])?;
        std::fs::write(netns.etc_dir().join("resolv.conf"), "")
            .context("writing the namespace's resolv.conf")?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn etc_dir(&self) -> PathBuf {
        PathBuf::from("/etc/netns").join(&self.name)
    }

    /// Replaces the namespace's hosts file: `name` resolves to `ip` for programs started with
    /// [`Netns::command`] (browsers, ACME servers, `bridgemesh` processes).
    pub fn set_hosts(&self, entries: &[(&str, IpAddr)]) -> anyhow::Result<()> {
        let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for (name, ip) in entries {
            text.push_str(&format!("{ip} {name}\n"));
        }
        std::fs::write(self.etc_dir().join("hosts"), text).context("writing the namespace's hosts file")
    }

    /// `program` run inside the namespace (through `ip netns exec`, which execs it: the child's
    /// pid is the program's own, so killing the child kills the program).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// [`Netns::command`] for tokio.
    pub fn tokio_command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        tokio::process::Command::from(self.command(program))
    }

    /// Runs `program args` inside the namespace to completion; its stdout, or an error with its
    /// stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        output(
            self.command(program).args(args),
            &format!("{program} {}", args.join(" ")),
        )
    }

    /// `ip -n <ns> args`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Sets a sysctl inside the namespace (`net.ipv4.ip_forward=1`).
    pub fn sysctl(&self, setting: &str) -> anyhow::Result<()> {
        self.run("sysctl", &["-q", "-w", setting]).map(drop)
    }

    /// Loads an nftables ruleset (`nft -f -` syntax) inside the namespace.
    pub fn nft(&self, ruleset: &str) -> anyhow::Result<()> {
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running nft (Debian's nftables package)")?;
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(ruleset.as_bytes())
            .context("writing the ruleset to nft")?;
        let out = child.wait_with_output().context("waiting for nft")?;
        if !out.status.success() {
            bail!(
                "nft refused the ruleset: {}\n{ruleset}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// A TCP connection made from inside the namespace, usable from this process (e.g. to a
    /// browser's DevTools port on the namespace's loopback). A helper thread enters the namespace
    /// to connect; the socket stays in it afterwards.
    pub fn connect_tcp(&self, addr: SocketAddr) -> anyhow::Result<std::net::TcpStream> {
        let path = PathBuf::from("/run/netns").join(&self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| -> anyhow::Result<std::net::TcpStream> {
                    let file =
                        std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                    rustix::thread::move_into_link_name_space(
                        file.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )
                    .with_context(|| format!("entering network namespace {}", self.name))?;
                    std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
                        .with_context(|| format!("connecting to {addr} inside {}", self.name))
                })
                .join()
                .expect("the connecting thread does not panic")
        })
    }

    /// Pids of the processes still inside.
    fn pids(&self) -> Vec<String> {
        ip(&["netns", "pids", &self.name])
            .map(|text| text.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let pids = self.pids();
        if !pids.is_empty() {
            let _ = Command::new("kill").arg("-9").args(&pids).status();
        }
        let _ = ip(&["netns", "del", &self.name]);
        let _ = std::fs::remove_dir_all(self.etc_dir());
    }
}

/// A host of a [`Lab`]: its namespace and its addresses on the link to the router.
#[derive(Debug)]
pub struct Host {
    pub netns: Netns,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// The router's interface toward this host, e.g. to rate-cap or firewall one host's link.
    pub router_if: String,
}

impl std::ops::Deref for Host {
    type Target = Netns;
    fn deref(&self) -> &Netns {
        &self.netns
    }
}

/// A router namespace and hosts behind it; see the module docs.
pub struct Lab {
    // Hosts first: dropping them removes their veth pairs before the router goes.
    hosts: Vec<Host>,
    pub router: Netns,
}

impl Lab {
    /// A router forwarding IPv4 and IPv6 between the hosts it will get.
    pub fn new() -> anyhow::Result<Self> {
        remove_stale_namespaces();
        let router = Netns::create("router")?;
        router.sysctl("net.ipv4.ip_forward=1")?;
        router.sysctl("net.ipv6.conf.all.forwarding=1")?;
        Ok(Self {
            hosts: Vec::new(),
            router,
        })
    }

    /// A new host on a link of its own: `198.18.<n>.2/24` and `2001:db8:<n>::2/64`, the router at
    /// `.1` and `::1` as its default gateway. Returns the host's index for [`Lab::host`].
    pub fn add_host(&mut self, tag: &str) -> anyhow::Result<usize> {
        let index = self.hosts.len();
        let subnet = u8::try_from(index + 1)
            .ok()
            .filter(|s| *s <= HOSTS_MAX)
            .context("a lab holds at most 250 hosts")?;
        let netns = Netns::create(tag)?;
        // Interface names are at most 15 bytes: make the pair under short unique names in the
        // root namespace, then move and rename each end.
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() % 100_000;
        let (outer, inner) = (format!("bmr{pid}x{id}"), format!("bmh{pid}x{id}"));
        ip(&["link", "add", &outer, "type", "veth", "peer", "name", &inner])?;
        let router_if = format!("h{subnet}");
        let moved = ip(&["link", "set", &outer, "netns", self.router.name()])
            .and_then(|_| ip(&["link", "set", &inner, "netns", netns.name()]));
        if let Err(err) = moved {
            let _ = ip(&["link", "del", &outer]);
            return Err(err);
        }
        self.router.ip(&["link", "set", &outer, "name", &router_if])?;
        netns.ip(&["link", "set", &inner, "name", "eth0"])?;

        let ipv4 = Ipv4Addr::new(198, 18, subnet, 2);
        let ipv6 = Ipv6Addr::new(0x2001, 0xdb8, subnet.into(), 0, 0, 0, 0, 2);
        let router_v4 = format!("198.18.{subnet}.1");
        let router_v6 = format!("2001:db8:{subnet:x}::1");
        // nodad: the addresses are usable at once instead of after duplicate detection.
        self.router
            .ip(&["addr", "add", &format!("{router_v4}/24"), "dev", &router_if])?;
        self.router.ip(&[
            "addr",
            "add",
            &format!("{router_v6}/64"),
            "dev",
            &router_if,
            "nodad",
        ])?;
        self.router.ip(&["link", "set", &router_if, "up"])?;
        netns.ip(&["addr", "add", &format!("{ipv4}/24"), "dev", "eth0"])?;
        netns.ip(&["addr", "add", &format!("{ipv6}/64"), "dev", "eth0", "nodad"])?;
        netns.ip(&["link", "set", "eth0", "up"])?;
        netns.ip(&["route", "add", "default", "via", &router_v4])?;
        netns.ip(&["-6", "route", "add", "default", "via", &router_v6])?;
        self.hosts.push(Host {
            netns,
            ipv4,
            ipv6,
            router_if,
        });
        Ok(index)
    }

    pub fn host(&self, index: usize) -> &Host {
        &self.hosts[index]
    }

    /// Gives `name` the address `ip` in every namespace of the lab (the router's too).
    pub fn resolve(&self, name: &str, ip: IpAddr) -> anyhow::Result<()> {
        for netns in self.hosts.iter().map(|h| &h.netns).chain([&self.router]) {
            let path = netns.etc_dir().join("hosts");
            let mut text = std::fs::read_to_string(&path).context("reading a namespace's hosts file")?;
            text.push_str(&format!("{ip} {name}\n"));
            std::fs::write(&path, text).context("writing a namespace's hosts file")?;
        }
        Ok(())
    }
}

/// Whether this machine lets the tests make namespaces (root with `ip` and `/run/netns`).
pub fn available() -> anyhow::Result<()> {
    let probe = Netns::create("probe").context(
        "network namespaces are unavailable (these tests need root, iproute2 and a kernel with netns)",
    )?;
    drop(probe);
    Ok(())
}

/// Namespaces `bm-*-<pid>-<n>` of processes that are gone (a test killed mid-run).
fn remove_stale_namespaces() {
    let Ok(list) = ip(&["netns", "list"]) else { return };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let mut parts = rest.rsplitn(3, '-');
        let (_id, pid) = (parts.next(), parts.next());
        let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !PathBuf::from(format!("/proc/{pid}")).exists() {
            // Dropping a handle to it kills what is left inside and deletes it.
            drop(Netns {
                name: name.to_owned(),
            });
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    output(Command::new("ip").args(args), &format!("ip {}", args.join(" ")))
}

fn output(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
