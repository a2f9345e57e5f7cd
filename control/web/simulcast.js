// bridgemesh web client: simulcast. The bridge's offer asks for the camera as three layers
// (rids q, h, f; the browser scales them down by 4, 2 and 1); this tunes their bit rates and turns
// off layers too small to be worth sending. And it tells the bridge what the layout shows
// (`receiver_constraints`): per remote tile the height it needs, so a thumbnail never receives
// 720p and a hidden tab receives no video at all. docs/simulcast.md describes both.
// Loaded after app.js; reads window.bridgemesh (pc, tiles, sendSignal) when it runs.
(() => {
  'use strict';

  // Per layer, lowest first: the most it may send (bit/s).
  const LAYER_MAX_BITRATES = [150000, 500000, 1500000];
  // A layer smaller than this is not sent (small cameras send fewer layers).
  const MIN_LAYER_HEIGHT = 90;
  // Height asked for sources that have no tile yet (a thumbnail's).
  const DEFAULT_MAX_HEIGHT = 180;
  // The bridge refuses more.
  const SOURCES_MAX = 256;
  const CHECK_INTERVAL_MS = 1000;
  const SETTLE_MS = 250;

  let lastSent = null;
  let lastPc = null;
  let timer = null;

  // Called by app.js between applying an offer and answering it. A browser does not attach an
  // m-line that asks for simulcast to a transceiver made by addTrack (its one encoding has no
  // rid): it makes a transceiver of its own, with one encoding per offered rid and no track, and
  // would answer it `inactive`. The camera moves to that transceiver (sending). Returns the
  // camera's sender; app.js gives the one it left to the screen.
  async function adoptCamera(pc, camSender) {
    if (!pc || !pc.getTransceivers) return camSender;
    const simulcast = pc.getTransceivers().find((t) => t.mid !== null && !t.stopped
      && t.receiver && t.receiver.track && t.receiver.track.kind === 'video'
      && t.sender !== camSender && (t.sender.getParameters().encodings || []).filter((e) => e.rid).length > 1);
    if (!simulcast) return camSender;
    const track = camSender ? camSender.track : null;
    await simulcast.sender.replaceTrack(track);
    simulcast.direction = 'sendonly';
    return simulcast.sender;
  }

  // Called by app.js once an answer is applied: the camera sender's layers, if it has several.
  async function onNegotiated(sender) {
    if (!sender || !sender.getParameters || !sender.setParameters) return;
    const params = sender.getParameters();
    const encodings = params.encodings || [];
    if (encodings.length < 2) return; // not simulcast (the bridge did not ask, or screen share)
    const track = sender.track;
    const height = track && track.getSettings ? track.getSettings().height || 0 : 0;
    let changed = false;
    encodings.forEach((encoding, index) => {
      const scale = encoding.scaleResolutionDownBy || 2 ** (encodings.length - index - 1);
      const maxBitrate = LAYER_MAX_BITRATES[Math.min(index, LAYER_MAX_BITRATES.length - 1)];
      // The top layer always; the others only when they are big enough to be worth it.
      const active = index === encodings.length - 1 || !height || height / scale >= MIN_LAYER_HEIGHT;
      if (encoding.maxBitrate !== maxBitrate || encoding.active !== active || encoding.scaleResolutionDownBy !== scale) {
        encoding.maxBitrate = maxBitrate;
        encoding.active = active;
        encoding.scaleResolutionDownBy = scale;
        changed = true;
      }
    });
    if (!changed) return;
    try {
      await sender.setParameters(params);
    } catch (err) {
      console.warn('simulcast: could not tune the camera layers', err);
    }
  }

  // The bridge's offer as this page applies it. A page that encrypts through
  // RTCRtpScriptTransform (e2ee.js) declines simulcast: Chromium runs no script transform on a
  // simulcast sender, and a browser cannot be asked whether it does. Without the rid and
  // simulcast lines its camera's own transceiver takes the m-line and sends one layer, which the
  // bridge forwards as it does any client's that does not simulcast.
  function offerToApply(sdp) {
    const e2ee = window.bridgemesh && window.bridgemesh.e2ee;
    if (!e2ee || e2ee.api !== 'script_transform') return sdp;
    return sdp.split('\r\n').filter((line) => !/^a=(simulcast|rid):/.test(line)).join('\r\n');
  }

  // What the layout shows now, as the bridge reads it.
  function constraints() {
    const bm = window.bridgemesh;
    if (!bm || !bm.tiles) return null;
    if (document.visibilityState === 'hidden') {
      return { default_max_height: 0, on_stage_max_height: 0, sources: [], on_stage: [] };
    }
    const ratio = window.devicePixelRatio || 1;
    const sources = [];
    const onStage = [];
    for (const tile of bm.tiles.values()) {
      if (tile.local || !tile.pid || sources.length >= SOURCES_MAX / 2) continue;
      const source = tile.screen ? 'screen' : 'camera';
      const rect = tile.el.getBoundingClientRect();
      const shown = rect.width > 0 && rect.height > 0 && tile.el.getClientRects().length > 0;
      const maxHeight = shown ? Math.min(65535, Math.ceil(rect.height * ratio)) : 0;
      sources.push({ participant_id: tile.pid, source, max_height: maxHeight });
      if (tile.screen || tile.el.classList.contains('speaking')) onStage.push({ participant_id: tile.pid, source });
    }
    sources.sort((a, b) => (a.participant_id + a.source).localeCompare(b.participant_id + b.source));
    return { default_max_height: DEFAULT_MAX_HEIGHT, on_stage_max_height: 65535, sources, on_stage: onStage };
  }

  // Sends the constraints when they changed (or the connection is new).
  function check() {
    const bm = window.bridgemesh;
    if (!bm || !bm.sendSignal) return;
    if (bm.pc !== lastPc) {
      lastPc = bm.pc;
      lastSent = null;
    }
    if (!bm.pc) return;
    const wanted = constraints();
    if (!wanted) return;
    const text = JSON.stringify(wanted);
    if (text === lastSent) return;
    lastSent = text;
    bm.sendSignal({ type: 'receiver_constraints', ...wanted });
    bm.receiverConstraints = wanted;
  }

  // Layout changes come in bursts (a tile added relayouts the grid): send once they settle.
  function soon() {
    clearTimeout(timer);
    timer = setTimeout(check, SETTLE_MS);
  }

  function start() {
    document.addEventListener('visibilitychange', soon);
    window.addEventListener('resize', soon);
    if (window.ResizeObserver) {
      const observer = new ResizeObserver(soon);
      for (const id of ['grid', 'stage']) {
        const el = document.getElementById(id);
        if (el) observer.observe(el);
      }
    }
    if (window.MutationObserver) {
      const observer = new MutationObserver(soon);
      for (const id of ['grid', 'stage']) {
        const el = document.getElementById(id);
        if (el) observer.observe(el, { childList: true, subtree: true, attributes: true, attributeFilter: ['class', 'style'] });
      }
    }
    // A safety net for changes no observer sees (a new connection after a reconnect).
    setInterval(check, CHECK_INTERVAL_MS);
  }

  window.bridgemeshSimulcast = { adoptCamera, offerToApply, onNegotiated, constraints, check };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
