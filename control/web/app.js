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
  // The microphone level bar is refreshed this often. Who speaks is the bridge's decision
  // (`dominant_speaker`, from the audio levels in every publisher's packets).
  const METER_INTERVAL_MS = 100;
  const RETRYABLE_CODES = new Set(['no_capacity', 'rate_limited', 'internal', 'network', 'bad_response']);
  const LOBBY_POLL_MS = 1000; // a guest in the lobby asks whether it was let in
  const HOST_RETRY_MS = 5000; // a guest waiting for the host to open the meeting tries again
  const API_TIMEOUT_MS = 10000;
  const RECONNECT_LOG_MAX = 20; // reconnect records kept in bm.reconnectLog

  // Test hooks: automated browser tests read this object; keep the field names stable.
  const bm = {
    pc: null,
    participantId: null,
    // idle | joining | connected | reconnecting | left | error, and while not yet let in:
    // lobby (waiting for a moderator) | waiting (for the host to open the meeting)
    state: 'idle',
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
    reconnects: 0, // sessions lost while in the meeting (each one reconnected or rejoined)
    bridgeId: null, // the bridge of the current session; null between sessions
    // The latest reconnects, oldest first (at most RECONNECT_LOG_MAX): { cause, lostBridge,
    // lostAt, bridgeId, attempts, answerMs, welcomeMs, connectedMs, mediaMs, rejoined }.
    // `lostAt` is performance.now() at the loss; the *Ms fields are ms from it to control's
    // answer, the new bridge's welcome, the peer connection being connected and the first
    // remote media (null until then); `rejoined` when control no longer held us (404) and a
    // full join under a new participant id followed.
    reconnectLog: [],
    activeSpeaker: null, // tile key ('local' or a participant id) or null
    dominantSpeaker: null, // participant id the bridge last named as speaking (ours too)
    muteRequests: 0, // mute_requested messages received
  };
  window.bridgemesh = bm;
  // Hooks for meeting.js (chat, hands, reactions): send on the current session; the role.
  bm.sendSignal = (msg) => send(app.session, msg);
  bm.isModerator = () => app.role === 'moderator';

  const app = {
    room: null,
    jwt: null, // from #jwt= in the address; kept in memory only, for rejoins
    password: null, // the meeting password that worked (or the one a moderator set), for rejoins
    displayName: '',
    role: null, // guest | member | moderator, from the latest join answer
    sessionToken: null, // bearer for the room calls of the current participant id
    // The participant control placed us as, for reconnecting without a new join:
    // { pid, token } from the latest join, lobby or reconnect answer.
    placement: null,
    recovery: null, // { lostBridge, record } while a lost session waits for control's answer
    lobby: null, // { pid, token } while waiting in the lobby
    lobbyTimer: null,
    resumeState: 'joining', // what the state returns to once let in
    roomPoll: null, // identifies the moderator's room polling loop
    roomTimer: null,
    roomView: null, // the latest GET /rooms/{room} answer
    knocks: new Set(), // ids in the lobby at the last poll
    endReason: null, // why the meeting view closed: left | replaced | kicked | meeting_ended | lobby_denied | lobby_expired
    lastError: null, // { code, message } of the last join that needs the user

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
  bm.tiles = tiles; // read by simulcast.js for the receiver constraints
  const remoteMedia = new Map(); // pid -> { microphone, camera, screen } tracks
  const audioEls = new Map(); // pid -> { el, track }
  const meters = new Map(); // 'local' or pid -> analyser state

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
    for (const v of ['start-view', 'prejoin-view', 'lobby-view', 'room-view', 'left-view']) $(v).hidden = v !== id;
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

  // A join through control is under way or will be retried (including waiting for the host).
  function joinPending() {
    return inMeeting() || bm.state === 'waiting';
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
    renderPreview('preview', 'preview-wrap', 'preview-initial');
    renderPreview('lobby-preview', 'lobby-preview-wrap', 'lobby-initial');
    $('prejoin-mic-toggle').checked = micActive();
    $('prejoin-camera-toggle').checked = camActive();
    const local = tiles.get('local');
    if (local) { setTileVideo(local, app.camTrack); renderTile(local); }
    renderControls();
    sendMute();
  }

  function renderPreview(videoId, wrapId, initialId) {
    const preview = $(videoId);
    const shown = (preview.srcObject && preview.srcObject.getVideoTracks()[0]) || null;
    if (shown !== app.camTrack) {
      preview.srcObject = app.camTrack ? new MediaStream([app.camTrack]) : null;
      if (app.camTrack) preview.play().catch(() => {});
    }
    $(wrapId).classList.toggle('cam-off', !camActive());
    const name = currentName();
    $(initialId).textContent = initialOf(name);
    $(initialId).parentElement.style.backgroundColor = colourFor(name);
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

  // ---------------------------------------------------------------- microphone level / speaker

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
      meters.set(id, { source, analyser, buf: new Uint8Array(analyser.fftSize), level: 0 });
    } catch {
      return; // the level only drives the microphone bar; the call works without it
    }
    if (!app.meterTimer) app.meterTimer = setInterval(meterTick, METER_INTERVAL_MS);
  }

  function removeMeter(id) {
    const m = meters.get(id);
    if (m) {
      try { m.source.disconnect(); } catch { /* already gone */ }
      meters.delete(id);
    }
    if (!meters.size && app.meterTimer) {
      clearInterval(app.meterTimer);
      app.meterTimer = null;
    }
  }

  function meterTick() {
    const local = meters.get('local');
    if (local) {
      local.analyser.getByteTimeDomainData(local.buf);
      let sum = 0;
      for (const v of local.buf) { const x = (v - 128) / 128; sum += x * x; }
      local.level = Math.max(Math.sqrt(sum / local.buf.length), local.level * 0.8); // fast attack, slow release
    }
    $('mic-level').style.transform = `scaleX(${Math.min(1, (local && app.micOn ? local.level : 0) * 5)})`;
  }

  // The bridge names the dominant speaker (ourselves included) when it changes; the tile is
  // highlighted until it names another. A speaker the page has no tile for yet is highlighted
  // once the tile appears (see createTile).
  function onDominantSpeaker(pid) {
    if (typeof pid !== 'string') return;
    bm.dominantSpeaker = pid;
    setActiveSpeaker(pid === bm.participantId ? 'local' : pid);
  }

  function setActiveSpeaker(id) {
    if (bm.activeSpeaker === id) return;
    const old = bm.activeSpeaker && tiles.get(bm.activeSpeaker);
    if (old) old.el.classList.remove('speaking');
    bm.activeSpeaker = id;
    const tile = id && tiles.get(id);
    if (tile) tile.el.classList.add('speaking');
  }

  // ---------------------------------------------------------------- moderation (moderation.js)

  const {
    isModerator, admit, deny, kick, confirmKick, setPassword, setLobby, muteAll, endForAll, renderModeration, leaveModeration, stopRoomPolling, toggleModeratorPanel, closePanels, onLobbyToggle, onPasswordSubmit, onEndForAllClick, onMuteRequested,
  } = window.bridgemeshModeration({
    $, apiErrorOf, app, bm, endMeeting, inMeeting, setMicOn, toast, toggleSettings, withTimeout,
  });

  // ---------------------------------------------------------------- tiles (tiles.js)

  const {
    clearRemote, createTile, ensureLocalTile, layoutGrid, removeAllTiles, removeRemote, removeTile, renderRemote, renderTile, setRemoteAudio, setTileVideo,
  } = window.bridgemeshTiles({
    $, app, audioEls, bm, camActive, colourFor, confirmKick, currentName, icon, initialOf, kick, markStep, micActive, playMedia, remoteMedia, setActiveSpeaker, tiles,
  });

  // ---------------------------------------------------------------- join API

  class JoinError extends Error {
    constructor(code, message, retryable, retryAfterMs = 0, status = 0) {
      super(message);
      this.code = code;
      this.retryable = retryable;
      this.retryAfterMs = retryAfterMs;
      this.status = status; // HTTP status, 0 when the server was not reached
    }
  }

  function apiErrorOf(data, status) {
    const error = data && data.error;
    return {
      code: (error && typeof error.code === 'string' && error.code) || `http_${status}`,
      message: (error && typeof error.message === 'string' && error.message) || `The server answered HTTP ${status}.`,
    };
  }

  function isJoinResponse(data) {
    return Boolean(data && typeof data.signaling_url === 'string' && typeof data.ticket === 'string');
  }

  function withTimeout(init) {
    if (typeof AbortSignal !== 'undefined' && AbortSignal.timeout) init.signal = AbortSignal.timeout(API_TIMEOUT_MS);
    return init;
  }

  // Resolves to { joined: JoinResponse } or { lobby: LobbyWait }; throws a JoinError.
  function requestJoin() {
    const headers = { 'Content-Type': 'application/json' };
    if (app.jwt) headers.Authorization = `Bearer ${app.jwt}`;
    const body = { display_name: app.displayName };
    if (app.password) body.password = app.password;
    // Host accounts (hosts.js): a host's login, or the invite the link carried.
    const hosts = window.bridgemeshHosts;
    if (hosts && !app.jwt && hosts.authorization()) headers.Authorization = hosts.authorization();
    if (hosts && hosts.invite()) body.invite = hosts.invite();
    return postForPlacement(`/api/v1/rooms/${encodeURIComponent(app.room)}/join`, headers, body);
  }

  // Asks control where the participant we already are should go now that its session is lost,
  // without joining again: same participant id and role, a fresh ticket. Control may take a
  // few seconds to answer while it checks whether the bridge is really gone.
  function requestReconnect(placement, lostBridge) {
    const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${placement.token}` };
    const body = lostBridge ? { lost_bridge: lostBridge } : {};
    const path = `/api/v1/rooms/${encodeURIComponent(app.room)}/participants/${encodeURIComponent(placement.pid)}/reconnect`;
    return postForPlacement(path, headers, body);
  }

  // A POST answered like a join: { joined } (200), { lobby } (202), or a thrown JoinError.
  async function postForPlacement(path, headers, body) {
    const init = { method: 'POST', headers, body: JSON.stringify(body), cache: 'no-store' };
    if (typeof AbortSignal !== 'undefined' && AbortSignal.timeout) init.signal = AbortSignal.timeout(JOIN_TIMEOUT_MS);
    let res;
    try {
      res = await fetch(path, init);
    } catch {
      throw new JoinError('network', 'Cannot reach the server.', true);
    }
    let data = null;
    try { data = await res.json(); } catch { /* handled below */ }
    if (!res.ok) {
      const { code, message } = apiErrorOf(data, res.status);
      const retryAfter = Number(res.headers.get('Retry-After')) * 1000 || 0;
      const retryable = RETRYABLE_CODES.has(code) || res.status >= 500;
      throw new JoinError(code, message, retryable, Math.min(retryAfter, RETRY_AFTER_MAX_MS), res.status);
    }
    if (res.status === 202) {
      if (!data || typeof data.participant_id !== 'string' || typeof data.session_token !== 'string') {
        throw new JoinError('bad_response', 'Unexpected answer from the server.', true);
      }
      return { lobby: data };
    }
    if (!isJoinResponse(data)) throw new JoinError('bad_response', 'Unexpected answer from the server.', true);
    return { joined: data };
  }

  // What to tell the user about a join they have to do something about.
  function joinErrorText(err) {
    const hostsText = window.bridgemeshHosts && window.bridgemeshHosts.errorText(err.code);
    if (hostsText) return hostsText;
    const known = {
      token_expired: 'Your meeting link\u2019s token has expired. Ask the organiser for a new link.',
      token_not_yet_valid: 'Your meeting link\u2019s token is not valid yet. Check this device\u2019s clock, or try again in a moment.',
      token_wrong_room: 'Your meeting link\u2019s token is for a different meeting.',
      token_required: 'This meeting needs a personal meeting link (with a token). Ask the organiser for one.',
      token_malformed: 'Your meeting link\u2019s token is damaged. Copy the whole link again, or ask for a new one.',
      unauthorized: 'Your session has expired. Join again.',
      password_required: 'This meeting is protected by a password.',
      wrong_password: 'Wrong password',
      room_full: 'The meeting is full.',
      lobby_denied: 'A moderator declined your request',
    };
    if (known[err.code]) return known[err.code];
    if (err.code.startsWith('token_')) {
      return `Your meeting link\u2019s token was not accepted (${err.code}). Ask the organiser for a new link.`;
    }
    return err.message;
  }

  // ---------------------------------------------------------------- meeting lifecycle

  function startJoin() {
    if (joinPending() || bm.state === 'lobby') return;
    // A join from the form or the Rejoin button is a new participant.
    app.placement = null;
    app.recovery = null;
    for (const name of Object.keys(bm.metrics)) bm.metrics[name] = null;
    bm.metrics.joinClickedAt = performance.now();
    app.displayName = cleanName($('display-name').value) || 'Guest';
    $('display-name').value = app.displayName;
    store(STORE_NAME, app.displayName);
    // The password field only shows once the room asked for one.
    if (!$('password-row').hidden) app.password = $('password').value || null;
    app.endReason = null;
    app.lastError = null;
    ensureAudioCtx(); // inside the click, so autoplay policy lets it run
    app.retryAttempt = 0;
    showText('join-error', '');
    showText('password-error', '');
    setState('joining');
    enterRoom();
    connect();
  }

  function enterRoom() {
    showView('room-view');
    $('room-title').textContent = app.room;
    $('settings-panel').append($('device-panel'));
    closePanels();
    setStatus('Connecting…');
    setStatusDetail('');
    ensureLocalTile();
    layoutGrid();
    renderLocal();
  }

  // Asks control for a placement: a reconnect of the participant we are while a lost session
  // is being recovered, else a join.
  async function connect() {
    clearTimeout(app.retryTimer);
    const attempt = {};
    app.attempt = attempt;
    if (inMeeting()) setStatus(bm.state === 'reconnecting' ? 'Reconnecting…' : 'Connecting…');
    const recovery = app.recovery && app.placement ? app.recovery : null;
    if (recovery) recovery.record.attempts++;
    let answer;
    try {
      answer = recovery ? await requestReconnect(app.placement, recovery.lostBridge) : await requestJoin();
    } catch (err) {
      if (app.attempt === attempt && joinPending()) onJoinFailed(err);
      return;
    }
    if (app.attempt !== attempt || !joinPending()) return;
    if (recovery && app.recovery === recovery) {
      app.recovery = null; // answered; a later loss starts a new recovery
      recovery.record.answerMs = sinceLoss(recovery.record);
    }
    if (answer.lobby) enterLobby(answer.lobby);
    else admitted(answer.joined, recovery && recovery.record);
  }

  // Control placed us on a bridge (straight away, after the lobby, or again after a lost
  // session, then with its reconnect `record`): connect to it.
  function admitted(join, record = null) {
    markStep('joinResponseAt');
    app.role = typeof join.role === 'string' ? join.role : 'guest';
    app.sessionToken = typeof join.session_token === 'string' ? join.session_token : null;
    if (typeof join.participant_id === 'string' && app.sessionToken) {
      app.placement = { pid: join.participant_id, token: app.sessionToken };
    }
    if (record) record.bridgeId = typeof join.bridge_id === 'string' ? join.bridge_id : null;
    stopRoomPolling(); // restarted by renderModeration with the new session token
    if (!inMeeting()) {
      clearLobby();
      setState(app.resumeState);
      enterRoom();
      if (bm.state === 'reconnecting') setStatus('Reconnecting…');
    }
    setStatusDetail('');
    startSession(join, record);
    renderModeration();
  }

  function onJoinFailed(err) {
    if (app.recovery && (err.status === 404 || err.code === 'unauthorized')) {
      // Control no longer holds this participant (or no longer takes its session token): the
      // only way back is a new join, as a new participant. Right away: the outage already
      // waited for this answer.
      const { record } = app.recovery;
      record.rejoined = true;
      app.recovery = null;
      app.placement = null;
      connect();
      return;
    }
    if (err.code === 'guest_not_allowed') {
      waitForHost();
      return;
    }
    // A host login that ended or an invite that no longer counts: try again without it.
    const recovered = window.bridgemeshHosts && window.bridgemeshHosts.recover(err.code);
    if (recovered) {
      toast(recovered, 6000);
      connect();
      return;
    }
    if (err.code === 'kicked') {
      endMeeting('You were removed from the meeting', 'A moderator removed you from this meeting.', 'kicked', false);
      return;
    }
    // While reconnecting, our previous self may still hold a seat for a few seconds.
    const retry = err.retryable || (bm.state === 'reconnecting' && err.code === 'room_full');
    if (!retry) {
      failJoin(joinErrorText(err), err.code);
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
    if (bm.state === 'waiting') $('lobby-detail').textContent = detail;
    app.retryTimer = setTimeout(() => { if (joinPending()) connect(); }, Math.max(backoff, minDelayMs || 0));
  }

  // The current session broke: drop it and ask control where to go as the same participant
  // (same id and role), naming the bridge we lost; without a placement to keep (or once control
  // says it no longer holds us), join again as a new participant. `cause` is the bye reason, or
  // 'closed' / 'failed' / 'timeout' for a socket, media connection or welcome that was lost.
  // After `bye{moved}` control moved us on purpose: the bridge is fine and is not reported.
  function sessionLost(detail, cause = 'closed') {
    if (!inMeeting()) return;
    const lostBridge = app.session ? app.session.bridgeId : null;
    teardownSession();
    if (bm.state !== 'joining') {
      bm.reconnects++;
      setState('reconnecting');
    }
    setStatus(bm.state === 'joining' ? 'Connecting…' : 'Reconnecting…');
    renderModeration();
    const moved = cause === 'moved';
    if (app.placement) {
      const record = {
        cause, lostBridge, lostAt: performance.now(), bridgeId: null, attempts: 0,
        answerMs: null, welcomeMs: null, connectedMs: null, mediaMs: null, rejoined: false,
      };
      bm.reconnectLog.push(record);
      if (bm.reconnectLog.length > RECONNECT_LOG_MAX) bm.reconnectLog.shift();
      app.recovery = { lostBridge: moved ? null : lostBridge, record };
    }
    if (app.recovery && app.retryAttempt === 0) {
      // The first call of an outage goes out at once: after `moved` control is expecting it, and
      // after a loss the report helps control decide sooner. A session lost again before it
      // connected (retryAttempt is reset only then) backs off, so this cannot spin.
      app.retryAttempt = 1;
      setStatusDetail(detail);
      connect();
    } else {
      scheduleRetry(detail);
    }
  }

  // A join the user has to fix (name, password, token, permissions): back to the pre-join form.
  function failJoin(message, code) {
    clearTimeout(app.retryTimer);
    app.attempt = null;
    app.placement = null;
    app.recovery = null;
    teardownSession();
    leaveModeration();
    clearLobby();
    setState('error');
    stopScreenShare(false);
    removeAllTiles();
    showView('prejoin-view');
    $('prejoin-devices-slot').append($('device-panel'));
    app.lastError = { code: code || 'error', message: message || 'Could not join the meeting.' };
    if (code === 'password_required' || code === 'wrong_password') {
      if (code === 'wrong_password') app.password = null;
      showText('join-error', '');
      showText('password-error', code === 'wrong_password' ? 'Wrong password' : '');
      $('password-row').hidden = false;
      $('password').focus();
      $('password').select();
    } else {
      showText('join-error', app.lastError.message);
    }
    renderLocal();
  }

  // Ends the meeting view. Only a `canRejoin` ending offers the "Rejoin" button; nothing here
  // ever joins again on its own.
  function endMeeting(title, detail, reason = 'left', canRejoin = true) {
    clearTimeout(app.retryTimer);
    app.attempt = null;
    app.placement = null;
    app.recovery = null;
    teardownSession();
    leaveModeration();
    clearLobby();
    app.endReason = reason;
    setState('left');
    stopScreenShare(false);
    stopLocalMedia();
    removeAllTiles();
    $('left-title').textContent = title;
    $('left-detail').textContent = detail || '';
    $('rejoin-button').hidden = !canRejoin;
    $('rejoin-button').textContent = reason === 'lobby_expired' ? 'Ask again' : 'Rejoin';
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

  // ---------------------------------------------------------------- waiting to be let in

  function rememberResumeState() {
    if (inMeeting()) app.resumeState = bm.state === 'reconnecting' ? 'reconnecting' : 'joining';
  }

  function showWaiting(kind) {
    teardownSession();
    leaveModeration();
    closePanels();
    if (kind === 'lobby') {
      $('lobby-title').textContent = 'Waiting for a moderator to let you in';
      $('lobby-detail').textContent = 'The moderators can see that you are waiting.';
    } else {
      $('lobby-title').textContent = 'Waiting for the host to start the meeting';
      $('lobby-detail').textContent = 'You will join as soon as a moderator has opened it.';
    }
    showView('lobby-view');
    renderLocal();
  }

  // 202 from the join: a moderator has to let us in. Poll until they decide.
  function enterLobby(wait) {
    rememberResumeState();
    clearTimeout(app.retryTimer);
    app.role = null;
    app.sessionToken = wait.session_token;
    app.placement = { pid: wait.participant_id, token: wait.session_token };
    app.lobby = { pid: wait.participant_id, token: wait.session_token, failures: 0 };
    setState('lobby');
    showWaiting('lobby');
    scheduleLobbyPoll();
  }

  function scheduleLobbyPoll(ms = LOBBY_POLL_MS) {
    clearTimeout(app.lobbyTimer);
    app.lobbyTimer = setTimeout(pollLobby, ms);
  }

  async function pollLobby() {
    const lobby = app.lobby;
    if (!lobby || bm.state !== 'lobby') return;
    const path = `/api/v1/rooms/${encodeURIComponent(app.room)}/lobby/${encodeURIComponent(lobby.pid)}`;
    let res = null;
    let data = null;
    try {
      res = await fetch(path, withTimeout({ headers: { Authorization: `Bearer ${lobby.token}` }, cache: 'no-store' }));
      try { data = await res.json(); } catch { /* handled below */ }
    } catch { /* network: try again */ }
    if (app.lobby !== lobby || bm.state !== 'lobby') return;
    if (res && res.status === 202) {
      lobby.failures = 0;
      $('lobby-detail').textContent = 'The moderators can see that you are waiting.';
      scheduleLobbyPoll();
      return;
    }
    if (res && res.ok && isJoinResponse(data)) {
      admitted(data);
      return;
    }
    const code = res ? apiErrorOf(data, res.status).code : 'network';
    if (code === 'lobby_denied') {
      endMeeting('A moderator declined your request', 'You were not let into this meeting.', 'lobby_denied', false);
    } else if (code === 'kicked') {
      endMeeting('You were removed from the meeting', 'A moderator removed you from this meeting.', 'kicked', false);
    } else if (res && (res.status === 404 || res.status === 401)) {
      endMeeting('The request expired', 'Nobody let you in in time, or the meeting ended.', 'lobby_expired', true);
    } else {
      lobby.failures++;
      $('lobby-detail').textContent = code === 'network' ? 'Cannot reach the server, still trying…' : 'Server error, still trying…';
      scheduleLobbyPoll(Math.min(BACKOFF_MAX_MS, LOBBY_POLL_MS * 2 ** Math.min(lobby.failures, 3)));
    }
  }

  function clearLobby() {
    clearTimeout(app.lobbyTimer);
    app.lobbyTimer = null;
    app.lobby = null;
  }

  // guest_not_allowed: nobody has opened the meeting yet. Try again every few seconds.
  function waitForHost() {
    rememberResumeState();
    setState('waiting');
    showWaiting('host');
    clearTimeout(app.retryTimer);
    app.retryTimer = setTimeout(() => { if (bm.state === 'waiting') connect(); }, HOST_RETRY_MS);
  }

  // Tells control we stopped waiting, so the knock leaves the moderators' list and frees its
  // place in the lobby; best effort (the wait expires anyway).
  function withdrawFromLobby(lobby) {
    if (!lobby) return;
    const path = `/api/v1/rooms/${encodeURIComponent(app.room)}/lobby/${encodeURIComponent(lobby.pid)}`;
    fetch(path, { method: 'DELETE', headers: { Authorization: `Bearer ${lobby.token}` }, keepalive: true })
      .catch(() => {});
  }

  function cancelWaiting() {
    withdrawFromLobby(app.lobby);
    clearLobby();
    clearTimeout(app.retryTimer);
    app.attempt = null;
    app.placement = null;
    app.recovery = null;
    app.resumeState = 'joining';
    setState('idle');
    removeAllTiles();
    $('prejoin-devices-slot').append($('device-panel'));
    showView('prejoin-view');
    renderLocal();
  }

  // ---------------------------------------------------------------- signaling session

  function startSession(join, record = null) {
    const s = {
      bridgeId: typeof join.bridge_id === 'string' ? join.bridge_id : null,
      record, // the reconnect this session recovers from, if any, for its timings
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
    bm.bridgeId = s.bridgeId;
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
      // `?viewer=1`: a receive-only viewer (a webinar's audience); the bridge offers it no slot.
      send(s, app.viewer
        ? { type: 'hello', ticket: join.ticket, media: 'receive_only' }
        : { type: 'hello', ticket: join.ticket });
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
      if (s === app.session && !s.welcomed) sessionLost('The bridge did not answer', 'timeout');
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
      ...(window.bridgemeshE2ee ? window.bridgemeshE2ee.peerConnectionConfig() : {}), // e2ee.js
    });
    // All three senders are added now, before the first offer, for two reasons:
    // - per JSEP 5.10 the bridge's recvonly m-lines attach to transceivers made by addTrack;
    // - a later addTrack would recycle any transceiver whose sender never sent, which includes
    //   the ones receiving remote participants, and the screen would never reach the bridge.
    // Missing media gets a stand-in track that is swapped for null right away, so turning the
    // mic/camera on later, or sharing the screen, is just replaceTrack().
    const standIns = [];
    if (!app.viewer) {
      s.micSender = addSender(pc, app.micTrack, 'audio', app.localStream, standIns);
      s.camSender = addSender(pc, app.camTrack, 'video', app.localStream, standIns);
      s.screenSender = addSender(pc, app.screenTrack, 'video', app.screenStream, standIns);
    }
    for (const { sender, track } of standIns) {
      sender.replaceTrack(null).catch(() => {}).finally(() => track.stop());
    }
    pc.ontrack = (ev) => onRemoteTrack(s, ev);
    if (window.bridgemeshE2ee) window.bridgemeshE2ee.watch(pc); // encrypts senders, decrypts receivers
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
    bm.bridgeId = null;
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
          if (s === app.session) sessionLost('Media negotiation failed', 'failed');
        });
        break;
      case 'participant_joined':
      case 'participant_updated': upsertParticipant(msg.participant); break;
      case 'participant_left': removeParticipant(msg.participant_id); break;
      case 'error':
        if (msg.message) { setStatusDetail(msg.message); toast(msg.message); }
        break;
      case 'bye': onBye(msg.reason); break;
      case 'mute_requested': onMuteRequested(msg.by); break;
      case 'mute_requested_by_operator': onMuteRequested(null, 'The meeting\'s operator asked you to mute'); break;
      case 'dominant_speaker': onDominantSpeaker(msg.participant_id); break;
      default: break; // newer bridges may send more; ignore what we don't know
    }
    if (window.bridgemeshMeeting) window.bridgemeshMeeting.onMessage(msg);
    if (window.bridgemeshE2ee) window.bridgemeshE2ee.onMessage(msg);
    if (window.bridgemeshRecording) window.bridgemeshRecording.onMessage(msg);
  }

  // Milliseconds since the loss a reconnect record is about.
  function sinceLoss(record) {
    return Math.round(performance.now() - record.lostAt);
  }

  function onWelcome(s, msg) {
    markStep('welcomeAt');
    s.welcomed = true;
    if (s.record && s.record.welcomeMs === null) s.record.welcomeMs = sinceLoss(s.record);
    clearTimeout(s.welcomeTimer);
    bm.participantId = msg.participant_id || bm.participantId;
    // The session started with no remote state (teardownSession cleared it), so the list
    // in the welcome is the whole room.
    for (const p of Array.isArray(msg.participants) ? msg.participants : []) upsertParticipant(p);
    sendMute();
    if (app.screenTrack && s.screenSender) send(s, { type: 'publish', source: 'screen' });
  }

  // The camera's first transceiver, which no m-line took, carries the screen from now on: the
  // screen's m-line, when the bridge offers it, goes to the first transceiver made by addTrack
  // that no m-line took, and Chromium counts a stopped one too (it would answer `inactive` and
  // the screen would never leave). The screen's own transceiver is stopped, behind it.
  async function swapScreenSender(s, spare) {
    const transceiverOf = (sender) => sender && s.pc.getTransceivers().find((t) => t.sender === sender);
    const stop = (t) => { try { t.stop(); } catch { /* already stopped */ } };
    const spareT = transceiverOf(spare);
    const screenT = transceiverOf(s.screenSender);
    if (!spareT || spareT.mid !== null) return;
    if (screenT && screenT.mid !== null) { // the screen has its m-line already
      stop(spareT);
      return;
    }
    await spare.replaceTrack(app.screenTrack || null);
    s.screenSender = spare;
    if (screenT) stop(screenT);
  }

  async function handleOffer(s, msg) {
    if (s !== app.session) return;
    // Set the map first: ontrack fires during setRemoteDescription and looks it up.
    s.tracksByMid = new Map((Array.isArray(msg.tracks) ? msg.tracks : []).map((t) => [String(t.mid), t]));
    const sdp = window.bridgemeshSimulcast ? window.bridgemeshSimulcast.offerToApply(msg.sdp) : msg.sdp;
    await s.pc.setRemoteDescription({ type: 'offer', sdp });
    if (s !== app.session) return;
    if (window.bridgemeshSimulcast && !app.viewer) {
      const before = s.camSender;
      s.camSender = await window.bridgemeshSimulcast.adoptCamera(s.pc, s.camSender);
      if (s.camSender !== before) {
        // The camera moved to the simulcast transceiver: its frames need the encrypting transform too.
        if (window.bridgemeshE2ee) window.bridgemeshE2ee.attachSender(s.camSender);
        await swapScreenSender(s, before);
      }
    }
    await s.pc.setLocalDescription(await s.pc.createAnswer());
    if (s !== app.session) return;
    send(s, { type: 'answer', sdp: s.pc.localDescription.sdp });
    markStep('answerSentAt');
    if (window.bridgemeshSimulcast) window.bridgemeshSimulcast.onNegotiated(s.camSender);
    syncTracks(s);
  }

  function onRemoteTrack(s, ev) {
    if (s !== app.session) return;
    const mid = ev.transceiver && ev.transceiver.mid;
    if (mid === null || mid === undefined) return;
    const record = s.record;
    if (record && record.mediaMs === null) {
      // A remote track is muted until its first packets arrive.
      const mark = () => { if (record.mediaMs === null && s === app.session) record.mediaMs = sinceLoss(record); };
      if (!ev.track.muted) mark();
      else ev.track.addEventListener('unmute', mark, { once: true });
    }
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
      endMeeting('You joined from somewhere else',
        'This window was disconnected because you connected again from another tab or device.', 'replaced');
    } else if (reason === 'kicked') {
      endMeeting('You were removed from the meeting', 'A moderator removed you from this meeting.', 'kicked', false);
    } else if (reason === 'meeting_ended') {
      endMeeting('The meeting has ended', 'A moderator ended the meeting for everyone.', 'meeting_ended', false);
    } else if (reason === 'moved') {
      sessionLost('Moving to another bridge…', 'moved');
    } else {
      // bridge_shutdown, protocol_error, and reasons newer than this client: a lost session.
      const known = reason === 'bridge_shutdown' || reason === 'protocol_error';
      sessionLost(reason === 'bridge_shutdown' ? 'The bridge is restarting' : 'The bridge ended the session',
        known ? reason : 'bye');
    }
  }

  function onConnectionState(s) {
    if (s !== app.session) return;
    const state = s.pc.connectionState;
    clearTimeout(s.disconnectTimer);
    if (state === 'connected') {
      markStep('connectedAt');
      if (s.record && s.record.connectedMs === null) s.record.connectedMs = sinceLoss(s.record);
      app.retryAttempt = 0;
      setState('connected');
      setStatus('Connected');
      setStatusDetail('');
      // A reconnect keeps the role: moderator controls hidden while reconnecting come back.
      renderModeration();
    } else if (state === 'failed') {
      sessionLost('Media connection failed', 'failed');
    } else if (state === 'disconnected') {
      // ICE often recovers from a brief network blip on its own; give it a moment.
      setStatusDetail('Connection unstable…');
      s.disconnectTimer = setTimeout(() => {
        if (s === app.session && s.pc.connectionState === 'disconnected') sessionLost('Media connection lost', 'failed');
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
    if (app.viewer) {
      toast('Viewers (?viewer=1) do not publish.');
      return;
    }
    try {
      if (s.screenSender) await s.screenSender.replaceTrack(app.screenTrack);
      else {
        s.screenSender = s.pc.addTrack(app.screenTrack, app.screenStream); // no stand-in possible
        if (window.bridgemeshE2ee) window.bridgemeshE2ee.attachSender(s.screenSender);
      }
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
    if (panel.hidden && !$('moderator-panel').hidden) toggleModeratorPanel(false);
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
    // `?viewer=1` joins receive-only: no camera or microphone is asked for, nothing is published.
    app.viewer = params.get('viewer') === '1';
    if (app.viewer) {
      app.micOn = false;
      app.camOn = false;
    }
    renderControls();
    renderLocal();
    if (!app.viewer) await acquireMedia();
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
    $('lobby-cancel').addEventListener('click', cancelWaiting);
    $('moderate-button').addEventListener('click', () => toggleModeratorPanel());
    $('lobby-toggle').addEventListener('change', onLobbyToggle);
    $('mod-password-form').addEventListener('submit', onPasswordSubmit);
    $('mod-password-remove').addEventListener('click', () => setPassword(null));
    $('mute-all-button').addEventListener('click', () => muteAll());
    $('end-all-button').addEventListener('click', onEndForAllClick);
    $('password').addEventListener('input', () => showText('password-error', ''));
    document.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && !$('room-view').hidden) closePanels();
    });
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
    window.addEventListener('pagehide', () => {
      if (app.session) send(app.session, { type: 'leave' });
      if (bm.state === 'lobby') withdrawFromLobby(app.lobby);
    });
  }

  function init() {
    // `#jwt=<token>`: the fragment never reaches the server's logs. Keep the token in memory
    // only and take it out of the address bar, so a copied link does not hand it on.
    const hash = new URLSearchParams(location.hash.slice(1));
    app.jwt = hash.get('jwt') || null;
    if (hash.has('jwt')) {
      hash.delete('jwt');
      const rest = hash.toString();
      history.replaceState(history.state, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
    }
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

  // Test hooks for moderation and room policy (see the fields of `bm` above for the rest).
  Object.assign(bm, {
    role: () => app.role,
    lobbyWaiting: () => bm.state === 'lobby',
    waitingForHost: () => bm.state === 'waiting',
    lobbyList: () => (app.roomView && Array.isArray(app.roomView.lobby) ? app.roomView.lobby : [])
      .map((g) => ({ id: g.participant_id, name: g.display_name })),
    roomView: () => app.roomView,
    admit,
    deny,
    kick,
    setPassword,
    setLobby,
    muteAll,
    endMeeting: endForAll, // no confirm() dialog: tests cannot answer one
    micMuted: () => !micActive(),
    endReason: () => app.endReason,
    joinError: () => app.lastError,
    passwordPrompt: () => !$('password-row').hidden,
  });

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
