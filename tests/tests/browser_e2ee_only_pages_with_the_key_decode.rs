//! End-to-end encryption in the web client, three Chromium pages against `bridgemesh up`:
//! - Ada (who opened the room, so a moderator) turns encryption on with a passphrase through the
//!   moderator panel; Bob is asked for it and types it in. Ada's page carries frames through
//!   Chromium's `createEncodedStreams` (its default: her camera is sent as simulcast layers), Bob's
//!   through `RTCRtpScriptTransform` (`?e2ee_api=script`: his camera is one layer), so both paths
//!   interoperate. Each decodes the other's video (more
//!   frames decoded, every one of them decrypted by the page, the picture the sender's camera
//!   shows: same size, same average colour) and audio (samples played that are not concealment).
//!   Ada's screen share reaches Bob encrypted and decoded too, and the bridge still names the
//!   dominant speaker from the audio levels in the (clear) RTP header.
//! - Cy joins late and has no key: it decodes no frame of theirs, its tiles say "Cannot decrypt:
//!   missing key" with a count, and it sends nothing (its frames are dropped, not sent in the clear).
//!   A wrong passphrase says "wrong passphrase"; the right one, typed late, gets Cy decoding.
//! - The bridge saw ciphertext: Cy's receive transform sees the payloads exactly as the bridge
//!   forwarded them (the browser only removed SRTP, the bridge's hop encryption). Frames Ada's
//!   worker encrypted arrive at Cy byte for byte (same KID, counter, length and ciphertext), and
//!   that ciphertext is not Ada's plaintext.

use bridgemesh_tests::chromium::{Browser, LaunchOptions};
use bridgemesh_tests::harness::web::{Participant, dump};
use bridgemesh_tests::harness::{room, up};
use bridgemesh_tests::tone::write_tone;
use serde_json::Value;
use std::time::Duration;

const MEDIA_TIMEOUT: Duration = Duration::from_secs(40);
const PASSPHRASE: &str = "tangerine lobster quilt";

/// Per remote participant: video frames decoded, audio samples played that are not concealment,
/// and what the page's decryption counted (`bridgemesh.e2ee.remote`).
const MEDIA_JS: &str = r#"(async () => {
  const bm = window.bridgemesh;
  const out = { video: {}, audio: {}, e2ee: bm.e2ee.remote, required: bm.e2ee.required, keyTag: bm.e2ee.keyTag };
  if (!bm.pc) return out;
  const pidOfMid = new Map();
  const sdp = (bm.pc.remoteDescription && bm.pc.remoteDescription.sdp) || '';
  for (const section of sdp.split(/\r?\nm=/).slice(1)) {
    const mid = (section.match(/^a=mid:(\S+)/m) || [])[1];
    const msid = (section.match(/^a=msid:(\S+)/m) || [])[1];
    if (mid !== undefined && msid && msid !== '-') pidOfMid.set(mid, msid);
  }
  const stats = await bm.pc.getStats();
  stats.forEach((r) => {
    if (r.type !== 'inbound-rtp') return;
    const pid = pidOfMid.get(r.mid);
    if (!pid) return;
    if (r.kind === 'video') out.video[pid] = (out.video[pid] || 0) + (r.framesDecoded || 0);
    else out.audio[pid] = (out.audio[pid] || 0) + (r.totalSamplesReceived || 0) - (r.concealedSamples || 0);
  });
  return out;
})()"#;

/// The average colour of a video element, drawn small.
fn mean_colour_js(selector: &str) -> String {
    format!(
        r#"(() => {{
  const v = document.querySelector({selector});
  if (!v || !v.videoWidth) return null;
  const c = document.createElement('canvas');
  c.width = 32; c.height = 18;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0, 32, 18);
  const d = g.getImageData(0, 0, 32, 18).data;
  const sum = [0, 0, 0];
  for (let i = 0; i < d.length; i += 4) {{ sum[0] += d[i]; sum[1] += d[i + 1]; sum[2] += d[i + 2]; }}
  const n = d.length / 4;
  return {{ rgb: sum.map((s) => s / n), width: v.videoWidth, height: v.videoHeight }};
}})()"#,
        selector = serde_json::to_string(selector).unwrap()
    )
}

async fn eval(page: &Participant, expression: &str) -> Value {
    page.page
        .eval(expression)
        .await
        .unwrap_or_else(|err| panic!("{}: {err:#}", page.name))
}

async fn wait(page: &Participant, what: &str, expression: &str, others: &[&Participant]) {
    if let Err(err) = page
        .page
        .wait_for(
            expression,
            MEDIA_TIMEOUT,
            "JSON.stringify(window.bridgemesh.e2ee)",
        )
        .await
    {
        let mut report = format!("{}: {what}: {err:#}\n", page.name);
        report.push_str(&dump(&page.page, &page.name).await);
        for other in others {
            report.push_str(&dump(&other.page, &other.name).await);
            // Its senders (kind, layers) and what its encryption counted.
            let e2ee = other
                .page
                .eval(
                    "JSON.stringify(window.bridgemesh.e2ee) + ' transceivers=' + JSON.stringify(window.bridgemesh.pc\
                     .getTransceivers().map((t) => [t.mid, t.currentDirection, t.sender.track && t.sender.track.label, \
                     (t.sender.getParameters().encodings || []).length]))",
                )
                .await;
            report.push_str(&format!("E2EE of {}: {e2ee:?}\n", other.name));
        }
        panic!("{report}");
    }
}

/// Waits until `page` decoded `frames` more video frames and played `samples` more audio samples
/// from `from` than in `before`, every video frame since E2EE went on having been decrypted.
async fn wait_for_decrypted_media(page: &Participant, from: &str, before: &Value, others: &[&Participant]) {
    let from_js = serde_json::to_string(from).unwrap();
    let video_before = before["video"][from].as_u64().unwrap_or(0);
    let audio_before = before["audio"][from].as_u64().unwrap_or(0);
    let condition = format!(
        "{MEDIA_JS}.then((m) => {{ const e = m.e2ee[{from_js}] || {{}}; \
         return (m.video[{from_js}] || 0) > {video_before} + 30 && (m.audio[{from_js}] || 0) > {audio_before} + 48000 \
         && e.camera && e.camera.decrypted > 30 && !e.camera.failing \
         && e.microphone && e.microphone.decrypted > 50 && !e.microphone.failing; }})"
    );
    wait(page, &format!("decrypted media from {from}"), &condition, others).await;
}

async fn assert_same_picture(receiver: &Participant, sender_id: &str, sender: &Participant) {
    let tile = format!(".tile[data-tile=\"{sender_id}\"] video");
    let received = eval(receiver, &mean_colour_js(&tile)).await;
    let sent = eval(sender, &mean_colour_js(".tile[data-tile=\"local\"] video")).await;
    assert!(
        received.is_object() && sent.is_object(),
        "{} shows {}'s video: {received} / {sent}",
        receiver.name,
        sender.name
    );
    // Same aspect ratio (the encoder may scale down under a bandwidth limit, never reshape).
    let ratio = |v: &Value| v["width"].as_f64().unwrap() / v["height"].as_f64().unwrap();
    assert!(
        (ratio(&received) - ratio(&sent)).abs() < 0.02,
        "frame shape: received {received}, sent {sent}"
    );
    let rgb = |v: &Value| -> Vec<f64> {
        v["rgb"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (r, s) = (rgb(&received), rgb(&sent));
    assert!(
        r.iter().sum::<f64>() > 30.0,
        "{} sees a picture, not black: {received}",
        receiver.name
    );
    for (a, b) in r.iter().zip(&s) {
        assert!(
            (a - b).abs() < 30.0,
            "{}'s picture of {} has the camera's colours: received {received}, sent {sent}",
            receiver.name,
            sender.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_with_the_passphrase_decode_each_other_and_a_page_without_it_decodes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tone = dir.path().join("tone.wav");
    write_tone(&tone);
    let running = up().await;
    let room = room("e2ee");
    let browser = Browser::launch_with(LaunchOptions {
        args: vec![
            // Screen capture without a picker: Chromium's fake display.
            "--auto-select-desktop-capture-source=Entire screen".into(),
            // Microphones that talk, for the dominant speaker.
            format!("--use-file-for-fake-audio-capture={}", tone.display()),
        ],
        ..LaunchOptions::default()
    })
    .await
    .expect("chromium starts");
    let ada = Participant::open(&browser, &running, &room, "Ada").await;
    // The first to join opens the room and moderates it: Ada, before Bob's page starts.
    wait(
        &ada,
        "the room's moderator",
        "window.bridgemesh.role() === 'moderator'",
        &[],
    )
    .await;
    let bob = Participant::open_with_query(&browser, &running, &room, "Bob", "&e2ee_api=script").await;
    let bob_id = ada.wait_for_media_from(&bob, MEDIA_TIMEOUT).await;
    let ada_id = bob.wait_for_media_from(&ada, MEDIA_TIMEOUT).await;
    assert_eq!(eval(&ada, "window.bridgemesh.e2ee.api").await, "encoded_streams");
    assert_eq!(eval(&bob, "window.bridgemesh.e2ee.api").await, "script_transform");
    // Ada's camera as simulcast layers, Bob's as one: a script transform runs on no simulcast
    // sender in Chromium.
    let layers = "window.bridgemesh.pc.getTransceivers().filter((t) => !t.stopped && t.sender.track \
                  && t.sender.track.kind === 'video').map((t) => (t.sender.getParameters().encodings || []).length)";
    assert_eq!(eval(&ada, layers).await, serde_json::json!([3]));
    assert_eq!(eval(&bob, layers).await, serde_json::json!([1]));
    eval(&ada, "window.bridgemesh.e2ee.recordSamples(true)").await;

    // Bob is no moderator: the bridge refuses him.
    eval(
        &bob,
        "window.bridgemesh.sendSignal({ type: 'set_e2ee', required: true })",
    )
    .await;
    wait(
        &bob,
        "refused",
        "window.bridgemesh.meeting.errors.some((e) => /moderator/.test(e))",
        &[],
    )
    .await;
    assert_eq!(eval(&ada, "window.bridgemesh.e2ee.required").await, false);

    // Ada turns it on in the moderator panel.
    let before_on = (eval(&ada, MEDIA_JS).await, eval(&bob, MEDIA_JS).await);
    ada.click("moderate-button").await;
    eval(
        &ada,
        &format!(
            "document.getElementById('e2ee-mod-passphrase').value = {}; document.getElementById('e2ee-mod-form').requestSubmit(); true",
            serde_json::to_string(PASSPHRASE).unwrap()
        ),
    )
    .await;
    wait(
        &ada,
        "encryption on",
        "window.bridgemesh.e2ee.required && window.bridgemesh.e2ee.keyTag !== null",
        &[],
    )
    .await;

    // Bob is asked for the passphrase, sees no key meanwhile, and types it in.
    wait(
        &bob,
        "asked for the passphrase",
        "window.bridgemesh.e2ee.required && !document.getElementById('e2ee-prompt').hidden \
         && document.getElementById('e2ee-badge').textContent.includes('no key')",
        &[&ada],
    )
    .await;
    eval(
        &bob,
        &format!(
            "document.getElementById('e2ee-passphrase').value = {}; document.getElementById('e2ee-passphrase-use').click(); true",
            serde_json::to_string(PASSPHRASE).unwrap()
        ),
    )
    .await;
    wait(
        &bob,
        "key set",
        "window.bridgemesh.e2ee.keyTag !== null && document.getElementById('e2ee-prompt').hidden",
        &[],
    )
    .await;
    assert_eq!(
        eval(&ada, "window.bridgemesh.e2ee.keyTag").await,
        eval(&bob, "window.bridgemesh.e2ee.keyTag").await,
        "one passphrase, one key"
    );

    wait_for_decrypted_media(&ada, &bob_id, &before_on.0, &[&bob]).await;
    wait_for_decrypted_media(&bob, &ada_id, &before_on.1, &[&ada]).await;
    assert_same_picture(&ada, &bob_id, &bob).await;
    assert_same_picture(&bob, &ada_id, &ada).await;
    let sending = eval(&ada, "JSON.stringify(window.bridgemesh.e2ee.sending)").await;
    assert!(sending.as_str().unwrap().contains("\"encrypted\""), "{sending}");

    // Cy joins late, without the key.
    let cy = Participant::open(&browser, &running, &room, "Cy").await;
    eval(&cy, "window.bridgemesh.e2ee.recordSamples(true)").await;
    wait(
        &cy,
        "told the room is encrypted",
        "window.bridgemesh.e2ee.required === true",
        &[&ada],
    )
    .await;
    for (pid, name) in [(&ada_id, "Ada"), (&bob_id, "Bob")] {
        let pid_js = serde_json::to_string(pid).unwrap();
        wait(
            &cy,
            &format!("cannot decrypt {name}"),
            &format!(
                "(() => {{ const e = window.bridgemesh.e2ee.remote[{pid_js}] || {{}}; \
                 const o = document.querySelector('.tile[data-tile=' + JSON.stringify({pid_js}) + '] .e2ee-overlay'); \
                 return Boolean(e.camera && e.camera.failing && e.camera.reason === 'missing_key' && e.camera.failed > 20 \
                   && e.microphone && e.microphone.failed > 20 && o && o.textContent.includes('Cannot decrypt: missing key') \
                   && /\\d+ frames could not be decrypted/.test(o.textContent)); }})()"
            ),
            &[&ada],
        )
        .await;
    }
    let cy_media = eval(&cy, MEDIA_JS).await;
    for pid in [&ada_id, &bob_id] {
        assert_eq!(
            cy_media["video"][pid].as_u64().unwrap_or(0),
            0,
            "Cy decoded a frame of {pid}: {cy_media}"
        );
        assert_eq!(cy_media["e2ee"][pid]["camera"]["decrypted"], 0, "{cy_media}");
        assert_eq!(cy_media["e2ee"][pid]["microphone"]["decrypted"], 0, "{cy_media}");
    }
    // Cy sends nothing in the clear: its frames are dropped until it has the key.
    wait(
        &cy,
        "its own frames dropped",
        "(() => { const v = Object.values(window.bridgemesh.e2ee.sending.video || {}); \
         return v.some((s) => s.dropped > 10) && v.every((s) => s.encrypted === 0); })()",
        &[],
    )
    .await;

    // What reached Cy is what Ada's worker encrypted, byte for byte, and not her plaintext.
    let sent = eval(&ada, "window.bridgemesh.e2ee.samples()").await;
    let received = eval(&cy, "window.bridgemesh.e2ee.samples()").await;
    let mut matched = 0;
    for r in received["received"].as_array().unwrap() {
        let Some(s) = sent["sent"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["kid"] == r["kid"] && s["ctr"] == r["ctr"])
        else {
            continue;
        };
        assert_eq!(s["length"], r["length"], "forwarded untouched: {s} / {r}");
        assert_eq!(s["sealed"], r["sealed"], "forwarded untouched: {s} / {r}");
        assert_ne!(s["sealed"], s["plain"], "ciphertext, not plaintext: {s}");
        matched += 1;
    }
    assert!(
        matched >= 5,
        "frames of Ada's found at Cy: {matched}; sent {sent}; received {received}"
    );

    // Screen share, encrypted, reaches Bob and is decoded.
    ada.click("screen-button").await;
    let condition = format!(
        "(() => {{ const e = window.bridgemesh.e2ee.remote[{pid}] || {{}}; \
         const v = document.querySelector('.tile[data-tile=' + JSON.stringify({pid} + ':screen') + '] video'); \
         return Boolean(e.screen && e.screen.decrypted > 10 && !e.screen.failing && v && v.videoWidth > 0); }})()",
        pid = serde_json::to_string(&ada_id).unwrap()
    );
    wait(&bob, "Ada's screen, decrypted", &condition, &[&ada]).await;

    // The bridge still names who speaks from the audio levels in the clear RTP header: Bob mutes,
    // Ada is the speaker; they swap, Bob is.
    let speaker_is = |pid: &str| {
        format!(
            "window.bridgemesh.dominantSpeaker === {}",
            serde_json::to_string(pid).unwrap()
        )
    };
    bob.click("mic-button").await;
    wait(&bob, "Ada speaks", &speaker_is(&ada_id), &[&ada]).await;
    ada.click("mic-button").await;
    bob.click("mic-button").await;
    wait(&ada, "Bob speaks", &speaker_is(&bob_id), &[&bob]).await;
    ada.click("mic-button").await;

    // Cy tries a wrong passphrase: told so on the tiles and asked again; then the right one, and
    // Cy's decoder, which never had a frame, starts on the next keyframe it asks for.
    let enter = |passphrase: &str| {
        format!(
            "document.getElementById('e2ee-passphrase').value = {}; document.getElementById('e2ee-passphrase-use').click(); true",
            serde_json::to_string(passphrase).unwrap()
        )
    };
    eval(&cy, &enter("tangerine lobster quilts")).await;
    let ada_js = serde_json::to_string(&ada_id).unwrap();
    wait(
        &cy,
        "wrong passphrase",
        &format!(
            "(() => {{ const e = window.bridgemesh.e2ee.remote[{ada_js}] || {{}}; \
             const o = document.querySelector('.tile[data-tile=' + JSON.stringify({ada_js}) + '] .e2ee-overlay'); \
             return Boolean(e.camera && e.camera.failing && e.camera.reason === 'wrong_key' \
               && o && o.textContent.includes('Cannot decrypt: wrong passphrase') \
               && !document.getElementById('e2ee-prompt').hidden); }})()"
        ),
        &[&ada],
    )
    .await;
    let cy_before = eval(&cy, MEDIA_JS).await;
    eval(&cy, &enter(PASSPHRASE)).await;
    wait_for_decrypted_media(&cy, &ada_id, &cy_before, &[&ada]).await;
    wait(
        &cy,
        "no more overlay",
        &format!(
            "!document.querySelector('.tile[data-tile=' + JSON.stringify({ada_js}) + '] .e2ee-overlay')"
        ),
        &[&ada],
    )
    .await;

    // Turned off: media flows in the clear again and Cy decodes it.
    let before_off = eval(&cy, MEDIA_JS).await;
    ada.click("e2ee-off").await;
    wait(
        &cy,
        "encryption off",
        "window.bridgemesh.e2ee.required === false",
        &[&ada],
    )
    .await;
    let frames_before = before_off["video"][&ada_id].as_u64().unwrap_or(0);
    wait(
        &cy,
        "Ada's video in the clear",
        &format!(
            "{MEDIA_JS}.then((m) => (m.video[{}] || 0) > {frames_before} + 10)",
            serde_json::to_string(&ada_id).unwrap()
        ),
        &[&ada],
    )
    .await;

    for page in [ada, bob, cy] {
        page.page.close().await.unwrap();
    }
    drop(browser);
    running.stop().await;
}
