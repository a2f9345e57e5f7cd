// bridgemesh web client: the page's own microphone and camera: asking for them, turning them on
// and off, switching devices, the pre-join preview and the meeting's buttons; and the level
// meters. Loaded before app.js, which builds it once with what it reads
// (`window.bridgemeshLocalMedia`).
(() => {
  'use strict';

  const STORE_MIC = 'bridgemesh.micId';
  const STORE_CAMERA = 'bridgemesh.cameraId';
  // The microphone level bar is refreshed this often. Who speaks is the bridge's decision
  // (`dominant_speaker`, from the audio levels in every publisher's packets).
  const METER_INTERVAL_MS = 100;

  window.bridgemeshLocalMedia = ({
    $, app, bm, colourFor, currentName, initialOf, load, renderTile, sendMute, setTileVideo, showText, store, tiles, toast,
  }) => {
    const meters = new Map(); // 'local' or pid -> analyser state

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

    return {
      acquireMedia, camActive, ensureAudioCtx, micActive, onDominantSpeaker, refreshDeviceLists, renderControls, renderLocal, setActiveSpeaker, setCamOn, setMicOn, stopLocalMedia, switchDevice,
    };
  };
})();
