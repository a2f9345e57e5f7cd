// bridgemesh web client: recording on the bridge (docs/recording.md).
// Loaded after app.js, which hands every signaling message to `window.bridgemeshRecording.onMessage`
// and lends `bridgemesh.sendSignal` and `bridgemesh.isModerator`. Every page shows the indicator
// while the bridge says the room is recorded (`recording {active}`, sent after `welcome` to late
// joiners too); moderators get a button to start and stop it. The page never decides it alone:
// the indicator follows the bridge's word, not the button.
(() => {
  'use strict';

  const bm = window.bridgemesh;
  if (!bm) return;

  // Test hooks: automated browser tests read these; keep the field names stable.
  const recording = {
    active: false, // the bridge says the room is being recorded
    changes: 0, // `recording` messages received
    encrypted: false, // the room is end-to-end encrypted: the recording holds ciphertext
  };
  bm.recording = recording;

  const roomView = document.getElementById('room-view');
  const controls = roomView && roomView.querySelector('.controls');
  const header = roomView && roomView.querySelector('.room-header');
  const leaveButton = document.getElementById('leave-button');
  if (!roomView || !controls || !header) return;

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

  const indicator = el('span', {
    id: 'recording-indicator', class: 'recording-indicator', hidden: true, role: 'status',
    title: 'This meeting is being recorded',
  }, [el('span', { class: 'recording-dot', 'aria-hidden': 'true' })]);
  const indicatorText = document.createTextNode('Recording');
  indicator.append(indicatorText);
  const title = document.getElementById('room-title');
  if (title && title.nextSibling) header.insertBefore(indicator, title.nextSibling);
  else header.append(indicator);

  const label = el('span', { class: 'ctl-label', textContent: 'Record' });
  const button = el('button', {
    id: 'record-button', class: 'ctl', type: 'button', hidden: true, 'aria-pressed': 'false',
    title: 'Record this meeting on the server',
  }, [el('span', { class: 'recording-dot', 'aria-hidden': 'true' }), label]);
  controls.insertBefore(button, leaveButton);

  const isModerator = () => Boolean(bm.isModerator && bm.isModerator());

  function render() {
    indicator.hidden = !recording.active;
    // The bridge records what it forwards: with end-to-end encryption on, that is ciphertext.
    indicatorText.textContent = recording.encrypted ? 'Recording (encrypted: ciphertext only)' : 'Recording';
    indicator.title = recording.encrypted
      ? 'This meeting is being recorded, but it is end-to-end encrypted: the recording holds ciphertext that no player can show'
      : 'This meeting is being recorded';
    button.hidden = !isModerator();
    button.classList.toggle('off', recording.active);
    button.setAttribute('aria-pressed', String(recording.active));
    label.textContent = recording.active ? 'Stop recording' : 'Record';
  }

  button.addEventListener('click', () => {
    if (!isModerator() || !bm.sendSignal) return;
    bm.sendSignal({ type: recording.active ? 'stop_recording' : 'start_recording' });
  });

  function onMessage(msg) {
    switch (msg.type) {
      case 'welcome':
        // A new session: the bridge says `recording` and `e2ee` right after if they are on.
        recording.active = false;
        recording.encrypted = false;
        break;
      case 'recording':
        recording.active = msg.active === true;
        recording.changes += 1;
        break;
      case 'e2ee':
        recording.encrypted = msg.required === true;
        break;
      default:
        break;
    }
    render();
  }

  window.bridgemeshRecording = { onMessage };
  render();
})();
