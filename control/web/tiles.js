// bridgemesh web client: the meeting's tiles (one per camera and screen share, local and remote),
// their layout in the grid, and the <audio> elements remote sound plays through.
// Loaded before app.js, which builds it once with what the tiles read (`window.bridgemeshTiles`).
(() => {
  'use strict';

  const MIN_TILE_WIDTH = 160;

  window.bridgemeshTiles = ({
    $, app, audioEls, bm, camActive, colourFor, confirmKick, currentName, icon, initialOf, kick, markStep, micActive, playMedia, remoteMedia, setActiveSpeaker, tiles,
  }) => {
    function createTile(key, { pid = null, local = false, screen = false } = {}) {
      const el = document.createElement('div');
      el.className = 'tile';
      el.dataset.tile = key; // e2ee.js finds a participant's tiles by it
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
      let kickButton = null;
      if (!local && !screen && pid) {
        // Shown to moderators only (CSS: .tiles.moderating).
        kickButton = document.createElement('button');
        kickButton.type = 'button';
        kickButton.className = 'kick';
        const kickLabel = document.createElement('span');
        kickLabel.className = 'kick-label';
        kickLabel.textContent = 'Remove';
        kickButton.append(icon('i-user-x'), kickLabel);
        kickButton.addEventListener('click', () => confirmKick(pid));
        el.append(kickButton);
      }
      const tile = {
        key, pid, local, screen, el, video, avatar, initial, nameEl, micIcon, kickButton, track: null, onMute: null,
      };
      tiles.set(key, tile);
      if (key === bm.activeSpeaker) el.classList.add('speaking');
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
      if (tile.kickButton) {
        const label = `Remove ${name} from the meeting`;
        tile.kickButton.setAttribute('aria-label', label);
        tile.kickButton.title = label;
      }
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
      }
      if (!track) return;
      const el = document.createElement('audio');
      el.autoplay = true;
      el.setAttribute('autoplay', '');
      el.srcObject = new MediaStream([track]);
      $('remote-audio').append(el);
      audioEls.set(pid, { el, track });
      playMedia(el);
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

    return {
      clearRemote, createTile, ensureLocalTile, layoutGrid, removeAllTiles, removeRemote, removeTile, renderRemote, renderTile, setRemoteAudio, setTileVideo,
    };
  };
})();
