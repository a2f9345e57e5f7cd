//! End-to-end checks of the CDP driver in `bridgemesh_tests::chromium` against the real
//! headless Chromium.

use std::time::Duration;

use bridgemesh_tests::chromium::Browser;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, SemaphorePermit};

// Each test owns a browser; on a 2-core machine running them all at once only makes them
// slower and flakier.
static BROWSER_SLOTS: Semaphore = Semaphore::const_new(2);

async fn browser() -> (SemaphorePermit<'static>, Browser) {
    let permit = BROWSER_SLOTS.acquire().await.unwrap();
    (permit, Browser::launch().await.unwrap())
}

/// Serves `body` as text/html on 127.0.0.1: unlike data: URLs that is a secure context, which
/// getUserMedia requires.
async fn serve_html(body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/")
}

#[tokio::test]
async fn eval_returns_dom_values_and_awaits_promises() {
    let (_slot, browser) = browser().await;
    let page = browser.new_page("data:text/html,<h1 id=x>hi</h1>").await.unwrap();

    assert_eq!(
        page.eval("document.getElementById('x').textContent")
            .await
            .unwrap(),
        json!("hi")
    );
    assert_eq!(
        page.eval("new Promise(r => setTimeout(() => r(42), 50))")
            .await
            .unwrap(),
        json!(42)
    );
    assert_eq!(
        page.eval("({a: [1, 'b', null]})").await.unwrap(),
        json!({"a": [1, "b", null]})
    );
    assert_eq!(page.eval("undefined").await.unwrap(), json!(null));
    assert_eq!(page.eval("NaN").await.unwrap(), json!("NaN"));

    page.close().await.unwrap();
}

#[tokio::test]
async fn js_exceptions_and_rejections_become_errors() {
    let (_slot, browser) = browser().await;
    let page = browser.new_page("data:text/html,<p>x</p>").await.unwrap();

    let err = format!("{:#}", page.eval("throw new Error('boom')").await.unwrap_err());
    assert!(err.contains("Error: boom"), "{err}");
    let err = format!(
        "{:#}",
        page.eval("Promise.reject(new TypeError('nope'))")
            .await
            .unwrap_err()
    );
    assert!(err.contains("TypeError: nope"), "{err}");
    let err = format!("{:#}", page.eval("throw 'plain string'").await.unwrap_err());
    assert!(err.contains("plain string"), "{err}");

    // The page stays usable after an exception.
    assert_eq!(page.eval("1 + 1").await.unwrap(), json!(2));
}

#[tokio::test]
async fn wait_for_succeeds_once_condition_holds_and_reports_state_on_timeout() {
    let (_slot, browser) = browser().await;
    let page = browser.new_page("data:text/html,<p>x</p>").await.unwrap();

    page.eval("setTimeout(() => { window.ready = true }, 300)")
        .await
        .unwrap();
    page.wait_for("window.ready === true", Duration::from_secs(5), "window.ready")
        .await
        .unwrap();

    // Exceptions while polling count as "not yet", and show up as the last value.
    let err = page
        .wait_for(
            "window.missing.deep",
            Duration::from_millis(400),
            "({ phase: 'boot' })",
        )
        .await
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("timed out"), "{err}");
    assert!(err.contains("TypeError"), "{err}");
    assert!(err.contains(r#"{"phase":"boot"}"#), "{err}");

    page.eval("window.counter = 7").await.unwrap();
    let err = format!(
        "{:#}",
        page.wait_for(
            "window.counter > 10",
            Duration::from_millis(300),
            "window.counter"
        )
        .await
        .unwrap_err()
    );
    assert!(err.contains("last value: false"), "{err}");
    assert!(err.contains(": 7"), "{err}");
}

#[tokio::test]
async fn console_messages_and_uncaught_exceptions_are_captured_per_page() {
    let (_slot, browser) = browser().await;
    let page = browser
        .new_page("data:text/html,<script>console.log('from load', 1)</script>")
        .await
        .unwrap();
    let other = browser.new_page("data:text/html,<p>quiet</p>").await.unwrap();

    page.eval("console.warn('careful'); setTimeout(() => { throw new Error('late failure') }, 0)")
        .await
        .unwrap();
    page.wait_for(
        "new Promise(r => setTimeout(() => r(true), 100))",
        Duration::from_secs(5),
        "null",
    )
    .await
    .unwrap();

    let log = page.console_log();
    assert!(log.iter().any(|l| l == "[console.log] from load 1"), "{log:#?}");
    assert!(log.iter().any(|l| l == "[console.warning] careful"), "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.starts_with("[exception]") && l.contains("late failure")),
        "{log:#?}"
    );
    assert!(other.console_log().is_empty(), "{:#?}", other.console_log());

    page.eval("for (let i = 0; i < 500; i++) console.log('line', i)")
        .await
        .unwrap();
    page.wait_for(
        "new Promise(r => setTimeout(() => r(true), 100))",
        Duration::from_secs(5),
        "null",
    )
    .await
    .unwrap();
    let log = page.console_log();
    assert_eq!(log.len(), 200);
    assert_eq!(log.last().map(String::as_str), Some("[console.log] line 499"));
}

#[tokio::test]
async fn screenshot_is_a_viewport_sized_png() {
    let (_slot, browser) = browser().await;
    let page = browser
        .new_page("data:text/html,<body style='background:%23c00'><h1>shot</h1></body>")
        .await
        .unwrap();

    let png = page.screenshot_png().await.unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG ({} bytes)",
        png.len()
    );
    let width = u64::from(u32::from_be_bytes(png[16..20].try_into().unwrap()));
    let height = u64::from(u32::from_be_bytes(png[20..24].try_into().unwrap()));
    // --window-size includes (emulated) browser chrome, so compare with the real viewport.
    let viewport = page
        .eval("[innerWidth * devicePixelRatio, innerHeight * devicePixelRatio]")
        .await
        .unwrap();
    assert_eq!(json!([width, height]), viewport);
    assert_eq!(width, 1280);
}

#[tokio::test]
async fn fake_media_devices_provide_audio_and_video_tracks() {
    let (_slot, browser) = browser().await;
    let url = serve_html("<title>media</title>").await;
    let page = browser.new_page(&url).await.unwrap();

    let tracks = page
        .eval("navigator.mediaDevices.getUserMedia({video:true,audio:true}).then(s => s.getTracks().length)")
        .await
        .unwrap();
    assert_eq!(tracks, json!(2));
}

#[tokio::test]
async fn navigation_failure_is_an_error() {
    let (_slot, browser) = browser().await;
    // A port that was just free: nothing listens there, so the connection is refused.
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = browser
        .new_page(&format!("http://127.0.0.1:{port}/"))
        .await
        .err()
        .unwrap();
    let err = format!("{err:#}");
    assert!(err.contains("ERR_CONNECTION_REFUSED"), "{err}");

    // The browser is still fine afterwards.
    let page = browser.new_page("data:text/html,ok").await.unwrap();
    assert_eq!(page.eval("document.body.textContent").await.unwrap(), json!("ok"));
}
