//! The network-namespace lab the internet-facing tests stand on: hosts reach each other through
//! the router by address and by the lab's names, a firewall rule on the router cuts a flow, and
//! Chromium runs inside a host namespace, driven from this process.

use bridgemesh_tests::chromium::{Browser, LaunchOptions};
use bridgemesh_tests::netns::{self, Lab};
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const PORT: u16 = 8000;
const PAGE_TEXT: &str = "served from the server namespace";

/// A static HTTP server (Python's) inside the server host, and the directory it serves.
struct HttpServer {
    child: Child,
    _root: tempfile::TempDir,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(lab: &Lab, host: usize) -> HttpServer {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        format!("<html><body>{PAGE_TEXT}</body></html>"),
    )
    .unwrap();
    let server = lab.host(host);
    let child = server
        .command("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            &server.ipv4.to_string(),
            &PORT.to_string(),
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    HttpServer { child, _root: dir }
}

/// `GET /` from inside `client` to `addr`; the response's text, or the error.
fn fetch_from(lab: &Lab, client: usize, addr: SocketAddr) -> anyhow::Result<String> {
    let mut tcp = lab.host(client).connect_tcp(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(tcp, "GET / HTTP/1.0\r\nHost: server.test\r\n\r\n")?;
    let mut text = String::new();
    tcp.read_to_string(&mut text)?;
    Ok(text)
}

/// The server starts listening a moment after its process starts.
fn fetch_eventually(lab: &Lab, client: usize, addr: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match fetch_from(lab, client, addr) {
            Ok(text) => return text,
            Err(err) if Instant::now() > deadline => panic!("no answer from {addr}: {err:#}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_routes_between_hosts_and_its_firewall_cuts_a_flow() {
    netns::available().expect("these tests need network namespaces");
    let mut lab = Lab::new().unwrap();
    let server = lab.add_host("server").unwrap();
    let client = lab.add_host("client").unwrap();
    let _http = serve(&lab, server);

    let v4 = SocketAddr::from((lab.host(server).ipv4, PORT));
    let answer = fetch_eventually(&lab, client, v4);
    assert!(answer.contains(PAGE_TEXT), "{answer}");

    // A reject rule on the router for the client's link cuts the flow; the server is still up.
    lab.router
        .nft(&format!(
            "table inet cut {{ chain forward {{ type filter hook forward priority 0; \
             iifname \"{}\" tcp dport {PORT} reject with tcp reset; }}; }}",
            lab.host(client).router_if
        ))
        .unwrap();
    let refused = fetch_from(&lab, client, v4);
    assert!(refused.is_err(), "the firewall let the flow through: {refused:?}");
    let third = lab.add_host("third").unwrap();
    assert!(fetch_eventually(&lab, third, v4).contains(PAGE_TEXT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_in_a_host_namespace_loads_a_page_by_the_labs_name() {
    netns::available().expect("these tests need network namespaces");
    let mut lab = Lab::new().unwrap();
    let server = lab.add_host("server").unwrap();
    let client = lab.add_host("client").unwrap();
    let _http = serve(&lab, server);
    lab.resolve("server.test", IpAddr::V4(lab.host(server).ipv4))
        .unwrap();
    fetch_eventually(&lab, client, SocketAddr::from((lab.host(server).ipv4, PORT)));

    let browser = Browser::launch_with(LaunchOptions {
        netns: Some(&lab.host(client).netns),
        ..LaunchOptions::default()
    })
    .await
    .unwrap();
    let page = browser
        .new_page(&format!("http://server.test:{PORT}/"))
        .await
        .unwrap();
    let text = page.eval("document.body.innerText").await.unwrap();
    assert_eq!(text.as_str(), Some(PAGE_TEXT), "{text}");
}
