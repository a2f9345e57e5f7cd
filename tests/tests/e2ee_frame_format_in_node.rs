//! The web client's end-to-end encryption frame format (`control/web/sframe.js`: the RFC 9605
//! header, the clear VP8 payload header, keys per KID, tampering refused), by its tests in node's
//! own test runner (`control/web/sframe.test.js`). Debian's `nodejs` (installed by `scripts/test`).

use std::path::Path;
use std::process::Command;

#[test]
fn the_sframe_tests_pass_in_node() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../control/web");
    let output = Command::new("node")
        .arg("--test")
        .arg("sframe.test.js")
        .current_dir(&web)
        .output()
        .expect("node runs (Debian's nodejs package; scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "node --test failed:\n{stdout}\n{stderr}");
    // The runner found and ran the tests (an empty file also "passes").
    let passed: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("# pass "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(passed >= 6, "{stdout}");
    assert!(stdout.contains("# fail 0"), "{stdout}");
}
