// bridgemesh web client: start page, pre-join and the meeting room.
// Plain browser JavaScript, served by the control node with index.html and style.css.
// The bridge is always the SDP offerer; this client only answers (see docs/signaling.md).
(() => {
  'use strict';

  const ROOM_RE = /^[a-z0-9_-][a-z0-9._-]{0,63}$/;
  const NAME_MAX_CHARS = 64;
  const STORE_NAME = 'bridgemesh.displayName';
  const STORE_MIC = 'bridgemesh.micId';
  const STORE_CAMERA = 'bridgemesh.cameraId';
  const SOURCES = ['microphone', 'camera', 'screen'];
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 5000;
  const RETRY_AFTER_MAX_MS = 30000;
  const DISCONNECT_GRACE_MS = 3000;
  const WELCOME_TIMEOUT_MS = 10000;
  const JOIN_TIMEOUT_MS = 15000;
  // Active speaker: RMS level a voice must exceed, how long a new voice must stay loudest
  // before the highlight moves, and how long the highlight outlives silence.
  const SPEAK_THRESHOLD = 0.02;
  const SPEAK_SWITCH_MS = 300;
  const SPEAK_HOLD_MS = 1500;
  const METER_INTERVAL_MS = 100;
  const MIN_TILE_WIDTH = 160;
  const RETRYABLE_CODES = new Set(['no_capacity', 'rate_limited', 'internal', 'network', 'bad_response']);

  // Test hooks: automated browser tests read this object; keep the field names stable.
  const bm = {
    pc: null,
    participantId: null,
    state: 'idle', // idle | joining | connected | reconnecting | left | error
    participants: new Map(), // remote participant id -> P as last received
    // performance.now() of the last join click and of the first remote video frame rendered
    // after it; the fields in between break that time down (first occurrence per join).
    metrics: {
      joinClickedAt: null,
      joinResponseAt: null, // the control API answered the join
      signalingOpenAt: null, // the bridge's WebSocket opened
      welcomeAt: null,
      offerAt: null, // the bridge's first offer arrived
      answerSentAt: null,
      iceConnectedAt: null,
      connectedAt: null, // the peer connection is connected (ICE and DTLS)
      remoteVideoTrackAt: null, // a remote participant's camera track was attached to a tile
      remoteVideoUnmutedAt: null, // its first packets arrived
      firstRemoteFrameAt: null,
    },
    reconnects: 0,
    activeSpeaker: null, // tile key ('local' or a participant id) or null
  };
  window.bridgemesh = bm;

  const app = {
    room: null,
    jwt: null,
    displayName: '',
    localStream: new MediaStream(), // mic + camera, kept across reconnects
    screenStream: new MediaStream(),
    micTrack: null,
    camTrack: null,
    screenTrack: null,
    micOn: true, // what the user asked for; the track may be missing
    camOn: true,
    acquiring: { audio: false, video: false },
    mediaGen: 0,
    session: null, // one WebSocket + RTCPeerConnection
    attempt: null, // identifies the connect() call in flight
    retryAttempt: 0,
    retryTimer: null,
    audioCtx: null,
    meterTimer: null,
  };

  const tiles = new Map(); // 'local', 'local:screen', '<pid>', '<pid>:screen' -> tile
  const remoteMedia = new Map(); // pid -> { microphone, camera, screen } tracks
  const audioEls = new Map(); // pid -> { el, track }
  const meters = new Map(); // 'local' or pid -> analyser state
  const speaker = { candidate: null, since: 0 };

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- small helpers

  function load(key) {
    try { return localStorage.getItem(key) || ''; } catch { return ''; }
  }

  function store(key, value) {
    try { localStorage.setItem(key, value); } catch { /* storage disabled: not worth a message */ }
  }

  function sanitizeRoom(text) {
    return text.trim().toLowerCase().replace(/\s+/g, '-').replace(/[^a-z0-9._-]/g, '')
      .replace(/^\.+/, '').slice(0, 64);
  }

  function cleanName(text) {
    // The server counts characters, not UTF-16 units.
    return Array.from(text.trim()).slice(0, NAME_MAX_CHARS).join('');
  }

  function randomRoomName() {
    const adjectives = ['quiet', 'bright', 'gentle', 'brave', 'calm', 'swift', 'golden', 'silver', 'misty',
      'sunny', 'lucky', 'clever', 'mellow', 'bold', 'amber', 'velvet', 'crisp', 'wild', 'cosy', 'frosty'];
    const nouns = ['river', 'forest', 'meadow', 'harbor', 'canyon', 'island', 'valley', 'comet', 'falcon',
      'maple', 'lagoon', 'summit', 'breeze', 'otter', 'cedar', 'garden', 'pebble', 'lantern', 'orchard', 'glacier'];
    const r = new Uint32Array(3);
    crypto.getRandomValues(r);
    return `${adjectives[r[0] % adjectives.length]}-${nouns[r[1] % nouns.length]}-${10 + (r[2] % 90)}`;
  }

  function initialOf(name) {
    const first = Array.from(name.trim())[0];
    return first ? first.toLocaleUpperCase() : '?';
  }

  function colourFor(text) {
    let h = 0;
    for (const ch of text) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    return `hsl(${h % 360} 45% 36%)`;
  }

  function currentName() {
    return app.displayName || cleanName($('display-name').value) || 'Guest';
  }

  function showView(id) {
    for (const v of ['start-view', 'prejoin-view', 'room-view', 'left-view']) $(v).hidden = v !== id;
  }

  function showText(id, text) {
    const el = $(id);
    el.textContent = text || '';
    el.hidden = !text;
  }

  let toastTimer = null;
  function toast(text, ms = 3500) {
    const el = $('toast');
    el.textContent = text;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, ms);
  }

  // Records the first time `name` happens during the current join.
  function markStep(name) {
    if (bm.metrics[name] === null) bm.metrics[name] = performance.now();
  }

  function setState(state) {
    bm.state = state;
    document.documentElement.dataset.state = state;
  }

  function inMeeting() {
    return bm.state === 'joining' || bm.state === 'connected' || bm.state === 'reconnecting';
  }

  function setStatus(text) {
    const el = $('status');
    el.textContent = text;
    el.dataset.state = bm.state;
  }

  function setStatusDetail(text) {
    $('status-detail').textContent = text || '';
  }

  function icon(symbolId) {
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('class', 'icon');
    svg.setAttribute('aria-hidden', 'true');
    const use = document.createElementNS('http://www.w3.org/2000/svg', 'use');
    use.setAttribute('href', `#${symbolId}`);
    svg.append(use);
    return svg;
  }

  function playMedia(el) {
    const p = el.play();
    if (p) {
      p.catch((err) => {
        // Only audible elements can be blocked by autoplay policy; offer a click to unblock.
        if (err && err.name === 'NotAllowedError' && el.tagName === 'AUDIO') $('audio-unlock').hidden = false;
      });
    }
  }

  // ---------------------------------------------------------------- local media

  const micActive = () => Boolean(app.micTrack && app.micOn);
  const camActive = () => Boolean(app.camTrack && app.camOn);

  function audioConstraints(deviceId = load(STORE_MIC), exact = false) {
    const c = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
    if (deviceId) c.deviceId = exact ? { exact: deviceId } : { ideal: deviceId };
    return c;
  }

  function videoConstraints(deviceId = load(STORE_CAMERA), exact = false) {
    const c = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30, max: 30 } };
    if (deviceId) c.deviceId = exact ? { exact: deviceId } : { ideal: deviceId };
    return c;
  }

  function mediaErrorText(err) {
    switch (err && err.name) {
      case 'NotAllowedError':
      case 'SecurityError': return 'permission was denied';
      case 'NotFoundError':
      case 'OverconstrainedError': return 'no device was found';
      case 'NotReadableError':
      case 'AbortError': return 'the device is in use or could not be started';
      default: return 'it could not be started';
    }
  }

  function showMediaMessage(text) {
    showText('media-error', text);
    if (text && !$('room-view').hidden) toast(text, 6000);
  }

  // Opens microphone and camera. Never throws: missing media only limits what the user sends.
  async function acquireMedia() {
    const md = navigator.mediaDevices;
    if (!md || !md.getUserMedia) {
      showMediaMessage('Camera and microphone need a secure (https) page. You can still join without them.');
      renderLocal();
      return;
    }
    const gen = ++app.mediaGen;
    showMediaMessage('');
    const audio = audioConstraints();
    const video = videoConstraints();
    let mic = null;
    let cam = null;
    let micErr = null;
    let camErr = null;
    try {
      const stream = await md.getUserMedia({ audio, video });
      mic = stream.getAudioTracks()[0] || null;
      cam = stream.getVideoTracks()[0] || null;
    } catch {
      // A single missing or blocked device fails the combined request; ask for each on its own.
      const [a, v] = await Promise.allSettled([md.getUserMedia({ audio }), md.getUserMedia({ video })]);
      if (a.status === 'fulfilled') mic = a.value.getAudioTracks()[0] || null; else micErr = a.reason;
      if (v.status === 'fulfilled') cam = v.value.getVideoTracks()[0] || null; else camErr = v.reason;
    }
    if (gen !== app.mediaGen || bm.state === 'left') {
      // The user left (or a newer request started) while the browser was asking.
      if (mic) mic.stop();
      if (cam) cam.stop();
      return;
    }
    if (mic) setLocalTrack('audio', mic);
    if (cam) setLocalTrack('video', cam);
    if (!mic && !cam) {
      const why = micErr && camErr && mediaErrorText(micErr) !== mediaErrorText(camErr)
        ? `camera: ${mediaErrorText(camErr)}; microphone: ${mediaErrorText(micErr)}`
        : mediaErrorText(camErr || micErr);
      showMediaMessage(`Camera and microphone are unavailable (${why}). You can still join without them.`);
    } else if (!mic) {
      showMediaMessage(`Microphone unavailable (${mediaErrorText(micErr)}). You can join without it.`);
    } else if (!cam) {
      showMediaMessage(`Camera unavailable (${mediaErrorText(camErr)}). You can join without it.`);
    }
    renderLocal();
    await refreshDeviceLists();
  }

  // Asks for one kind of device later on (turning the mic or camera on after a failure).
  async function requestTrack(kind, deviceId, exact = false) {
    const md = navigator.mediaDevices;
    const noun = kind === 'audio' ? 'Microphone' : 'Camera';
    if (!md || !md.getUserMedia) {
      toast(`${noun} needs a secure (https) page.`);
      return null;
    }
    if (app.acquiring[kind]) return null;
    app.acquiring[kind] = true;
    try {
      const constraints = kind === 'audio'
        ? { audio: audioConstraints(deviceId, exact) }
        : { video: videoConstraints(deviceId, exact) };
      const stream = await md.getUserMedia(constraints);
      const track = stream.getTracks()[0] || null;
      if (track && bm.state === 'left') { track.stop(); return null; }
      return track;
    } catch (err) {
      toast(`${noun} unavailable: ${mediaErrorText(err)}.`);
      return null;
    } finally {
      app.acquiring[kind] = false;
    }
  }

  // Installs (or removes, with null) the local mic or camera track everywhere it is used.
  function setLocalTrack(kind, track) {
    const old = kind === 'audio' ? app.micTrack : app.camTrack;
    if (old === track) return;
    if (old) {
      app.localStream.removeTrack(old);
      old.stop();
    }
    if (track) {
      app.localStream.addTrack(track);
      track.enabled = kind === 'audio' ? app.micOn : app.camOn;
      track.addEventListener('ended', () => onLocalTrackEnded(kind, track));
    }
    if (kind === 'audio') app.micTrack = track; else app.camTrack = track;

    const s = app.session;
    const sender = s && (kind === 'audio' ? s.micSender : s.camSender);
    if (sender) {
      // replaceTrack needs no renegotiation, which matters because this client never offers.
      sender.replaceTrack(track).catch(() => toast('Could not switch the device in the call.'));
    }
    if (kind === 'audio') {
      if (track) addMeter('local', track); else removeMeter('local');
    }
    renderLocal();
  }

  // A device was unplugged or revoked (user-initiated stop() never fires 'ended').
  function onLocalTrackEnded(kind, track) {
    const current = kind === 'audio' ? app.micTrack : app.camTrack;
    if (current !== track) return;
    setLocalTrack(kind, null);
    toast(kind === 'audio' ? 'Microphone disconnected.' : 'Camera disconnected.');
    refreshDeviceLists();
  }

  async function setMicOn(on) {
    if (on && !app.micTrack) {
      const track = await requestTrack('audio');
      if (track) { app.micOn = true; setLocalTrack('audio', track); refreshDeviceLists(); } else renderLocal();
      return;
    }
    app.micOn = on;
    if (app.micTrack) app.micTrack.enabled = on;
    renderLocal();
  }

  async function setCamOn(on) {
    if (on && !app.camTrack) {
      const track = await requestTrack('video');
      if (track) { app.camOn = true; setLocalTrack('video', track); refreshDeviceLists(); } else renderLocal();
      return;
    }
    app.camOn = on;
    if (app.camTrack) app.camTrack.enabled = on;
    renderLocal();
  }

  async function switchDevice(kind, deviceId) {
    if (!deviceId) return;
    store(kind === 'audio' ? STORE_MIC : STORE_CAMERA, deviceId);
    const current = kind === 'audio' ? app.micTrack : app.camTrack;
    if (current && current.getSettings && current.getSettings().deviceId === deviceId) return;
    // Many phones cannot open two cameras at once, so release the old one first.
    if (kind === 'video' && current) current.stop();
    const track = await requestTrack(kind, deviceId, true);
    if (track) setLocalTrack(kind, track);
    else if (kind === 'video' && current) setLocalTrack('video', null);
  }

  function stopLocalMedia() {
    app.mediaGen++;
    setLocalTrack('audio', null);
    setLocalTrack('video', null);
  }

  async function refreshDeviceLists() {
    const md = navigator.mediaDevices;
    if (!md || !md.enumerateDevices) return;
    let devices;
    try {
      devices = await md.enumerateDevices();
    } catch {
      return;
    }
    fillSelect($('mic-select'), devices.filter((d) => d.kind === 'audioinput'), app.micTrack, 'Microphone');
    fillSelect($('camera-select'), devices.filter((d) => d.kind === 'videoinput'), app.camTrack, 'Camera');
  }

  function fillSelect(select, devices, track, noun) {
    select.replaceChildren();
    // Without permission the browser lists devices with empty ids; they cannot be chosen.
    const usable = devices.filter((d) => d.deviceId);
    if (!usable.length) {
      select.append(new Option(`No ${noun.toLowerCase()} available`, ''));
      select.disabled = true;
      return;
    }
    usable.forEach((d, i) => select.append(new Option(d.label || `${noun} ${i + 1}`, d.deviceId)));
    select.disabled = false;
    const current = track && track.getSettings ? track.getSettings().deviceId : '';
    if (current) select.value = current;
  }

  // Redraws everything that shows local media state, and tells the bridge if it changed.
  function renderLocal() {
    const preview = $('preview');
    const shown = (preview.srcObject && preview.srcObject.getVideoTracks()[0]) || null;
    if (shown !== app.camTrack) {
      preview.srcObject = app.camTrack ? new MediaStream([app.camTrack]) : null;
      if (app.camTrack) preview.play().catch(() => {});
    }
    $('preview-wrap').classList.toggle('cam-off', !camActive());
    const name = currentName();
    $('preview-initial').textContent = initialOf(name);
    $('preview-initial').parentElement.style.backgroundColor = colourFor(name);
    $('prejoin-mic-toggle').checked = micActive();
    $('prejoin-camera-toggle').checked = camActive();
    const local = tiles.get('local');
    if (local) { setTileVideo(local, app.camTrack); renderTile(local); }
    renderControls();
    sendMute();
  }

  function renderControls() {
    setControl($('mic-button'), !micActive(), micActive() ? 'i-mic' : 'i-mic-off', micActive() ? 'Mute' : 'Unmute');
    setControl($('camera-button'), !camActive(), camActive() ? 'i-cam' : 'i-cam-off',
      camActive() ? 'Stop camera' : 'Start camera');
    const sharing = Boolean(app.screenTrack);
    setControl($('screen-button'), sharing, 'i-screen', sharing ? 'Stop sharing' : 'Share screen');
    $('screen-button').classList.toggle('active', sharing);
    $('screen-button').classList.remove('off');
  }

  function setControl(button, off, symbolId, label) {
    button.classList.toggle('off', off);
    button.setAttribute('aria-pressed', String(off));
    button.querySelector('use').setAttribute('href', `#${symbolId}`);
    button.querySelector('.ctl-label').textContent = label;
    button.title = label;
  }

  // ---------------------------------------------------------------- audio levels / active speaker

  function ensureAudioCtx() {
    if (!app.audioCtx) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return null;
      try { app.audioCtx = new Ctx(); } catch { return null; }
    }
    if (app.audioCtx.state === 'suspended') app.audioCtx.resume().catch(() => {});
    return app.audioCtx;
  }

  function addMeter(id, track) {
    removeMeter(id);
    const ctx = ensureAudioCtx();
    if (!ctx) return;
    try {
      const source = ctx.createMediaStreamSource(new MediaStream([track]));
      const analyser = ctx.createAnalyser();
      analyser.fftSize = 512;
      source.connect(analyser); // never to ctx.destination: playback goes through <audio>
      meters.set(id, { source, analyser, buf: new Uint8Array(analyser.fftSize), level: 0, lastLoudAt: 0 });
    } catch {
      return; // levels only drive a highlight; the call works without them
    }
    if (!app.meterTimer) app.meterTimer = setInterval(meterTick, METER_INTERVAL_MS);
  }

  function removeMeter(id) {
    const m = meters.get(id);
    if (m) {
      try { m.source.disconnect(); } catch { /* already gone */ }
      meters.delete(id);
    }
    if (bm.activeSpeaker === id) setActiveSpeaker(null);
    if (!meters.size && app.meterTimer) {
      clearInterval(app.meterTimer);
      app.meterTimer = null;
    }
  }

  function meterTick() {
    const now = performance.now();
    let loudest = null;
    let loudestLevel = SPEAK_THRESHOLD;
    for (const [id, m] of meters) {
      m.analyser.getByteTimeDomainData(m.buf);
      let sum = 0;
      for (const v of m.buf) { const x = (v - 128) / 128; sum += x * x; }
      const rms = Math.sqrt(sum / m.buf.length);
      m.level = Math.max(rms, m.level * 0.8); // fast attack, slow release
      if (m.level > SPEAK_THRESHOLD) m.lastLoudAt = now;
      if (m.level > loudestLevel) { loudest = id; loudestLevel = m.level; }
    }
    const local = meters.get('local');
    $('mic-level').style.transform = `scaleX(${Math.min(1, (local && app.micOn ? local.level : 0) * 5)})`;
    if (inMeeting()) pickSpeaker(loudest, now);
  }

  function pickSpeaker(loudest, now) {
    if (loudest && loudest !== bm.activeSpeaker) {
      if (speaker.candidate !== loudest) { speaker.candidate = loudest; speaker.since = now; }
      // Move the highlight only once the new voice has stayed loudest a moment, so crosstalk
      // and coughs don't make it flicker between tiles.
      if (now - speaker.since >= SPEAK_SWITCH_MS) setActiveSpeaker(loudest);
    } else {
      speaker.candidate = null;
    }
    const current = bm.activeSpeaker && meters.get(bm.activeSpeaker);
    if (bm.activeSpeaker && (!current || now - current.lastLoudAt > SPEAK_HOLD_MS)) setActiveSpeaker(null);
  }

  function setActiveSpeaker(id) {
    if (bm.activeSpeaker === id) return;
    const old = bm.activeSpeaker && tiles.get(bm.activeSpeaker);
    if (old) old.el.classList.remove('speaking');
    bm.activeSpeaker = id;
    const tile = id && tiles.get(id);
    if (tile) tile.el.classList.add('speaking');
  }

  // ---------------------------------------------------------------- tiles

  function createTile(key, { pid = null, local = false, screen = false } = {}) {
    const el = document.createElement('div');
    el.className = 'tile';
    el.classList.toggle('local', local);
    el.classList.toggle('screen', screen);
    const video = document.createElement('video');
    // Always muted: remote sound plays through separate <audio> elements, and muted video
    // is never blocked by autoplay policies.
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true;
    video.setAttribute('autoplay', '');
    video.setAttribute('playsinline', '');
    video.setAttribute('muted', '');
    if (local && !screen) video.classList.add('mirror');
    const avatar = document.createElement('div');
    avatar.className = 'avatar';
    const initial = document.createElement('span');
    avatar.append(initial);
    const label = document.createElement('div');
    label.className = 'label';
    const micIcon = icon('i-mic-off');
    micIcon.classList.add('mic-off');
    const nameEl = document.createElement('span');
    nameEl.className = 'name';
    label.append(micIcon, nameEl);
    el.append(video, avatar, label);
    const tile = { key, pid, local, screen, el, video, avatar, initial, nameEl, micIcon, track: null, onMute: null };
    tiles.set(key, tile);
    // Screen shares get the wide stage above the camera grid.
    $(screen ? 'stage' : 'grid').append(el);
    layoutGrid();
    return tile;
  }

  function removeTile(key) {
    const tile = tiles.get(key);
    if (!tile) return;
    setTileVideo(tile, null);
    tile.el.remove();
    tiles.delete(key);
    if (bm.activeSpeaker === key) bm.activeSpeaker = null;
    layoutGrid();
  }

  function setTileVideo(tile, track) {
    if (tile.track === track) return;
    if (tile.track && tile.onMute) {
      tile.track.removeEventListener('mute', tile.onMute);
      tile.track.removeEventListener('unmute', tile.onMute);
    }
    tile.track = track;
    tile.video.srcObject = track ? new MediaStream([track]) : null;
    if (!track) return;
    // A remote track is "muted" until packets flow: show the avatar instead of black until then.
    tile.onMute = () => renderTile(tile);
    track.addEventListener('mute', tile.onMute);
    track.addEventListener('unmute', tile.onMute);
    if (!tile.local) watchFirstFrame(tile.video, track);
    tile.video.play().catch(() => {}); // muted video only fails if the element is torn down
  }

  function watchFirstFrame(video, track) {
    if (bm.metrics.firstRemoteFrameAt !== null) return;
    if (!track.muted) markStep('remoteVideoUnmutedAt');
    else track.addEventListener('unmute', () => markStep('remoteVideoUnmutedAt'), { once: true });
    markStep('remoteVideoTrackAt');
    const mark = () => {
      if (bm.metrics.firstRemoteFrameAt === null) bm.metrics.firstRemoteFrameAt = performance.now();
    };
    if (typeof video.requestVideoFrameCallback === 'function') video.requestVideoFrameCallback(mark);
    else video.addEventListener('loadeddata', mark, { once: true });
  }

  function renderTile(tile) {
    let name;
    let micMuted;
    let camOff;
    if (tile.local) {
      name = 'You';
      micMuted = !micActive();
      camOff = !camActive();
    } else {
      const p = bm.participants.get(tile.pid);
      name = (p && p.display_name) || 'Guest';
      const sources = p && Array.isArray(p.sources) ? p.sources : null;
      micMuted = !p || Boolean(p.microphone_muted) || Boolean(sources && !sources.includes('microphone'));
      camOff = Boolean(p && p.camera_muted) || !tile.track || tile.track.muted;
    }
    const initialName = tile.local ? currentName() : name;
    tile.nameEl.textContent = tile.screen ? `${name} (screen)` : name;
    tile.el.title = tile.nameEl.textContent;
    tile.initial.textContent = initialOf(initialName);
    tile.avatar.style.backgroundColor = colourFor(initialName);
    tile.el.classList.toggle('cam-off', !tile.screen && camOff);
    tile.micIcon.classList.toggle('is-hidden', tile.screen || !micMuted);
  }

  // Picks the column count that gives the largest 16:9 camera tiles inside the grid's box,
  // so tiles fill a wide window side by side and stack on a narrow phone.
  function layoutGrid() {
    const grid = $('grid');
    $('tiles').classList.toggle('has-stage', $('stage').childElementCount > 0);
    const n = Math.max(1, grid.childElementCount);
    const css = getComputedStyle(grid);
    const gap = parseFloat(css.columnGap) || 0;
    const width = grid.clientWidth - parseFloat(css.paddingLeft) - parseFloat(css.paddingRight);
    const height = grid.clientHeight - parseFloat(css.paddingTop) - parseFloat(css.paddingBottom);
    if (width > 0 && height > 0) {
      let best = { cols: 1, w: 0 };
      for (let cols = 1; cols <= n; cols++) {
        const rows = Math.ceil(n / cols);
        const w = Math.min((width - gap * (cols - 1)) / cols, ((height - gap * (rows - 1)) / rows) * (16 / 9));
        if (w > best.w) best = { cols, w };
      }
      // Below this size tiles become useless; scroll instead of shrinking further.
      const maxW = (width - gap * (best.cols - 1)) / best.cols;
      const tileW = Math.max(best.w, Math.min(MIN_TILE_WIDTH, maxW));
      grid.style.setProperty('--cols', String(best.cols));
      grid.style.setProperty('--tile-w', `${Math.floor(tileW)}px`);
    }
    const total = bm.participants.size + 1;
    $('participant-count').textContent = total === 1 ? '1 participant' : `${total} participants`;
  }

  function ensureLocalTile() {
    const tile = tiles.get('local') || createTile('local', { local: true });
    setTileVideo(tile, app.camTrack);
    renderTile(tile);
  }

  // Brings one remote participant's tiles, audio and meter in line with what we know.
  function renderRemote(pid) {
    const p = bm.participants.get(pid);
    const media = remoteMedia.get(pid) || {};
    if (!p && !media.microphone && !media.camera && !media.screen) {
      removeRemote(pid);
      return;
    }
    setRemoteAudio(pid, media.microphone || null);
    const tile = tiles.get(pid) || createTile(pid, { pid });
    setTileVideo(tile, media.camera || null);
    renderTile(tile);
    const sources = p && Array.isArray(p.sources) ? p.sources : null;
    const screen = media.screen && (!sources || sources.includes('screen')) ? media.screen : null;
    const key = `${pid}:screen`;
    if (screen) {
      const st = tiles.get(key) || createTile(key, { pid, screen: true });
      setTileVideo(st, screen);
      renderTile(st);
    } else {
      removeTile(key);
    }
    layoutGrid();
  }

  function removeRemote(pid) {
    removeTile(pid);
    removeTile(`${pid}:screen`);
    setRemoteAudio(pid, null);
    remoteMedia.delete(pid);
    layoutGrid();
  }

  function setRemoteAudio(pid, track) {
    const current = audioEls.get(pid);
    if (current && current.track === track) return;
    if (current) {
      current.el.srcObject = null;
      current.el.remove();
      audioEls.delete(pid);
      removeMeter(pid);
    }
    if (!track) return;
    const el = document.createElement('audio');
    el.autoplay = true;
    el.setAttribute('autoplay', '');
    el.srcObject = new MediaStream([track]);
    $('remote-audio').append(el);
    audioEls.set(pid, { el, track });
    playMedia(el);
    // Chrome only feeds remote WebRTC audio into WebAudio while a media element plays it too.
    addMeter(pid, track);
  }

  function clearRemote() {
    const pids = new Set([...bm.participants.keys(), ...remoteMedia.keys(), ...audioEls.keys()]);
    bm.participants.clear();
    for (const pid of pids) removeRemote(pid);
    layoutGrid();
  }

  function removeAllTiles() {
    clearRemote();
    for (const key of Array.from(tiles.keys())) removeTile(key);
    setActiveSpeaker(null);
  }

  // ---------------------------------------------------------------- join API

  class JoinError extends Error {
    constructor(code, message, retryable, retryAfterMs = 0) {
      super(message);
      this.code = code;
      this.retryable = retryable;
      this.retryAfterMs = retryAfterMs;
    }
  }

  async function requestJoin() {
    const headers = { 'Content-Type': 'application/json' };
    if (app.jwt) headers.Authorization = `Bearer ${app.jwt}`;
    const body = { display_name: app.displayName };
    const password = $('password').value;
    if (password) body.password = password;
    const init = { method: 'POST', headers, body: JSON.stringify(body), cache: 'no-store' };
    if (typeof AbortSignal !== 'undefined' && AbortSignal.timeout) init.signal = AbortSignal.timeout(JOIN_TIMEOUT_MS);
    let res;
    try {
      res = await fetch(`/api/v1/rooms/${encodeURIComponent(app.room)}/join`, init);
    } catch {
      throw new JoinError('network', 'Cannot reach the server.', true);
    }
    let data = null;
    try { data = await res.json(); } catch { /* handled below */ }
    if (!res.ok) {
      const code = (data && data.error && data.error.code) || `http_${res.status}`;
      const message = (data && data.error && data.error.message) || `The server refused to join (HTTP ${res.status}).`;
      const retryAfter = Number(res.headers.get('Retry-After')) * 1000 || 0;
      const retryable = RETRYABLE_CODES.has(code) || res.status >= 500;
      throw new JoinError(code, message, retryable, Math.min(retryAfter, RETRY_AFTER_MAX_MS));
    }
    if (!data || typeof data.signaling_url !== 'string' || typeof data.ticket !== 'string') {
      throw new JoinError('bad_response', 'Unexpected answer from the server.', true);
    }
    return data;
  }

  // ---------------------------------------------------------------- meeting lifecycle

  function startJoin() {
    if (inMeeting()) return;
    for (const name of Object.keys(bm.metrics)) bm.metrics[name] = null;
    bm.metrics.joinClickedAt = performance.now();
    app.displayName = cleanName($('display-name').value) || 'Guest';
    $('display-name').value = app.displayName;
    store(STORE_NAME, app.displayName);
    ensureAudioCtx(); // inside the click, so autoplay policy lets it run
    app.retryAttempt = 0;
    showText('join-error', '');
    setState('joining');
    enterRoom();
    connect();
  }

  function enterRoom() {
    showView('room-view');
    $('room-title').textContent = app.room;
    $('settings-panel').append($('device-panel'));
    $('settings-panel').hidden = true;
    $('settings-button').setAttribute('aria-expanded', 'false');
    setStatus('Connecting…');
    setStatusDetail('');
    ensureLocalTile();
    layoutGrid();
    renderLocal();
  }

  async function connect() {
    clearTimeout(app.retryTimer);
    const attempt = {};
    app.attempt = attempt;
    setStatus(bm.state === 'reconnecting' ? 'Reconnecting…' : 'Connecting…');
    let join;
    try {
      join = await requestJoin();
    } catch (err) {
      if (app.attempt === attempt && inMeeting()) onJoinFailed(err);
      return;
    }
    if (app.attempt !== attempt || !inMeeting()) return;
    markStep('joinResponseAt');
    setStatusDetail('');
    startSession(join);
  }

  function onJoinFailed(err) {
    // While reconnecting, our previous self may still hold a seat for a few seconds.
    const retry = err.retryable || (bm.state === 'reconnecting' && err.code === 'room_full');
    if (!retry) {
      failJoin(err.message, err.code);
      return;
    }
    const detail = {
      no_capacity: 'No bridge available, retrying…',
      rate_limited: 'Too many attempts, retrying…',
      network: 'Cannot reach the server, retrying…',
      room_full: 'The room is full, retrying…',
    }[err.code] || 'Server error, retrying…';
    scheduleRetry(detail, err.retryAfterMs);
  }

  function scheduleRetry(detail, minDelayMs = 0) {
    clearTimeout(app.retryTimer);
    const backoff = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** app.retryAttempt);
    app.retryAttempt = Math.min(app.retryAttempt + 1, 10);
    setStatusDetail(detail);
    app.retryTimer = setTimeout(() => { if (inMeeting()) connect(); }, Math.max(backoff, minDelayMs || 0));
  }

  // The current session broke: drop it and join again (a fresh participant id) after a backoff.
  function sessionLost(detail) {
    if (!inMeeting()) return;
    teardownSession();
    if (bm.state !== 'joining') {
      bm.reconnects++;
      setState('reconnecting');
    }
    setStatus(bm.state === 'joining' ? 'Connecting…' : 'Reconnecting…');
    scheduleRetry(detail);
  }

  // A join the user has to fix (name, password, permissions): back to the pre-join form.
  function failJoin(message, code) {
    clearTimeout(app.retryTimer);
    app.attempt = null;
    teardownSession();
    setState('error');
    stopScreenShare(false);
    removeAllTiles();
    showView('prejoin-view');
    $('prejoin-devices-slot').append($('device-panel'));
    showText('join-error', message || 'Could not join the meeting.');
    if (code === 'wrong_password') {
      $('password-row').hidden = false;
      $('password').focus();
    }
    renderLocal();
  }

  function endMeeting(title, detail) {
    clearTimeout(app.retryTimer);
    app.attempt = null;
    teardownSession();
    setState('left');
    stopScreenShare(false);
    stopLocalMedia();
    removeAllTiles();
    $('left-title').textContent = title;
    $('left-detail').textContent = detail || '';
    $('prejoin-devices-slot').append($('device-panel'));
    showView('left-view');
  }

  function leaveMeeting() {
    const s = app.session;
    if (s) send(s, { type: 'leave' }); // queued frames go out before the close frame
    endMeeting('You left the meeting');
  }

  async function rejoin() {
    setState('idle');
    showView('prejoin-view');
    await acquireMedia();
    if (bm.state === 'idle') startJoin();
  }

  // ---------------------------------------------------------------- signaling session

  function startSession(join) {
    const s = {
      pc: null, ws: null, welcomed: false, lastMute: null,
      micSender: null, camSender: null, screenSender: null,
      tracksByMid: new Map(), // mid -> { participant_id, source } from the latest offer
      received: new Map(), // mid -> remote MediaStreamTrack from ontrack
      attached: new Map(), // mid -> { pid, source, track } currently shown
      offers: Promise.resolve(),
      disconnectTimer: null, welcomeTimer: null,
    };
    app.session = s;
    bm.participantId = join.participant_id || null;
    try {
      s.pc = createPeerConnection(s, join.ice_servers);
    } catch (err) {
      failJoin(typeof RTCPeerConnection === 'undefined'
        ? 'This browser does not support WebRTC.'
        : `Could not set up the media connection (${(err && err.message) || 'unknown error'}).`, 'webrtc');
      return;
    }
    bm.pc = s.pc;
    try {
      s.ws = new WebSocket(join.signaling_url);
    } catch {
      sessionLost('Cannot open the signaling connection');
      return;
    }
    s.ws.onopen = () => {
      if (s !== app.session) return;
      markStep('signalingOpenAt');
      send(s, { type: 'hello', ticket: join.ticket });
    };
    s.ws.onmessage = (ev) => {
      if (s !== app.session) return;
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (msg && typeof msg.type === 'string') handleMessage(s, msg);
    };
    s.ws.onclose = () => { if (s === app.session) sessionLost('Connection to the bridge closed'); };
    s.ws.onerror = () => { /* onclose follows and handles it */ };
    s.welcomeTimer = setTimeout(() => {
      if (s === app.session && !s.welcomed) sessionLost('The bridge did not answer');
    }, WELCOME_TIMEOUT_MS);
  }

  // Test hook and troubleshooting aid: `?relay=udp|tcp|all` sends media only through TURN
  // (iceTransportPolicy 'relay'), keeping only the TURN URLs of that transport.
  function iceConfig(iceServers) {
    let servers = Array.isArray(iceServers) ? iceServers : [];
    const relay = new URLSearchParams(location.search).get('relay');
    if (relay !== 'udp' && relay !== 'tcp' && relay !== 'all') return { iceServers: servers };
    if (relay !== 'all') {
      const wantTcp = relay === 'tcp';
      servers = servers.map((server) => {
        const urls = [].concat(server.urls).filter((u) => /[?&]transport=tcp/.test(u) === wantTcp);
        return { ...server, urls };
      }).filter((server) => server.urls.length);
    }
    return { iceServers: servers, iceTransportPolicy: 'relay' };
  }

  function createPeerConnection(s, iceServers) {
    const pc = new RTCPeerConnection({
      ...iceConfig(iceServers),
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
    });
    // All three senders are added now, before the first offer, for two reasons:
    // - per JSEP 5.10 the bridge's recvonly m-lines attach to transceivers made by addTrack;
    // - a later addTrack would recycle any transceiver whose sender never sent, which includes
    //   the ones receiving remote participants, and the screen would never reach the bridge.
    // Missing media gets a stand-in track that is swapped for null right away, so turning the
    // mic/camera on later, or sharing the screen, is just replaceTrack().
    const standIns = [];
    s.micSender = addSender(pc, app.micTrack, 'audio', app.localStream, standIns);
    s.camSender = addSender(pc, app.camTrack, 'video', app.localStream, standIns);
    s.screenSender = addSender(pc, app.screenTrack, 'video', app.screenStream, standIns);
    for (const { sender, track } of standIns) {
      sender.replaceTrack(null).catch(() => {}).finally(() => track.stop());
    }
    pc.ontrack = (ev) => onRemoteTrack(s, ev);
    pc.onconnectionstatechange = () => onConnectionState(s);
    pc.oniceconnectionstatechange = () => {
      if (s === app.session && pc.iceConnectionState === 'connected') markStep('iceConnectedAt');
    };
    // 'negotiationneeded' is deliberately ignored: the bridge is always the offerer.
    return pc;
  }

  function addSender(pc, track, kind, stream, standIns) {
    if (track) return pc.addTrack(track, stream);
    const standIn = standInTrack(kind);
    if (!standIn) return null;
    const sender = pc.addTrack(standIn, stream);
    standIns.push({ sender, track: standIn });
    return sender;
  }

  function standInTrack(kind) {
    try {
      if (kind === 'audio') {
        const ctx = ensureAudioCtx();
        return ctx ? ctx.createMediaStreamDestination().stream.getAudioTracks()[0] || null : null;
      }
      const canvas = document.createElement('canvas');
      canvas.width = 2;
      canvas.height = 2;
      return canvas.captureStream ? canvas.captureStream(0).getVideoTracks()[0] || null : null;
    } catch {
      return null;
    }
  }

  function teardownSession() {
    const s = app.session;
    app.session = null;
    bm.pc = null;
    bm.participantId = null;
    if (s) {
      clearTimeout(s.disconnectTimer);
      clearTimeout(s.welcomeTimer);
      if (s.ws) {
        s.ws.onopen = s.ws.onmessage = s.ws.onclose = s.ws.onerror = null;
        try { s.ws.close(1000); } catch { /* already closed */ }
      }
      if (s.pc) {
        s.pc.ontrack = s.pc.onconnectionstatechange = s.pc.oniceconnectionstatechange = null;
        try { s.pc.close(); } catch { /* already closed */ }
      }
    }
    clearRemote(); // rebuilt from the next welcome
  }

  function send(s, msg) {
    if (!s || !s.ws || s.ws.readyState !== WebSocket.OPEN) return;
    try { s.ws.send(JSON.stringify(msg)); } catch { /* the close handler deals with a dead socket */ }
  }

  function sendMute() {
    const s = app.session;
    if (!s || !s.welcomed) return;
    const microphone = !micActive();
    const camera = !camActive();
    const key = `${microphone}/${camera}`;
    if (s.lastMute === key) return;
    s.lastMute = key;
    send(s, { type: 'mute', microphone, camera });
  }

  function handleMessage(s, msg) {
    switch (msg.type) {
      case 'welcome': onWelcome(s, msg); break;
      case 'offer':
        markStep('offerAt');
        // Strictly one at a time: each answer must match the offer it answers.
        s.offers = s.offers.then(() => handleOffer(s, msg)).catch(() => {
          if (s === app.session) sessionLost('Media negotiation failed');
        });
        break;
      case 'participant_joined':
      case 'participant_updated': upsertParticipant(msg.participant); break;
      case 'participant_left': removeParticipant(msg.participant_id); break;
      case 'error':
        if (msg.message) { setStatusDetail(msg.message); toast(msg.message); }
        break;
      case 'bye': onBye(msg.reason); break;
      default: break; // newer bridges may send more; ignore what we don't know
    }
  }

  function onWelcome(s, msg) {
    markStep('welcomeAt');
    s.welcomed = true;
    clearTimeout(s.welcomeTimer);
    bm.participantId = msg.participant_id || bm.participantId;
    // The session started with no remote state (teardownSession cleared it), so the list
    // in the welcome is the whole room.
    for (const p of Array.isArray(msg.participants) ? msg.participants : []) upsertParticipant(p);
    sendMute();
    if (app.screenTrack && s.screenSender) send(s, { type: 'publish', source: 'screen' });
  }

  async function handleOffer(s, msg) {
    if (s !== app.session) return;
    // Set the map first: ontrack fires during setRemoteDescription and looks it up.
    s.tracksByMid = new Map((Array.isArray(msg.tracks) ? msg.tracks : []).map((t) => [String(t.mid), t]));
    await s.pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
    if (s !== app.session) return;
    await s.pc.setLocalDescription(await s.pc.createAnswer());
    if (s !== app.session) return;
    send(s, { type: 'answer', sdp: s.pc.localDescription.sdp });
    markStep('answerSentAt');
    syncTracks(s);
  }

  function onRemoteTrack(s, ev) {
    if (s !== app.session) return;
    const mid = ev.transceiver && ev.transceiver.mid;
    if (mid === null || mid === undefined) return;
    s.received.set(String(mid), ev.track);
    syncTracks(s);
  }

  // Matches received tracks with the latest offer's mid map. Tracks and map entries arrive
  // in either order, and the bridge may reuse an m-line for someone else, so this re-checks
  // everything each time rather than reacting to single events.
  function syncTracks(s) {
    const touched = new Set();
    for (const [mid, a] of s.attached) {
      const info = s.tracksByMid.get(mid);
      if (info && info.participant_id === a.pid && info.source === a.source && s.received.get(mid) === a.track) continue;
      s.attached.delete(mid);
      const media = remoteMedia.get(a.pid);
      if (media && media[a.source] === a.track) media[a.source] = null;
      touched.add(a.pid);
    }
    for (const [mid, track] of s.received) {
      const info = s.tracksByMid.get(mid);
      if (!info || s.attached.has(mid) || !info.participant_id || info.participant_id === bm.participantId) continue;
      if (!SOURCES.includes(info.source) || (info.source === 'microphone') !== (track.kind === 'audio')) continue;
      const pid = info.participant_id;
      s.attached.set(mid, { pid, source: info.source, track });
      const media = remoteMedia.get(pid) || { microphone: null, camera: null, screen: null };
      media[info.source] = track;
      remoteMedia.set(pid, media);
      touched.add(pid);
    }
    for (const pid of touched) renderRemote(pid);
  }

  function upsertParticipant(p) {
    if (!p || typeof p.id !== 'string' || p.id === bm.participantId) return;
    bm.participants.set(p.id, p);
    renderRemote(p.id);
  }

  function removeParticipant(pid) {
    if (typeof pid !== 'string') return;
    bm.participants.delete(pid);
    removeRemote(pid);
  }

  function onBye(reason) {
    if (reason === 'left') endMeeting('You left the meeting');
    else if (reason === 'replaced') {
      endMeeting('You joined from somewhere else', 'This window was disconnected because you connected again from another tab or device.');
    } else sessionLost(reason === 'bridge_shutdown' ? 'The bridge is restarting' : 'The bridge ended the session');
  }

  function onConnectionState(s) {
    if (s !== app.session) return;
    const state = s.pc.connectionState;
    clearTimeout(s.disconnectTimer);
    if (state === 'connected') {
      markStep('connectedAt');
      app.retryAttempt = 0;
      setState('connected');
      setStatus('Connected');
      setStatusDetail('');
    } else if (state === 'failed') {
      sessionLost('Media connection failed');
    } else if (state === 'disconnected') {
      // ICE often recovers from a brief network blip on its own; give it a moment.
      setStatusDetail('Connection unstable…');
      s.disconnectTimer = setTimeout(() => {
        if (s === app.session && s.pc.connectionState === 'disconnected') sessionLost('Media connection lost');
      }, DISCONNECT_GRACE_MS);
    }
  }

  // ---------------------------------------------------------------- screen share

  async function startScreenShare() {
    const md = navigator.mediaDevices;
    if (!md || !md.getDisplayMedia) {
      toast('Screen sharing is not supported by this browser.');
      return;
    }
    if (app.screenTrack || app.acquiring.screen) return;
    app.acquiring.screen = true;
    let stream;
    try {
      stream = await md.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 30 } }, audio: false });
    } catch (err) {
      // Cancelling the picker is not an error worth a message.
      if (!err || (err.name !== 'NotAllowedError' && err.name !== 'AbortError')) toast('Could not share the screen.');
      return;
    } finally {
      app.acquiring.screen = false;
    }
    const track = stream.getVideoTracks()[0];
    if (!track) return;
    if (!inMeeting()) { track.stop(); return; } // left while the picker was open
    track.contentHint = 'detail';
    // The browser's own "Stop sharing" bar ends the track without going through our button.
    track.addEventListener('ended', () => { if (app.screenTrack === track) stopScreenShare(true); });
    app.screenTrack = track;
    const tile = tiles.get('local:screen') || createTile('local:screen', { local: true, screen: true });
    setTileVideo(tile, track);
    renderTile(tile);
    renderControls();
    await publishScreen(app.session);
  }

  async function publishScreen(s) {
    if (!s || !app.screenTrack) return;
    try {
      if (s.screenSender) await s.screenSender.replaceTrack(app.screenTrack);
      else s.screenSender = s.pc.addTrack(app.screenTrack, app.screenStream); // no stand-in possible
    } catch {
      toast('Could not share the screen.');
      return;
    }
    // Before the welcome the bridge cannot take it yet; onWelcome publishes then.
    if (s === app.session && s.welcomed) send(s, { type: 'publish', source: 'screen' });
  }

  async function stopScreenShare(notify) {
    const track = app.screenTrack;
    if (!track) return;
    app.screenTrack = null;
    track.stop();
    removeTile('local:screen');
    renderControls();
    const s = app.session;
    if (!s) return;
    try {
      if (s.screenSender) await s.screenSender.replaceTrack(null);
    } catch { /* the pc may be closing */ }
    if (notify && s === app.session && s.welcomed) send(s, { type: 'unpublish', source: 'screen' });
  }

  // ---------------------------------------------------------------- room controls

  async function copyLink() {
    const url = `${location.origin}/${app.room}`;
    try {
      if (!navigator.clipboard || !navigator.clipboard.writeText) throw new Error('no clipboard API');
      await navigator.clipboard.writeText(url);
      toast('Meeting link copied.');
      return;
    } catch { /* fall through: insecure page or permission refused */ }
    if (legacyCopy(url)) {
      toast('Meeting link copied.');
      return;
    }
    toast(`Copy this link: ${url}`, 12000);
  }

  function legacyCopy(text) {
    const ta = document.createElement('textarea');
    ta.value = text;
    ta.setAttribute('readonly', '');
    ta.className = 'offscreen';
    document.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
    return ok;
  }

  function toggleSettings() {
    const panel = $('settings-panel');
    panel.hidden = !panel.hidden;
    $('settings-button').setAttribute('aria-expanded', String(!panel.hidden));
    $('settings-button').classList.toggle('active', !panel.hidden);
    if (!panel.hidden) refreshDeviceLists();
  }

  function unlockAudio() {
    $('audio-unlock').hidden = true;
    ensureAudioCtx();
    for (const { el } of audioEls.values()) playMedia(el);
  }

  // ---------------------------------------------------------------- pages

  function initStartPage(error) {
    setState('idle');
    document.title = 'bridgemesh';
    showView('start-view');
    $('room-name').value = randomRoomName();
    $('start-display-name').value = load(STORE_NAME);
    showText('start-error', error || '');
    $('start-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const room = sanitizeRoom($('room-name').value);
      if (!ROOM_RE.test(room)) {
        showText('start-error', 'Use letters, digits, "-", "_" or "." for the room name (up to 64).');
        return;
      }
      const name = cleanName($('start-display-name').value);
      if (name) store(STORE_NAME, name);
      location.assign(`/${room}`);
    });
  }

  async function initPrejoin(params) {
    setState('idle');
    document.title = `${app.room} · bridgemesh`;
    showView('prejoin-view');
    $('prejoin-room').textContent = app.room;
    $('display-name').value = params.get('name') || load(STORE_NAME);
    if (params.get('mic') === '0') app.micOn = false;
    if (params.get('camera') === '0') app.camOn = false;
    renderControls();
    renderLocal();
    await acquireMedia();
    if (params.get('autojoin') === '1' && bm.state === 'idle') startJoin();
  }

  function bindEvents() {
    $('prejoin-form').addEventListener('submit', (ev) => { ev.preventDefault(); startJoin(); });
    $('display-name').addEventListener('input', () => renderLocal());
    $('prejoin-mic-toggle').addEventListener('change', (ev) => setMicOn(ev.target.checked));
    $('prejoin-camera-toggle').addEventListener('change', (ev) => setCamOn(ev.target.checked));
    $('mic-select').addEventListener('change', (ev) => switchDevice('audio', ev.target.value));
    $('camera-select').addEventListener('change', (ev) => switchDevice('video', ev.target.value));
    $('mic-button').addEventListener('click', () => setMicOn(!micActive()));
    $('camera-button').addEventListener('click', () => setCamOn(!camActive()));
    $('screen-button').addEventListener('click', () => (app.screenTrack ? stopScreenShare(true) : startScreenShare()));
    $('settings-button').addEventListener('click', toggleSettings);
    $('copy-link-button').addEventListener('click', copyLink);
    $('leave-button').addEventListener('click', leaveMeeting);
    $('rejoin-button').addEventListener('click', rejoin);
    $('audio-unlock').addEventListener('click', unlockAudio);
    // The grid's size changes with the window, the stage and the header wrapping.
    if (typeof ResizeObserver === 'function') new ResizeObserver(() => layoutGrid()).observe($('grid'));
    else window.addEventListener('resize', () => layoutGrid());
    if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) {
      $('screen-button').disabled = true;
      $('screen-button').title = 'Screen sharing is not supported by this browser';
    }
    if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
      navigator.mediaDevices.addEventListener('devicechange', () => refreshDeviceLists());
    }
    // Any click counts as a user gesture that lets a suspended AudioContext run.
    document.addEventListener('pointerdown', () => { if (app.audioCtx) ensureAudioCtx(); });
    // Back online: don't sit out the rest of a backoff.
    window.addEventListener('online', () => {
      if (bm.state === 'reconnecting' && !app.session) connect();
    });
    // Closing the tab: tell the bridge now rather than letting it time us out.
    window.addEventListener('pagehide', () => { if (app.session) send(app.session, { type: 'leave' }); });
  }

  function init() {
    const hash = new URLSearchParams(location.hash.slice(1));
    app.jwt = hash.get('jwt') || null;
    bindEvents();
    let path = location.pathname.replace(/^\/+|\/+$/g, '');
    try { path = decodeURIComponent(path); } catch { /* keep it raw */ }
    if (!path) {
      initStartPage();
      return;
    }
    if (!ROOM_RE.test(path)) {
      const fixed = sanitizeRoom(path);
      if (!ROOM_RE.test(fixed)) {
        initStartPage('That meeting link is not valid. Pick a room name below.');
        return;
      }
      // "/My Room" -> "/my-room": normalise the address bar so the copied link matches.
      history.replaceState(null, '', `/${fixed}${location.search}${location.hash}`);
      path = fixed;
    }
    app.room = path;
    initPrejoin(new URLSearchParams(location.search));
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
