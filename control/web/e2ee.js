// bridgemesh web client: end-to-end encryption of the page's media (docs/e2ee.md).
// Loaded after app.js, which calls `window.bridgemeshE2ee` at four places: the peer connection's
// configuration, the new peer connection (its senders and, through 'track' events, its
// receivers), a sender added later (screen share), and every signaling message. A moderator turns
// encryption on for the room with a passphrase shared out of band; the bridge keeps only the flag
// and tells everyone; each page asks its user for the passphrase. Frames are encrypted in a worker
// (e2ee-worker.js) in the format of sframe.js.
(() => {
  'use strict';

  const bm = window.bridgemesh;
  const S = window.bridgemeshSFrame;
  if (!bm || !S) return;

  const STATE_MS = 500; // how often tiles' "cannot decrypt" state is refreshed
  const PASSPHRASE_MIN_CHARS = 8;
  const params = new URLSearchParams(location.search);

  // Which browser API carries the frames. Chromium's createEncodedStreams (with
  // `encodedInsertableStreams` in the peer connection's configuration) where it exists: Chromium
  // runs no RTCRtpScriptTransform on a simulcast sender, whose frames would leave unencrypted.
  // RTCRtpScriptTransform, the standard, elsewhere; a page using it publishes its camera as one
  // layer (simulcast.js). `?e2ee_api=script` picks it where both exist (tests run both).
  const hasEncodedStreams = typeof RTCRtpSender !== 'undefined'
    && typeof RTCRtpSender.prototype.createEncodedStreams === 'function';
  const scriptTransform = typeof RTCRtpScriptTransform === 'function'
    && (!hasEncodedStreams || params.get('e2ee_api') === 'script');
  const encodedStreams = !scriptTransform && hasEncodedStreams;
  const supported = (scriptTransform || encodedStreams) && typeof Worker === 'function' && Boolean(window.crypto && crypto.subtle);

  // Test hooks: automated browser tests read these; keep the field names stable.
  const e2ee = {
    supported,
    api: scriptTransform ? 'script_transform' : encodedStreams ? 'encoded_streams' : null,
    required: false, // the room's flag, as the bridge last said (sticky: see onFlag)
    by: null, // who set it
    keyTag: null, // the passphrase's key tag once one is set
    // remote participant id -> { camera, microphone, screen: { decrypted, failed, reason, failing } }
    remote: {},
    // this page's own streams: kind -> { frames, encrypted, dropped }
    sending: {},
    errors: [],
  };
  bm.e2ee = e2ee;

  const worker = supported ? new Worker('/e2ee-worker.js') : null;
  let nextId = 1;
  const attached = new WeakMap(); // sender or receiver -> transform id
  const receivers = new Map(); // transform id -> { receiver, kind }
  const streamStats = new Map(); // transform id -> the worker's latest report
  const assigned = new Map(); // transform id -> { pid, source, base } (counts before this assignment)
  const failing = new Map(); // transform id -> whether its latest frames failed
  let tracksByMid = new Map(); // from the bridge's latest offer
  let room = null;
  let pendingSamples = null;

  if (worker) {
    worker.onmessage = (ev) => {
      const msg = ev.data || {};
      if (msg.type === 'stats') onStats(msg);
      else if (msg.type === 'samples' && pendingSamples) {
        pendingSamples(msg.samples);
        pendingSamples = null;
      }
    };
    worker.onerror = (ev) => noteError(`encryption worker: ${ev.message || 'failed'}`);
  }

  function noteError(text) {
    e2ee.errors.push(text);
    if (e2ee.errors.length > 20) e2ee.errors.shift();
  }

  // ---- wiring the transforms ----
  function kindOf(pc, senderOrReceiver) {
    const t = pc.getTransceivers().find((x) => x.sender === senderOrReceiver || x.receiver === senderOrReceiver);
    return t ? t.receiver.track.kind : (senderOrReceiver.track && senderOrReceiver.track.kind);
  }

  function attach(target, kind, direction) {
    if (!worker || !target || attached.has(target) || (kind !== 'audio' && kind !== 'video')) return;
    const id = nextId++;
    const options = { id, kind, direction };
    try {
      if (scriptTransform) {
        target.transform = new RTCRtpScriptTransform(worker, options);
      } else {
        const { readable, writable } = target.createEncodedStreams();
        worker.postMessage({ type: 'streams', options, readable, writable }, [readable, writable]);
      }
    } catch (err) {
      noteError(`cannot attach the ${direction} transform: ${(err && err.message) || err}`);
      return;
    }
    attached.set(target, id);
    if (direction === 'recv') receivers.set(id, { receiver: target, kind });
  }

  function peerConnectionConfig() {
    return encodedStreams && supported ? { encodedInsertableStreams: true } : {};
  }

  // A new peer connection: its senders now (before any negotiation), its receivers as they come.
  function watch(pc) {
    for (const sender of pc.getSenders()) attach(sender, kindOf(pc, sender), 'send');
    // Synchronously in the 'track' event: the older API refuses streams asked for later.
    pc.addEventListener('track', (ev) => attach(ev.receiver, ev.track.kind, 'recv'));
    receivers.clear();
    assigned.clear();
    failing.clear();
    streamStats.clear();
  }

  function attachSender(sender) {
    if (!sender || !bm.pc) return;
    attach(sender, kindOf(bm.pc, sender), 'send');
  }

  // ---- what the worker reports ----
  function onStats(stats) {
    streamStats.set(stats.id, stats);
    if (stats.direction === 'send') {
      const mine = e2ee.sending[stats.kind] || {};
      mine[stats.id] = { frames: stats.frames, encrypted: stats.encrypted, dropped: stats.dropped };
      e2ee.sending[stats.kind] = mine;
    }
  }

  function midOf(receiver) {
    const pc = bm.pc;
    if (!pc) return null;
    const t = pc.getTransceivers().find((x) => x.receiver === receiver);
    return t && t.mid !== null ? String(t.mid) : null;
  }

  // Per remote participant and source: frames decrypted and failed since the bridge gave this
  // receiver to them (it reuses receivers for whoever comes next).
  function refreshRemote() {
    const remote = {};
    for (const [id, { receiver }] of receivers) {
      const info = tracksByMid.get(midOf(receiver));
      const stats = streamStats.get(id);
      if (!info || !stats) continue;
      let a = assigned.get(id);
      if (!a || a.pid !== info.participant_id || a.source !== info.source) {
        a = { pid: info.participant_id, source: info.source, base: { decrypted: stats.decrypted, failed: stats.failed } };
        assigned.set(id, a);
        failing.delete(id);
      }
      const decrypted = stats.decrypted - a.base.decrypted;
      const failed = stats.failed - a.base.failed;
      const prev = a.last || { decrypted: 0, failed: 0 };
      // Failing while the latest frames fail; a decrypted frame clears it.
      if (decrypted > prev.decrypted) failing.set(id, false);
      else if (failed > prev.failed) failing.set(id, true);
      a.last = { decrypted, failed };
      const entry = remote[a.pid] || (remote[a.pid] = {});
      entry[a.source] = { decrypted, failed, reason: stats.reason, failing: Boolean(failing.get(id)) };
    }
    e2ee.remote = remote;
    renderTiles();
    renderPrompt();
  }

  // ---- the page ----
  const el = (tag, props = {}, children = []) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === 'class') node.className = value;
      else if (key.startsWith('data-') || key.startsWith('aria-')) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) node.append(child);
    return node;
  };

  const roomView = document.getElementById('room-view');
  const header = roomView && roomView.querySelector('.room-header');
  const modPanel = document.getElementById('moderator-panel');
  if (!roomView || !header) return;

  const badge = el('span', { id: 'e2ee-badge', class: 'count e2ee-badge', hidden: true });
  const statusWrap = header.querySelector('.status-wrap');
  header.insertBefore(badge, statusWrap);

  const promptInput = el('input', { id: 'e2ee-passphrase', type: 'password', autocomplete: 'off', maxLength: 256, 'aria-label': 'Passphrase' });
  const promptError = el('p', { id: 'e2ee-passphrase-error', class: 'error small', role: 'alert', hidden: true });
  const promptText = el('p', { id: 'e2ee-prompt-text', class: 'muted small' });
  const promptForm = el('form', { id: 'e2ee-prompt', class: 'e2ee-prompt card stack tight', noValidate: true, hidden: true }, [
    el('h2', { class: 'panel-heading', textContent: 'This meeting is end-to-end encrypted' }),
    promptText,
    promptInput,
    promptError,
    el('button', { id: 'e2ee-passphrase-use', class: 'small-btn', type: 'submit', textContent: 'Use passphrase' }),
  ]);
  roomView.append(promptForm);

  const modInput = el('input', { id: 'e2ee-mod-passphrase', type: 'password', autocomplete: 'new-password', maxLength: 256 });
  const modState = el('p', { id: 'e2ee-mod-state', class: 'muted small' });
  const modError = el('p', { id: 'e2ee-mod-error', class: 'error small', role: 'alert', hidden: true });
  const modOn = el('button', { id: 'e2ee-on', class: 'small-btn', type: 'submit', textContent: 'Turn on' });
  const modOff = el('button', { id: 'e2ee-off', class: 'small-btn', type: 'button', textContent: 'Turn off' });
  const modForm = el('form', { id: 'e2ee-mod-form', class: 'mod-section stack tight', noValidate: true }, [
    el('h2', { class: 'panel-heading', textContent: 'End-to-end encryption' }),
    el('p', { class: 'muted small', textContent: 'Media is encrypted in each browser with a passphrase you share with the participants yourself (not through this meeting). The server never sees it.' }),
    el('label', { class: 'field' }, [el('span', { textContent: 'Passphrase' }), modInput]),
    modState,
    modError,
    el('div', { class: 'row' }, [modOn, modOff]),
  ]);
  if (modPanel) modPanel.append(modForm);

  function show(node, text) {
    node.textContent = text || '';
    node.hidden = !text;
  }

  function nameOf(pid) {
    if (pid === bm.participantId) return 'you';
    const p = bm.participants.get(pid);
    return (p && p.display_name) || 'a moderator';
  }

  function reasonText(reason) {
    switch (reason) {
      case 'missing_key': return 'missing key';
      case 'wrong_key': return 'wrong passphrase';
      case 'not_encrypted': return 'not encrypted';
      case 'unsupported_codec': return 'codec not supported';
      default: return reason || 'error';
    }
  }

  function renderTiles() {
    for (const tileEl of document.querySelectorAll('.tile[data-tile]')) {
      const key = tileEl.dataset.tile;
      if (key === 'local' || key === 'local:screen') continue;
      const screen = key.endsWith(':screen');
      const pid = screen ? key.slice(0, -':screen'.length) : key;
      const entry = e2ee.remote[pid] || {};
      const bad = (screen ? [entry.screen] : [entry.camera, entry.microphone]).filter((x) => x && x.failing);
      let overlay = tileEl.querySelector('.e2ee-overlay');
      if (!e2ee.required || bad.length === 0) {
        if (overlay) overlay.remove();
        tileEl.classList.remove('e2ee-failing');
        continue;
      }
      if (!overlay) {
        overlay = el('div', { class: 'e2ee-overlay', role: 'status' });
        tileEl.append(overlay);
      }
      tileEl.classList.add('e2ee-failing');
      const failed = bad.reduce((n, x) => n + x.failed, 0);
      overlay.replaceChildren(
        el('strong', { class: 'e2ee-overlay-title', textContent: `Cannot decrypt: ${reasonText(bad[0].reason)}` }),
        el('span', { class: 'e2ee-overlay-count', textContent: `${failed} frame${failed === 1 ? '' : 's'} could not be decrypted` }),
      );
    }
  }

  function wrongKeySeen() {
    return Object.values(e2ee.remote).some((entry) => Object.values(entry).some((x) => x.failing && x.reason === 'wrong_key'));
  }

  function renderPrompt() {
    const needKey = e2ee.required && e2ee.keyTag === null;
    const wrong = e2ee.required && e2ee.keyTag !== null && wrongKeySeen();
    promptForm.hidden = !(needKey || wrong) || !supported;
    if (!promptForm.hidden) {
      promptText.textContent = wrong
        ? 'Others\' media cannot be decrypted with your passphrase. Check it with the host.'
        : `${nameOf(e2ee.by)} turned end-to-end encryption on. Enter the passphrase the host shared with you: until then you neither see nor hear the others, and they neither see nor hear you.`;
    }
  }

  function render() {
    // Turned off after being on: said, so a bridge cannot switch it off unnoticed.
    badge.hidden = !e2ee.required && !e2ee.by;
    badge.classList.toggle('off', !e2ee.required);
    badge.classList.toggle('no-key', e2ee.required && e2ee.keyTag === null);
    badge.textContent = e2ee.required
      ? (e2ee.keyTag === null ? 'End-to-end encrypted · no key' : 'End-to-end encrypted')
      : `Not end-to-end encrypted (turned off by ${nameOf(e2ee.by)})`;
    if (!supported && e2ee.required) {
      badge.textContent = 'End-to-end encrypted · not supported by this browser';
      badge.classList.add('no-key');
    }
    modState.textContent = e2ee.required
      ? `On (set by ${nameOf(e2ee.by)}). A new passphrase here changes the key for everyone who enters it.`
      : (e2ee.by ? `Off (turned off by ${nameOf(e2ee.by)}).` : 'Off.');
    modOn.textContent = e2ee.required ? 'Change passphrase' : 'Turn on';
    modOff.disabled = !e2ee.required;
    modOn.disabled = !supported;
    renderPrompt();
    renderTiles();
  }

  // ---- keys and the room's flag ----
  function roomName() {
    if (room) return room;
    try { return decodeURIComponent(location.pathname.replace(/^\/+|\/+$/g, '')); } catch { return location.pathname; }
  }

  async function setPassphrase(passphrase) {
    if (!worker) throw new Error('end-to-end encryption is not supported by this browser');
    const { secret, keyTag } = await S.deriveRoomSecret(passphrase, roomName());
    await new Promise((resolve) => {
      const done = (ev) => {
        if (ev.data && ev.data.type === 'key_set') {
          worker.removeEventListener('message', done);
          resolve();
        }
      };
      worker.addEventListener('message', done);
      worker.postMessage({ type: 'key', secret: { bytes: secret, keyTag } });
    });
    e2ee.keyTag = keyTag;
    // Receivers that failed with the old key get a fresh verdict with the new one.
    for (const id of failing.keys()) failing.set(id, false);
    render();
    return keyTag;
  }

  function setRequired(required) {
    e2ee.required = required;
    if (worker) worker.postMessage({ type: 'required', required });
    render();
  }

  // The bridge's `e2ee`. Once on, the page stays encrypting until the bridge says it was turned
  // off: a bridge that forgot the room (a failover) cannot turn it off by saying nothing.
  function onFlag(msg) {
    if (typeof msg.required !== 'boolean') return;
    e2ee.by = typeof msg.by === 'string' ? msg.by : null;
    setRequired(msg.required);
  }

  async function enable(passphrase) {
    if (typeof passphrase !== 'string' || Array.from(passphrase).length < PASSPHRASE_MIN_CHARS) {
      throw new Error(`Use a passphrase of at least ${PASSPHRASE_MIN_CHARS} characters (a few random words are best).`);
    }
    await setPassphrase(passphrase);
    if (bm.sendSignal) bm.sendSignal({ type: 'set_e2ee', required: true });
  }

  function disable() {
    if (bm.sendSignal) bm.sendSignal({ type: 'set_e2ee', required: false });
  }

  promptForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const value = promptInput.value;
    if (!value) return;
    show(promptError, '');
    try {
      await setPassphrase(value);
      promptInput.value = '';
    } catch (err) {
      show(promptError, (err && err.message) || 'That passphrase could not be used.');
    }
  });

  modForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    show(modError, '');
    try {
      await enable(modInput.value);
      modInput.value = '';
    } catch (err) {
      show(modError, (err && err.message) || 'Could not turn end-to-end encryption on.');
    }
  });
  modOff.addEventListener('click', () => disable());

  function onMessage(msg) {
    switch (msg.type) {
      case 'welcome':
        if (typeof msg.room === 'string') room = msg.room;
        // A new session (a reconnect, maybe to a bridge new to the room): a moderator's page
        // tells it the flag again.
        if (e2ee.required && bm.isModerator && bm.isModerator() && bm.sendSignal) {
          bm.sendSignal({ type: 'set_e2ee', required: true });
        }
        render();
        break;
      case 'offer':
        tracksByMid = new Map((Array.isArray(msg.tracks) ? msg.tracks : []).map((t) => [String(t.mid), t]));
        break;
      case 'e2ee': onFlag(msg); break;
      default: break;
    }
  }

  // Test hooks.
  Object.assign(e2ee, {
    setPassphrase,
    enable,
    disable,
    recordSamples: (on) => worker && worker.postMessage({ type: 'record_samples', on: Boolean(on) }),
    samples: () => new Promise((resolve) => {
      if (!worker) { resolve(null); return; }
      pendingSamples = resolve;
      worker.postMessage({ type: 'samples' });
    }),
  });

  setInterval(refreshRemote, STATE_MS);
  render();
  window.bridgemeshE2ee = { peerConnectionConfig, watch, attachSender, onMessage };
})();
