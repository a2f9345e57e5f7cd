// bridgemesh web client: chat, raised hands and reactions (docs/meeting.md).
// Loaded after app.js, which hands every signaling message to `window.bridgemeshMeeting.onMessage`
// and lends `bridgemesh.sendSignal` and `bridgemesh.isModerator`. Everything shown here comes from
// the bridge: a message appears when the bridge echoes it with its id, name and time.
(() => {
  'use strict';

  const bm = window.bridgemesh;
  if (!bm) return;

  const CHAT_MAX_BYTES = 2000; // the bridge refuses longer messages
  const CHAT_SHOWN_MAX = 500; // messages kept on the page (the bridge keeps 200 for late joiners)
  const REACTIONS = ['👍', '👏', '😂', '😮', '❤️', '🎉'];
  const REACTION_SHOW_MS = 4000;
  const REACTIONS_SHOWN_MAX = 20;

  // Test hooks: automated browser tests read these; keep the field names stable.
  const meeting = {
    messages: [], // { id, from, from_name, to?, text, sent_at_ms }, oldest first
    unread: 0, // messages from others since the chat panel was last open
    hands: [], // [{ id, name, at }] raised hands in the order they were raised, this page's own too
    myHandRaisedAt: null,
    reactions: [], // [{ from, reaction }] the latest received, newest last
    errors: [], // error messages the bridge sent about chat, hands and reactions
  };
  bm.meeting = meeting;

  const encoder = new TextEncoder();
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

  // ---- the page's parts, added to the room view once ----
  const roomView = document.getElementById('room-view');
  const controls = roomView && roomView.querySelector('.controls');
  const leaveButton = document.getElementById('leave-button');
  if (!roomView || !controls) return;

  // Icons in the style of index.html's sprite (message-square and smile after Feather, MIT; hand
  // after Lucide, ISC): drawn, not emoji, so they show without an emoji font.
  const sprite = document.querySelector('svg.sprite');
  if (sprite) {
    sprite.insertAdjacentHTML('beforeend', [
      '<symbol id="i-chat" viewBox="0 0 24 24"><path d="M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z"/></symbol>',
      '<symbol id="i-hand" viewBox="0 0 24 24"><path d="M18 11V6a2 2 0 0 0-4 0"/><path d="M14 10V4a2 2 0 0 0-4 0v2"/><path d="M10 10.5V6a2 2 0 0 0-4 0v8"/><path d="M18 8a2 2 0 1 1 4 0v6a8 8 0 0 1-8 8h-2c-2.8 0-4.5-.86-6-2.34l-3.6-3.6a2 2 0 0 1 2.83-2.82L7 15"/></symbol>',
      '<symbol id="i-smile" viewBox="0 0 24 24"><circle cx="12" cy="12" r="10"/><path d="M8 14s1.5 2 4 2 4-2 4-2"/><line x1="9" y1="9" x2="9.01" y2="9"/><line x1="15" y1="9" x2="15.01" y2="9"/></symbol>',
    ].join(''));
  }
  const icon = (name) => {
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('class', 'icon');
    svg.setAttribute('aria-hidden', 'true');
    const use = document.createElementNS('http://www.w3.org/2000/svg', 'use');
    use.setAttribute('href', `#i-${name}`);
    svg.append(use);
    return svg;
  };
  const chatBadge = el('span', { id: 'chat-badge', class: 'badge', hidden: true });
  const chatButton = el('button', { id: 'chat-button', class: 'ctl', type: 'button', 'aria-expanded': 'false', 'aria-controls': 'chat-panel' },
    [icon('chat'), el('span', { class: 'ctl-label', textContent: 'Chat' }), chatBadge]);
  const handButton = el('button', { id: 'hand-button', class: 'ctl', type: 'button', 'aria-pressed': 'false' },
    [icon('hand'), el('span', { class: 'ctl-label', textContent: 'Raise hand' })]);
  const reactButton = el('button', { id: 'react-button', class: 'ctl', type: 'button', 'aria-expanded': 'false', 'aria-controls': 'reaction-picker' },
    [icon('smile'), el('span', { class: 'ctl-label', textContent: 'React' })]);
  for (const button of [chatButton, handButton, reactButton]) controls.insertBefore(button, leaveButton);

  const picker = el('div', { id: 'reaction-picker', class: 'reaction-picker', hidden: true, role: 'menu' },
    REACTIONS.map((reaction) => el('button', { type: 'button', class: 'reaction-choice', textContent: reaction, 'data-reaction': reaction })));
  const chatList = el('ol', { id: 'chat-list', class: 'chat-list', 'aria-live': 'polite' });
  const chatTo = el('select', { id: 'chat-to', 'aria-label': 'Send to' });
  const chatInput = el('textarea', { id: 'chat-input', rows: 2, maxLength: CHAT_MAX_BYTES, placeholder: 'Message', 'aria-label': 'Chat message' });
  const chatError = el('p', { id: 'chat-error', class: 'error small', role: 'alert', hidden: true });
  const chatForm = el('form', { id: 'chat-form', class: 'chat-form', noValidate: true },
    [chatTo, chatInput, chatError, el('button', { id: 'chat-send', class: 'small-btn', type: 'submit', textContent: 'Send' })]);
  const chatPanel = el('aside', { id: 'chat-panel', class: 'chat-panel', hidden: true, 'aria-label': 'Chat' },
    [el('h2', { class: 'panel-heading', textContent: 'Chat' }), chatList, chatForm]);
  const handsList = el('ol', { id: 'hands-list', class: 'hands-list' });
  const handsPanel = el('div', { id: 'hands-queue', class: 'hands-queue', hidden: true, role: 'region', 'aria-label': 'Raised hands' },
    [el('span', { class: 'hands-title' }, [icon('hand'), 'Raised hands']), handsList]);
  const reactionLayer = el('div', { id: 'reaction-layer', class: 'reaction-layer', 'aria-live': 'polite' });
  roomView.append(picker, chatPanel, handsPanel, reactionLayer);

  const send = (msg) => (bm.sendSignal ? bm.sendSignal(msg) : undefined);
  const isModerator = () => Boolean(bm.isModerator && bm.isModerator());
  const nameOf = (id) => {
    if (id === bm.participantId) return 'you';
    const p = bm.participants.get(id);
    return p && p.display_name ? p.display_name : id;
  };

  // ---- chat ----
  function showError(text) {
    chatError.textContent = text;
    chatError.hidden = !text;
  }

  function setUnread(count) {
    meeting.unread = count;
    chatBadge.textContent = count > 99 ? '99+' : String(count);
    chatBadge.hidden = count === 0;
  }

  function toggleChat(open = chatPanel.hidden) {
    chatPanel.hidden = !open;
    chatButton.setAttribute('aria-expanded', String(open));
    if (open) {
      setUnread(0);
      refreshRecipients();
      chatInput.focus();
      chatList.scrollTop = chatList.scrollHeight;
    }
  }

  function refreshRecipients() {
    const selected = chatTo.value;
    chatTo.replaceChildren(el('option', { value: '', textContent: 'Everyone' }));
    for (const [id, p] of bm.participants) {
      chatTo.append(el('option', { value: id, textContent: `${p.display_name || id} (private)` }));
    }
    chatTo.value = bm.participants.has(selected) ? selected : '';
  }

  function validMessage(m) {
    return m && typeof m.id === 'string' && typeof m.text === 'string' && typeof m.from === 'string'
      && Number.isFinite(m.sent_at_ms);
  }

  // Keeps messages in the bridge's send order; a message seen before (history again after a
  // reconnect) is not added twice. Returns whether it was new.
  function addMessage(m) {
    if (!validMessage(m) || meeting.messages.some((x) => x.id === m.id)) return false;
    const after = (x) => x.sent_at_ms > m.sent_at_ms || (x.sent_at_ms === m.sent_at_ms && x.id > m.id);
    const at = meeting.messages.findIndex(after);
    if (at === -1) meeting.messages.push(m);
    else meeting.messages.splice(at, 0, m);
    if (meeting.messages.length > CHAT_SHOWN_MAX) meeting.messages.shift();
    return true;
  }

  function renderChat() {
    const atBottom = chatList.scrollHeight - chatList.scrollTop - chatList.clientHeight < 40;
    chatList.replaceChildren(...meeting.messages.map(renderMessage));
    if (atBottom) chatList.scrollTop = chatList.scrollHeight;
  }

  function renderMessage(m) {
    const time = new Date(m.sent_at_ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    const who = m.from === bm.participantId ? 'You' : (m.from_name || m.from);
    const header = el('div', { class: 'chat-meta' }, [
      el('span', { class: 'chat-from', textContent: who }),
      el('time', { class: 'chat-time', dateTime: new Date(m.sent_at_ms).toISOString(), textContent: time }),
    ]);
    if (m.to) header.append(el('span', { class: 'chat-private', textContent: m.to === bm.participantId ? 'private to you' : `private to ${nameOf(m.to)}` }));
    if (!m.to && isModerator()) {
      header.append(el('button', { type: 'button', class: 'chat-delete', textContent: 'Delete', 'data-id': m.id, 'aria-label': 'Delete this message for everyone' }));
    }
    return el('li', { class: m.to ? 'chat-message private' : 'chat-message', 'data-id': m.id },
      [header, el('p', { class: 'chat-text', textContent: m.text })]);
  }

  chatButton.addEventListener('click', () => toggleChat());
  chatForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = chatInput.value;
    if (!text.trim()) return;
    const bytes = encoder.encode(text).length;
    if (bytes > CHAT_MAX_BYTES) {
      showError(`A message is at most ${CHAT_MAX_BYTES} bytes; this one is ${bytes}.`);
      return;
    }
    showError('');
    const msg = { type: 'chat', text };
    if (chatTo.value) msg.to = chatTo.value;
    send(msg);
    chatInput.value = '';
  });
  chatInput.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) {
      ev.preventDefault();
      chatForm.requestSubmit();
    }
  });
  chatList.addEventListener('click', (ev) => {
    const button = ev.target.closest('.chat-delete');
    if (button) send({ type: 'delete_chat', id: button.dataset.id });
  });

  // ---- raised hands ----
  function refreshHands() {
    const hands = [];
    for (const [id, p] of bm.participants) {
      if (Number.isFinite(p.hand_raised_at_ms)) hands.push({ id, name: p.display_name || id, at: p.hand_raised_at_ms });
    }
    if (Number.isFinite(meeting.myHandRaisedAt) && bm.participantId) {
      hands.push({ id: bm.participantId, name: 'You', at: meeting.myHandRaisedAt });
    }
    hands.sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    meeting.hands = hands;
    handsList.replaceChildren(...hands.map((h) => {
      const item = el('li', { class: 'hand', 'data-id': h.id }, [el('span', { class: 'hand-name', textContent: h.name })]);
      if (h.id === bm.participantId || isModerator()) {
        item.append(el('button', { type: 'button', class: 'hand-lower', textContent: 'Lower', 'data-id': h.id }));
      }
      return item;
    }));
    handsPanel.hidden = hands.length === 0;
    const raised = Number.isFinite(meeting.myHandRaisedAt);
    handButton.setAttribute('aria-pressed', String(raised));
    handButton.classList.toggle('active', raised);
    handButton.querySelector('.ctl-label').textContent = raised ? 'Lower hand' : 'Raise hand';
  }

  handButton.addEventListener('click', () => {
    send(Number.isFinite(meeting.myHandRaisedAt) ? { type: 'lower_hand' } : { type: 'raise_hand' });
  });
  handsList.addEventListener('click', (ev) => {
    const button = ev.target.closest('.hand-lower');
    if (!button) return;
    const id = button.dataset.id;
    send(id === bm.participantId ? { type: 'lower_hand' } : { type: 'lower_hand', participant: id });
  });

  // ---- reactions ----
  reactButton.addEventListener('click', () => {
    picker.hidden = !picker.hidden;
    reactButton.setAttribute('aria-expanded', String(!picker.hidden));
  });
  picker.addEventListener('click', (ev) => {
    const button = ev.target.closest('.reaction-choice');
    if (!button) return;
    send({ type: 'react', reaction: button.dataset.reaction });
    picker.hidden = true;
    reactButton.setAttribute('aria-expanded', 'false');
  });

  function showReaction(from, reaction) {
    if (!REACTIONS.includes(reaction)) return;
    meeting.reactions.push({ from, reaction });
    if (meeting.reactions.length > REACTIONS_SHOWN_MAX) meeting.reactions.shift();
    if (reactionLayer.childElementCount >= REACTIONS_SHOWN_MAX) reactionLayer.firstElementChild.remove();
    const bubble = el('div', { class: 'reaction-bubble' }, [
      el('span', { class: 'reaction-emoji', textContent: reaction }),
      el('span', { class: 'reaction-name', textContent: from === bm.participantId ? 'You' : nameOf(from) }),
    ]);
    bubble.style.left = `${10 + Math.random() * 70}%`;
    reactionLayer.append(bubble);
    setTimeout(() => bubble.remove(), REACTION_SHOW_MS);
  }

  // ---- signaling, handed over by app.js after its own handling ----
  function onMessage(msg) {
    switch (msg.type) {
      case 'welcome':
        // A new session: the hand starts lowered; history follows in `chat_history`.
        meeting.myHandRaisedAt = null;
        refreshHands();
        refreshRecipients();
        renderChat();
        break;
      case 'chat_history':
        if (Array.isArray(msg.messages)) msg.messages.forEach(addMessage);
        renderChat();
        break;
      case 'chat':
        if (addMessage(msg.message)) {
          renderChat();
          if (msg.message.from !== bm.participantId && chatPanel.hidden) setUnread(meeting.unread + 1);
        }
        break;
      case 'chat_deleted':
        meeting.messages = meeting.messages.filter((m) => m.id !== msg.id);
        renderChat();
        break;
      case 'reaction': showReaction(msg.participant_id, msg.reaction); break;
      case 'participant_updated':
        if (msg.participant && msg.participant.id === bm.participantId) {
          meeting.myHandRaisedAt = Number.isFinite(msg.participant.hand_raised_at_ms) ? msg.participant.hand_raised_at_ms : null;
        }
        refreshHands();
        if (!chatPanel.hidden) refreshRecipients();
        break;
      case 'participant_joined':
      case 'participant_left':
        refreshHands();
        if (!chatPanel.hidden) refreshRecipients();
        break;
      case 'error':
        if (typeof msg.message === 'string') {
          meeting.errors.push(msg.message);
          if (meeting.errors.length > 20) meeting.errors.shift();
          if (!chatPanel.hidden) showError(msg.message);
        }
        break;
      default: break;
    }
  }

  window.bridgemeshMeeting = { onMessage };
})();
