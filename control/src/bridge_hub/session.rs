//! One bridge's session task: the socket both ways, the engine deciding.

use super::*;

impl BridgeHub {
    /// Serves one bridge's session until it ends. `authenticated` is the bridge the connection's
    /// certificate names: the session may register that bridge and no other.
    pub async fn serve(self: Arc<Self>, socket: WebSocket, authenticated: BridgeId) {
        let (mut sink, mut stream) = socket.split();
        let (route, mut outgoing) = mpsc::channel(TO_BRIDGE_QUEUE_MAX);
        let session = {
            let mut inner = lock(&self);
            let session = inner.engine.open_session();
            inner.routes.insert(session, route);
            session
        };
        let first = match tokio::time::timeout(REGISTER_TIMEOUT, next_message(&mut stream)).await {
            Ok(Some(Ok(message))) => message,
            // Not a message, or none in time: the engine refuses anything but `register`.
            _ => BridgeToControl::Heartbeat {
                load: Default::default(),
            },
        };
        self.sync_leadership();
        self.drive(|engine, now, _| engine.handle_register(now, session, &authenticated, first));
        // Nothing is read until the registration is decided, so the bridge's events that follow
        // its `register` are queued behind it.
        let mut registered = false;
        loop {
            tokio::select! {
                out = outgoing.recv() => {
                    let Some(out) = out else { break };
                    let (messages, last) = match out {
                        ToSocket::Message(message) => (vec![message], false),
                        ToSocket::Batch(messages) => {
                            registered = true;
                            (messages, false)
                        }
                        ToSocket::Close(last) => (last.into_iter().collect(), true),
                    };
                    if send_all(&mut sink, &messages).await.is_err() || last {
                        break;
                    }
                }
                incoming = next_message(&mut stream), if registered => match incoming {
                    Some(Ok(message)) => {
                        self.drive(|engine, now, _| engine.handle_message(now, session, message));
                    }
                    Some(Err(err)) => {
                        tracing::warn!(%authenticated, %err, "bad message on a bridge session; closing it");
                        let _ = send(&mut sink, &refused("protocol_error", &err)).await;
                        break;
                    }
                    None => break,
                },
            }
        }
        lock(&self).routes.remove(&session);
        self.drive(|engine, now, _| engine.handle_session_closed(now, session));
        self.wake.notify_one();
        let _ = sink.close().await;
    }
}

/// The session URL of the control node whose API listens at `addr` (`host:port`).
pub fn session_url(addr: &str) -> String {
    format!(
        "wss://{}{BRIDGE_SESSION_PATH}",
        bridgemesh_pki::client::authority(addr)
    )
}

fn refused(code: &str, message: &str) -> ControlToBridge {
    ControlToBridge::Refused {
        code: code.into(),
        message: message.into(),
    }
}

async fn send_all(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    messages: &[ControlToBridge],
) -> Result<(), axum::Error> {
    for message in messages {
        send(sink, message).await?;
    }
    Ok(())
}

async fn send(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    message: &ControlToBridge,
) -> Result<(), axum::Error> {
    let text = serde_json::to_string(message).expect("control messages serialize");
    sink.send(Message::Text(text.into())).await
}

/// The next bridge message; `None` when the socket ended, `Some(Err)` for a frame that is not one.
async fn next_message(
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
) -> Option<Result<BridgeToControl, String>> {
    loop {
        match stream.next().await? {
            Ok(Message::Text(text)) => {
                return Some(
                    serde_json::from_str(text.as_str()).map_err(|err| format!("not a bridge message: {err}")),
                );
            }
            Ok(Message::Binary(_)) => return Some(Err("binary frame on a bridge session".into())),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}
