// bridgemesh web client: waiting to be let in: a guest in a room's lobby asks whether a
// moderator admitted it, and a guest who arrived before the room's host tries again until the
// host opens it; both can be cancelled. Loaded before app.js, which builds it once with what it
// reads (`window.bridgemeshLobby`).
(() => {
  'use strict';

  const LOBBY_POLL_MS = 1000; // a guest in the lobby asks whether it was let in
  const HOST_RETRY_MS = 5000; // a guest waiting for the host to open the meeting tries again

  window.bridgemeshLobby = ({
    $, BACKOFF_MAX_MS, admitted, apiErrorOf, app, bm, closePanels, connect, endMeeting, inMeeting, isJoinResponse, leaveModeration, removeAllTiles, renderLocal, setState, showView, teardownSession, withTimeout,
  }) => {
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

    return {
      cancelWaiting, clearLobby, enterLobby, waitForHost, withdrawFromLobby,
    };
  };
})();
