// bridgemesh web client: start page, pre-join and the meeting room.
// Plain browser JavaScript, served by the control node with index.html and style.css.
// The bridge is always the SDP offerer; this client only answers (see docs/signaling.md).
(() => {
  'use strict';

  const ROOM_RE = /^[a-z0-9_-][a-z0-9._-]{0,63}$/;
  const NAME_MAX_CHARS = 64;
  const STORE_NAME = 'bridgemesh.displayName';
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 5000;
  const RETRY_AFTER_MAX_MS = 30000;
  const JOIN_TIMEOUT_MS = 15000;
  const RETRYABLE_CODES = new Set(['no_capacity', 'rate_limited', 'internal', 'network', 'bad_response']);
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

  // ---------------------------------------------------------------- local media (local-media.js)

  const {
    acquireMedia, camActive, ensureAudioCtx, micActive, onDominantSpeaker, refreshDeviceLists, renderControls, renderLocal, setActiveSpeaker, setCamOn, setMicOn, stopLocalMedia, switchDevice,
  } = window.bridgemeshLocalMedia({
    $, app, bm, colourFor, currentName, initialOf, load,
    sendMute: (...args) => sendMute(...args), // session.js, built below
    // Built after this, by tiles.js, which reads this one's: called only once both exist.
    renderTile: (...args) => renderTile(...args), setTileVideo: (...args) => setTileVideo(...args), showText, store, tiles, toast,
  });

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

  // ---------------------------------------------------------------- session (session.js)

  const {
    send, sendMute, sinceLoss, startScreenShare, startSession, stopScreenShare, teardownSession,
  } = window.bridgemeshSession({
    app, bm, camActive, clearRemote, createTile, endMeeting, ensureAudioCtx, failJoin, inMeeting, markStep, micActive, onDominantSpeaker, onMuteRequested, remoteMedia, removeRemote, removeTile, renderControls, renderModeration, renderRemote, renderTile, sessionLost, setState, setStatus, setStatusDetail, setTileVideo, tiles, toast,
  });

  // ---------------------------------------------------------------- waiting to be let in (lobby.js)

  const {
    cancelWaiting, clearLobby, enterLobby, waitForHost, withdrawFromLobby,
  } = window.bridgemeshLobby({
    $, BACKOFF_MAX_MS, admitted, apiErrorOf, app, bm, closePanels, connect, endMeeting, inMeeting, isJoinResponse, leaveModeration, removeAllTiles, renderLocal, setState, showView, teardownSession, withTimeout,
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
