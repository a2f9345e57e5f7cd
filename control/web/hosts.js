// bridgemesh web client: host accounts (docs/hosts.md). Logging in as a host, the host's
// invite links, and the words for "this meeting is for hosts". Loaded before app.js, which asks
// `window.bridgemeshHosts` for the credential and the invite a join carries.
(() => {
  'use strict';

  const STORE_LOGIN = 'bridgemesh.hostLogin'; // { username, token, expiresAt (ms) }
  const API_TIMEOUT_MS = 10000;

  const $ = (id) => document.getElementById(id);

  const state = {
    login: null,
    // `#invite=<token>` of the address: kept in memory only and taken out of the address bar,
    // so that copying the room's link does not hand the invite on.
    invite: null,
  };

  function withTimeout(init) {
    if (typeof AbortSignal !== 'undefined' && AbortSignal.timeout) init.signal = AbortSignal.timeout(API_TIMEOUT_MS);
    return init;
  }

  function readStoredLogin() {
    let login = null;
    try { login = JSON.parse(localStorage.getItem(STORE_LOGIN) || 'null'); } catch { login = null; }
    if (!login || typeof login.token !== 'string' || typeof login.username !== 'string') return null;
    if (typeof login.expiresAt !== 'number' || login.expiresAt <= Date.now()) return null;
    return login;
  }

  function storeLogin(login) {
    state.login = login;
    try {
      if (login) localStorage.setItem(STORE_LOGIN, JSON.stringify(login));
      else localStorage.removeItem(STORE_LOGIN);
    } catch { /* storage disabled: the login lasts as long as the page */ }
    render();
  }

  function takeInviteFromAddress() {
    const hash = new URLSearchParams(location.hash.slice(1));
    if (!hash.has('invite')) return;
    state.invite = hash.get('invite') || null;
    hash.delete('invite');
    const rest = hash.toString();
    history.replaceState(history.state, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
  }

  async function api(method, path, body, bearer) {
    const headers = {};
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, withTimeout(init));
    } catch {
      return { ok: false, code: 'network', message: 'Cannot reach the server.' };
    }
    let data = null;
    try { data = await res.json(); } catch { /* handled below */ }
    if (res.ok) return { ok: true, data };
    const error = (data && data.error) || {};
    return {
      ok: false,
      code: typeof error.code === 'string' ? error.code : `http_${res.status}`,
      message: typeof error.message === 'string' ? error.message : `The server answered HTTP ${res.status}.`,
      retryAfterS: Number(res.headers.get('Retry-After')) || 0,
    };
  }

  // Resolves to { ok: true, username } or { ok: false, code, message }.
  async function login(username, password) {
    const r = await api('POST', '/api/v1/login', { username, password });
    if (!r.ok) {
      const message = {
        login_failed: 'Wrong user name or password.',
        login_locked: `Too many failed logins. Try again in ${r.retryAfterS || 'a few'} seconds.`,
        invalid_field: 'Wrong user name or password.',
      }[r.code] || r.message;
      return { ok: false, code: r.code, message };
    }
    storeLogin({
      username: r.data.username,
      token: r.data.token,
      expiresAt: Date.now() + Number(r.data.expires_in_s) * 1000,
    });
    return { ok: true, username: r.data.username };
  }

  // Logging out forgets the login in this browser (a new password ends it everywhere).
  function logout() {
    storeLogin(null);
  }

  // Resolves to { ok: true, link, expiresAt } or { ok: false, code, message }.
  async function createInvite(room, validForS, maxUses) {
    if (!state.login) return { ok: false, code: 'login_required', message: 'Log in as a host first.' };
    const body = { valid_for_s: validForS };
    if (maxUses) body.max_uses = maxUses;
    const r = await api('POST', `/api/v1/rooms/${encodeURIComponent(room)}/invites`, body, state.login.token);
    if (!r.ok) {
      if (r.code === 'login_required') storeLogin(null);
      return { ok: false, code: r.code, message: r.message };
    }
    return { ok: true, link: `${location.origin}${r.data.path}`, expiresAt: r.data.expires_at_unix_s * 1000 };
  }

  function roomName() {
    const path = location.pathname.replace(/^\/+|\/+$/g, '');
    try { return decodeURIComponent(path); } catch { return path; }
  }

  // ---------------------------------------------------------------- the page

  function show(id, visible) {
    const el = $(id);
    if (el) el.hidden = !visible;
  }

  function render() {
    const login = state.login;
    show('host-signed-in', Boolean(login));
    show('host-login-open', !login);
    if (login) show('host-login-form', false);
    if ($('host-name')) $('host-name').textContent = login ? login.username : '';
    show('host-badge', Boolean(login));
    if ($('host-badge')) $('host-badge').textContent = login ? `Host: ${login.username}` : '';
    show('invite-section', Boolean(login));
  }

  async function onLoginSubmit(ev) {
    ev.preventDefault();
    const error = $('host-login-error');
    error.hidden = true;
    $('host-login-submit').disabled = true;
    const r = await login($('host-username').value.trim().toLowerCase(), $('host-password').value);
    $('host-login-submit').disabled = false;
    $('host-password').value = '';
    if (!r.ok) {
      error.textContent = r.message;
      error.hidden = false;
    }
  }

  // ------------------------------------------------------------ single sign-on

  // The provider's login comes back as `#host_login=<session>`: taken out of the address bar at
  // once, then asked about (who it names, for how long) as a stored login would be.
  function takeSsoLoginFromAddress() {
    const hash = new URLSearchParams(location.hash.slice(1));
    if (!hash.has('host_login')) return;
    const token = hash.get('host_login');
    hash.delete('host_login');
    const rest = hash.toString();
    history.replaceState(history.state, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
    if (!token) return;
    api('GET', '/api/v1/login', undefined, token).then((r) => {
      if (!r.ok) return;
      storeLogin({
        username: r.data.username,
        token,
        expiresAt: Date.now() + Number(r.data.expires_in_s) * 1000,
      });
    });
  }

  // Shows "Log in with SSO" when the server has a provider; it leaves for the provider and
  // comes back to this page.
  async function offerSso() {
    const r = await api('GET', '/api/v1/oidc/config');
    const button = $('host-sso');
    if (!button || !r.ok || !r.data || !r.data.enabled) return;
    if (typeof r.data.button_label === 'string') button.textContent = r.data.button_label;
    button.hidden = false;
    button.addEventListener('click', () => {
      // Back on this page without `autojoin`: the join must wait for the session the login brings.
      const query = new URLSearchParams(location.search);
      query.delete('autojoin');
      const back = `${location.pathname}${query.toString() ? `?${query}` : ''}`;
      location.href = `/api/v1/oidc/start?return_to=${encodeURIComponent(back)}`;
    });
  }

  async function onInviteCreate() {
    const validForS = Number($('invite-valid').value);
    const maxUses = Number($('invite-uses').value) || null;
    const r = await createInvite(roomName(), validForS, maxUses);
    const out = $('invite-link');
    out.hidden = false;
    if (!r.ok) {
      out.value = r.message;
      return;
    }
    out.value = r.link;
    out.select();
    try {
      if (navigator.clipboard && navigator.clipboard.writeText) await navigator.clipboard.writeText(r.link);
    } catch { /* the link stays selected in the field to copy by hand */ }
  }

  function bind() {
    $('host-login-open').addEventListener('click', () => {
      show('host-login-form', true);
      $('host-username').focus();
    });
    $('host-login-form').addEventListener('submit', onLoginSubmit);
    $('host-logout').addEventListener('click', logout);
    $('invite-create').addEventListener('click', onInviteCreate);
    offerSso();
    render();
    // A stored login may have ended meanwhile (new password, removed account): ask once.
    if (state.login) {
      const token = state.login.token;
      api('GET', '/api/v1/login', undefined, token).then((r) => {
        if (!r.ok && r.code !== 'network' && state.login && state.login.token === token) storeLogin(null);
      });
    }
  }

  state.login = readStoredLogin();
  takeInviteFromAddress();
  takeSsoLoginFromAddress();

  // What app.js asks for (keep the names stable; tests call them too).
  window.bridgemeshHosts = {
    // `Authorization` value for joins, or null when not logged in as a host.
    authorization: () => (state.login ? `Bearer ${state.login.token}` : null),
    invite: () => state.invite,
    loggedInAs: () => (state.login ? state.login.username : null),
    login,
    logout,
    createInvite: (validForS, maxUses) => createInvite(roomName(), validForS, maxUses),
    // Words for the join refusals that are about hosts and invites; null for the others.
    errorText(code) {
      return {
        hosts_only: 'This meeting is for hosts only. Log in as a host, or ask a host for an invite link.',
        login_required: 'Your host login has ended. Log in again.',
        invite_invalid: 'This invite link is damaged or for another meeting. Copy the whole link again.',
        invite_expired: 'This invite link has expired. Ask the host for a new one.',
        invite_used_up: 'This invite link has been used up. Ask the host for a new one.',
      }[code] || null;
    },
    // A join refused for the login or the invite it carried: forget what failed, and say so, so
    // that the join is tried again without it (a guest then waits as any guest would). Returns
    // the words for that, or null when the refusal is not about these.
    recover(code) {
      if (code === 'login_required' && state.login) {
        storeLogin(null);
        return 'Your host login has ended; joining as a guest.';
      }
      if ((code === 'invite_expired' || code === 'invite_used_up' || code === 'invite_invalid') && state.invite) {
        state.invite = null;
        return `${this.errorText(code)} Asking to join instead.`;
      }
      return null;
    },
  };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', bind);
  else bind();
})();
