// bridgemesh web client: what a moderator gets in the meeting: the lobby's knocks (admit, deny),
// removing a participant, the room's password and lobby settings, mute everyone, end the meeting
// for everyone; and being asked to mute. Through the control API's room calls with the session's
// token. Loaded before app.js, which builds it once with what it reads
// (`window.bridgemeshModeration`).
(() => {
  'use strict';

  const ROOM_POLL_MS = 1500; // a moderator refreshes the room (who knocks at the lobby)

  window.bridgemeshModeration = ({
    $, apiErrorOf, app, bm, endMeeting, inMeeting, setMicOn, toast, toggleSettings, withTimeout,
  }) => {
    // Not while reconnecting: until control answers, we are not in the meeting on any bridge, and
    // if control no longer holds us the rejoin brings a new participant id and token.
    function isModerator() {
      return app.role === 'moderator' && inMeeting() && bm.state !== 'reconnecting';
    }

    // A call about our room with the session token; never throws.
    async function roomApi(method, path, body) {
      const headers = {};
      if (app.sessionToken) headers.Authorization = `Bearer ${app.sessionToken}`;
      const init = { method, headers, cache: 'no-store' };
      if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body);
      }
      let res;
      try {
        res = await fetch(`/api/v1/rooms/${encodeURIComponent(app.room)}${path}`, withTimeout(init));
      } catch {
        return { ok: false, status: 0, code: 'network', message: 'Cannot reach the server.' };
      }
      let data = null;
      try { data = await res.json(); } catch { /* an error without a body */ }
      if (!res.ok) return { ok: false, status: res.status, ...apiErrorOf(data, res.status) };
      return { ok: true, status: res.status, data };
    }

    // Runs a moderator action; failures are shown as a toast. Resolves to { ok: true } or
    // { error: code, message }.
    async function moderatorAction(method, path, body, doneText) {
      const r = await roomApi(method, path, body);
      if (!r.ok) {
        const text = r.code === 'forbidden' ? 'Only a moderator in the meeting can do that.' : r.message;
        toast(text, 6000);
        return { error: r.code, message: r.message };
      }
      if (doneText) toast(doneText);
      refreshRoom();
      return { ok: true };
    }

    const lobbyPath = (pid, action) => `/lobby/${encodeURIComponent(pid)}/${action}`;

    function admit(pid) { return moderatorAction('POST', lobbyPath(pid, 'admit'), undefined, null); }

    function deny(pid) { return moderatorAction('POST', lobbyPath(pid, 'deny'), undefined, null); }

    function kick(pid) {
      return moderatorAction('POST', `/participants/${encodeURIComponent(pid)}/kick`, undefined, null);
    }

    async function setPassword(password) {
      const r = await moderatorAction('PATCH', '/settings', { password },
        password === null ? 'Password removed.' : 'Password set.');
      // Our own rejoins need it too (the moderator role does not survive a new participant id).
      if (r.ok) app.password = password;
      return r;
    }

    function setLobby(enabled) {
      return moderatorAction('PATCH', '/settings', { lobby_enabled: Boolean(enabled) },
        enabled ? 'Lobby on: guests wait to be let in.' : 'Lobby off.');
    }

    function muteAll() { return moderatorAction('POST', '/mute-all', undefined, 'Asked everyone to mute.'); }

    async function endForAll() {
      const r = await moderatorAction('POST', '/end', undefined, null);
      if (r.ok && inMeeting()) {
        endMeeting('The meeting has ended', 'You ended the meeting for everyone.', 'meeting_ended', false);
      }
      return r;
    }

    function confirmKick(pid) {
      const p = bm.participants.get(pid);
      const name = (p && p.display_name) || 'this participant';
      if (window.confirm(`Remove ${name} from the meeting?`)) kick(pid);
    }

    // Shows or hides everything moderators get, and starts or stops watching the lobby.
    function renderModeration() {
      const mod = isModerator();
      $('moderate-button').hidden = !mod;
      $('tiles').classList.toggle('moderating', mod);
      if (mod) startRoomPolling();
      else {
        stopRoomPolling();
        if (!$('moderator-panel').hidden) toggleModeratorPanel(false);
      }
    }

    function leaveModeration() {
      app.role = null;
      stopRoomPolling();
      app.roomView = null;
      app.knocks = new Set();
      renderKnocks([]);
      renderModeration();
    }

    function startRoomPolling() {
      if (app.roomPoll) return;
      const poll = {};
      app.roomPoll = poll;
      const tick = async () => {
        if (app.roomPoll !== poll) return;
        await refreshRoom();
        if (app.roomPoll === poll) app.roomTimer = setTimeout(tick, ROOM_POLL_MS);
      };
      tick();
    }

    function stopRoomPolling() {
      app.roomPoll = null;
      clearTimeout(app.roomTimer);
      app.roomTimer = null;
    }

    async function refreshRoom() {
      if (!isModerator() || !app.sessionToken) return;
      const token = app.sessionToken;
      // The periodic poll and the refresh after an action can overlap: only the newest request's
      // answer is applied, or a stale one would bring back a guest just admitted.
      const seq = (app.roomViewSeq = (app.roomViewSeq || 0) + 1);
      const r = await roomApi('GET', '');
      // A reconnect in the meantime means a new participant id: this answer is about the old one.
      if (!r.ok || token !== app.sessionToken || !isModerator() || !r.data) return;
      if (seq !== app.roomViewSeq) return;
      applyRoomView(r.data);
    }

    function applyRoomView(view) {
      app.roomView = view;
      const lobby = Array.isArray(view.lobby) ? view.lobby : [];
      const panelOpen = !$('moderator-panel').hidden;
      for (const guest of lobby) {
        if (!app.knocks.has(guest.participant_id) && !panelOpen) toast(`${guest.display_name} is waiting to join.`, 6000);
      }
      app.knocks = new Set(lobby.map((g) => g.participant_id));
      renderKnocks(lobby);
      const toggle = $('lobby-toggle');
      if (!toggle.disabled) toggle.checked = Boolean(view.lobby_enabled);
      $('mod-password-state').textContent = view.password_set ? 'A password is set.' : 'No password set.';
      $('mod-password-remove').disabled = !view.password_set;
      if (typeof view.your_role === 'string' && view.your_role !== app.role) {
        app.role = view.your_role;
        renderModeration();
      }
    }

    function renderKnocks(lobby) {
      const n = lobby.length;
      const badge = $('knock-badge');
      badge.textContent = String(n);
      badge.hidden = n === 0;
      $('moderate-button').setAttribute('aria-label', n ? `Moderate, ${n} waiting to join` : 'Moderate');
      $('knock-count').textContent = n ? `(${n})` : '';
      $('knock-empty').hidden = n > 0;
      const list = $('knock-list');
      const key = lobby.map((g) => `${g.participant_id}\u0000${g.display_name}`).join('\u0001');
      if (list.dataset.key === key) return; // unchanged: keep focus where it is
      list.dataset.key = key;
      list.replaceChildren();
      for (const guest of lobby) {
        const li = document.createElement('li');
        li.dataset.pid = guest.participant_id;
        const name = document.createElement('span');
        name.className = 'knock-name';
        name.textContent = guest.display_name;
        name.title = guest.display_name;
        const admitButton = document.createElement('button');
        admitButton.type = 'button';
        admitButton.className = 'small-btn accept';
        admitButton.textContent = 'Admit';
        admitButton.setAttribute('aria-label', `Admit ${guest.display_name}`);
        admitButton.addEventListener('click', () => admit(guest.participant_id));
        const denyButton = document.createElement('button');
        denyButton.type = 'button';
        denyButton.className = 'small-btn';
        denyButton.textContent = 'Deny';
        denyButton.setAttribute('aria-label', `Deny ${guest.display_name}`);
        denyButton.addEventListener('click', () => deny(guest.participant_id));
        li.append(name, admitButton, denyButton);
        list.append(li);
      }
    }

    function toggleModeratorPanel(open) {
      const panel = $('moderator-panel');
      const show = typeof open === 'boolean' ? open : panel.hidden;
      if (show && !$('settings-panel').hidden) toggleSettings();
      panel.hidden = !show;
      $('moderate-button').setAttribute('aria-expanded', String(show));
      $('moderate-button').classList.toggle('active', show);
      if (show) refreshRoom();
    }

    function closePanels() {
      $('settings-panel').hidden = true;
      $('settings-button').setAttribute('aria-expanded', 'false');
      $('settings-button').classList.remove('active');
      toggleModeratorPanel(false);
    }

    async function onLobbyToggle(ev) {
      const toggle = ev.target;
      const wanted = toggle.checked;
      toggle.disabled = true;
      const r = await setLobby(wanted);
      toggle.disabled = false;
      if (!r.ok) toggle.checked = !wanted;
    }

    async function onPasswordSubmit(ev) {
      ev.preventDefault();
      const input = $('mod-password');
      const password = input.value;
      if (!password) {
        toast('Type a password first.');
        input.focus();
        return;
      }
      const r = await setPassword(password);
      if (r.ok) input.value = '';
    }

    function onEndForAllClick() {
      if (window.confirm('End the meeting for everyone? Everyone will be disconnected.')) endForAll();
    }

    function onMuteRequested(by, text) {
      bm.muteRequests++;
      const p = typeof by === 'string' ? bm.participants.get(by) : null;
      const who = (p && p.display_name) || 'A moderator';
      setMicOn(false); // as the mic button does; the bridge hears of it through `mute`
      toast(text || `${who} asked everyone to mute`);
    }

    return {
      isModerator, admit, deny, kick, confirmKick, setPassword, setLobby, muteAll, endForAll, renderModeration, leaveModeration, stopRoomPolling, toggleModeratorPanel, closePanels, onLobbyToggle, onPasswordSubmit, onEndForAllClick, onMuteRequested,
    };
  };
})();
