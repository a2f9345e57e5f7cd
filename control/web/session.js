// bridgemesh web client: one session with a bridge: its signaling WebSocket and the peer
// connection it negotiates (the bridge offers, the page answers; docs/signaling.md), the
// remote participants and tracks it brings, and the page's screen share on it. Loaded before
// app.js, which builds it once with what it reads (`window.bridgemeshSession`).
(() => {
  'use strict';

  const SOURCES = ['microphone', 'camera', 'screen'];
  const DISCONNECT_GRACE_MS = 3000;
  const WELCOME_TIMEOUT_MS = 10000;

  window.bridgemeshSession = ({
    app, bm, camActive, clearRemote, createTile, endMeeting, ensureAudioCtx, failJoin, inMeeting, markStep, micActive, onDominantSpeaker, onMuteRequested, remoteMedia, removeRemote, removeTile, renderControls, renderModeration, renderRemote, renderTile, sessionLost, setState, setStatus, setStatusDetail, setTileVideo, tiles, toast,
  }) => {
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

    return {
      send, sendMute, sinceLoss, startScreenShare, startSession, stopScreenShare, teardownSession,
    };
  };
})();
