// Joining a CVI meeting from this browser (fedge, issue 20): camera and
// microphone to the gateway over WebRTC, the meeting's audio and video
// back. Plain script, no build step, no third-party code.
(function () {
  'use strict';
  var box = document.getElementById('join');
  if (!box) { return; }
  var meeting = box.dataset.meeting;
  var token = box.dataset.token;
  var nameInput = document.getElementById('join-name');
  var joinButton = document.getElementById('join-button');
  var leaveButton = document.getElementById('leave-button');
  var status = document.getElementById('join-status');
  var localVideo = document.getElementById('join-local');
  var remoteVideo = document.getElementById('join-remote');
  var pc = null;
  var stream = null;
  var resource = null;
  var poll = null;

  function say(text) { status.textContent = text; }

  function stop(text, state) {
    if (poll) { clearInterval(poll); poll = null; }
    if (pc) { pc.close(); pc = null; }
    if (stream) { stream.getTracks().forEach(function (t) { t.stop(); }); stream = null; }
    resource = null;
    joinButton.disabled = true;
    leaveButton.disabled = true;
    box.dataset.call = state;
    say(text + ' Reload the page to join again.');
  }

  if (!window.RTCPeerConnection || !navigator.mediaDevices) {
    joinButton.disabled = true;
    say('This browser cannot join video calls.');
    return;
  }

  async function check() {
    if (!resource) { return; }
    try {
      var r = await fetch(resource, { cache: 'no-store' });
      if (r.status === 404) { stop('The call ended.', 'ended'); return; }
      var j = await r.json();
      if (j.state === 'ended') { stop('The call ended: ' + j.reason + '.', 'ended'); }
    } catch (e) { /* try again at the next tick */ }
  }

  joinButton.addEventListener('click', async function () {
    joinButton.disabled = true;
    box.dataset.call = 'joining';
    try {
      say('Allow this page to use your camera and microphone.');
      stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 1280, height: 720 } });
      localVideo.srcObject = stream;
      pc = new RTCPeerConnection();
      stream.getTracks().forEach(function (t) {
        pc.addTransceiver(t, { direction: 'sendrecv', streams: [stream] });
      });
      var inbound = new MediaStream();
      pc.ontrack = function (e) { inbound.addTrack(e.track); remoteVideo.srcObject = inbound; };
      window.fedgeCall = pc;
      await pc.setLocalDescription(await pc.createOffer());
      say('Joining the meeting…');
      var url = '/cvi/' + encodeURIComponent(meeting) + '/join?token=' + encodeURIComponent(token) +
        '&name=' + encodeURIComponent(nameInput.value);
      var r = await fetch(url, {
        method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp
      });
      var text = await r.text();
      window.fedgeAnswer = text;
      if (r.status !== 201) { stop('Not joined: ' + text.trim(), 'refused'); return; }
      resource = r.headers.get('Location');
      await pc.setRemoteDescription({ type: 'answer', sdp: text });
      box.dataset.call = 'connected';
      leaveButton.disabled = false;
      say('In the meeting. You may wait in the lobby until you are admitted.');
      poll = setInterval(check, 1000);
    } catch (e) {
      stop('Not joined: ' + e.message, 'refused');
    }
  });

  leaveButton.addEventListener('click', async function () {
    var r = resource;
    stop('You left the meeting.', 'left');
    if (r) { try { await fetch(r, { method: 'DELETE' }); } catch (e) { /* gone */ } }
  });

  window.addEventListener('pagehide', function () {
    if (resource) { fetch(resource, { method: 'DELETE', keepalive: true }); }
  });
}());
