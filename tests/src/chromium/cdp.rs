//! The DevTools protocol connection: requests and their answers, events routed to their page,
//! and the text of errors, exceptions and console arguments.

use super::*;

pub(super) struct Pending {
    pub(super) waiting: HashMap<u64, oneshot::Sender<Reply>>,
    // Lives under the same lock as `waiting` so a request can never be registered after the
    // reader has drained the table on its way out (it would otherwise wait the full timeout).
    pub(super) closed: Option<String>,
}

pub(super) struct Shared {
    pub(super) pending: Mutex<Pending>,
    pub(super) consoles: Mutex<HashMap<String, ConsoleRing>>,
}

impl Shared {
    pub(super) fn close(&self, reason: String) {
        let mut pending = lock(&self.pending);
        if pending.closed.is_none() {
            pending.closed = Some(reason.clone());
        }
        for (_, tx) in pending.waiting.drain() {
            let _ = tx.send(Err(format!("browser connection closed: {reason}")));
        }
    }
}

/// Request/response correlation over the single browser websocket.
pub(super) struct Connection {
    pub(super) next_id: AtomicU64,
    pub(super) outgoing: mpsc::Sender<Message>,
    pub(super) shared: Arc<Shared>,
}

impl Connection {
    pub(super) fn start(
        ws: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    ) -> (Arc<Connection>, [JoinHandle<()>; 2]) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                waiting: HashMap::new(),
                closed: None,
            }),
            consoles: Mutex::new(HashMap::new()),
        });
        let (mut sink, mut stream) = ws.split();
        let (outgoing, mut rx) = mpsc::channel::<Message>(OUTGOING_QUEUE);

        let writer_shared = shared.clone();
        let writer = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                if let Err(e) = sink.send(msg).await {
                    writer_shared.close(format!("websocket write failed: {e}"));
                    return;
                }
            }
        });

        let reader_shared = shared.clone();
        let reader = tokio::spawn(async move {
            // Also fires if the task is aborted, so no request is left waiting for a reply that
            // can no longer arrive.
            let guard = CloseOnDrop(reader_shared.clone(), "browser shut down".to_owned());
            let reason = loop {
                match stream.next().await {
                    Some(Ok(Message::Text(text))) => dispatch(&reader_shared, text.as_str()),
                    Some(Ok(Message::Close(frame))) => {
                        break format!("websocket closed by browser: {frame:?}");
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break format!("websocket read failed: {e}"),
                    None => break "websocket ended".to_owned(),
                }
            };
            reader_shared.close(reason);
            drop(guard);
        });

        let conn = Arc::new(Connection {
            next_id: AtomicU64::new(1),
            outgoing,
            shared,
        });
        (conn, [writer, reader])
    }

    pub(super) fn closed_reason(&self) -> Option<String> {
        lock(&self.shared.pending).closed.clone()
    }

    pub(super) async fn call(
        &self,
        session_id: Option<&str>,
        method: &str,
        params: Value,
    ) -> anyhow::Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.shared.pending);
            if let Some(reason) = &pending.closed {
                bail!("{method}: browser connection closed: {reason}");
            }
            pending.waiting.insert(id, tx);
        }
        // Removes the table entry however this future ends, including when a caller's own
        // timeout cancels it.
        let _entry = PendingEntry {
            shared: &self.shared,
            id,
        };

        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(session_id) = session_id {
            msg["sessionId"] = Value::String(session_id.to_owned());
        }
        let exchange = async {
            self.outgoing
                .send(Message::text(msg.to_string()))
                .await
                .map_err(|_| "browser connection closed".to_owned())?;
            rx.await.map_err(|_| "browser connection closed".to_owned())?
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(anyhow!("{method}: {e}")),
            Err(_) => Err(anyhow!(
                "{method}: no reply from browser within {REQUEST_TIMEOUT:?}"
            )),
        }
    }
}

pub(super) struct PendingEntry<'a> {
    pub(super) shared: &'a Shared,
    pub(super) id: u64,
}

impl Drop for PendingEntry<'_> {
    fn drop(&mut self) {
        lock(&self.shared.pending).waiting.remove(&self.id);
    }
}

pub(super) struct CloseOnDrop(Arc<Shared>, String);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close(std::mem::take(&mut self.1));
    }
}

pub(super) fn dispatch(shared: &Shared, text: &str) {
    let msg: Value = match serde_json::from_str(text) {
        Ok(msg) => msg,
        Err(e) => {
            tracing::warn!("unparseable CDP message ({e}): {}", abbreviate(text));
            return;
        }
    };
    if let Some(id) = msg.get("id").and_then(Value::as_u64) {
        let reply = match msg.get("error") {
            Some(err) => Err(cdp_error_text(err)),
            None => Ok(msg.get("result").cloned().unwrap_or(Value::Null)),
        };
        if let Some(tx) = lock(&shared.pending).waiting.remove(&id) {
            let _ = tx.send(reply);
        }
        return;
    }
    let (Some(method), Some(session_id)) = (
        msg.get("method").and_then(Value::as_str),
        msg.get("sessionId").and_then(Value::as_str),
    ) else {
        return;
    };
    let params = msg.get("params").unwrap_or(&Value::Null);
    let line = match method {
        "Runtime.consoleAPICalled" => {
            let kind = params.get("type").and_then(Value::as_str).unwrap_or("log");
            let args: Vec<String> = params
                .get("args")
                .and_then(Value::as_array)
                .map(|args| args.iter().map(remote_object_text).collect())
                .unwrap_or_default();
            format!("[console.{kind}] {}", args.join(" "))
        }
        "Runtime.exceptionThrown" => {
            let details = params.get("exceptionDetails").unwrap_or(&Value::Null);
            format!("[exception] {}", exception_text(details))
        }
        "Log.entryAdded" => {
            let entry = params.get("entry").unwrap_or(&Value::Null);
            let level = entry.get("level").and_then(Value::as_str).unwrap_or("info");
            let text = entry.get("text").and_then(Value::as_str).unwrap_or("");
            match entry.get("url").and_then(Value::as_str) {
                Some(url) if !url.is_empty() => format!("[log.{level}] {text} ({url})"),
                _ => format!("[log.{level}] {text}"),
            }
        }
        "Inspector.targetCrashed" => "[target crashed]".to_owned(),
        _ => return,
    };
    let ring = lock(&shared.consoles).get(session_id).cloned();
    if let Some(ring) = ring {
        push_bounded(&mut lock(&ring), truncate(line, MAX_LINE_BYTES), CONSOLE_RING);
    }
}

pub(super) fn cdp_error_text(err: &Value) -> String {
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("unknown error");
    let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
    match err.get("data").and_then(Value::as_str) {
        Some(data) => format!("CDP error {code}: {message} ({data})"),
        None => format!("CDP error {code}: {message}"),
    }
}

pub(super) fn exception_text(details: &Value) -> String {
    let text = details.get("text").and_then(Value::as_str).unwrap_or("exception");
    let Some(exception) = details.get("exception") else {
        return text.to_owned();
    };
    let desc = remote_object_text(exception);
    // Rejections arrive as text "Uncaught (in promise) TypeError: x" plus the same message
    // again at the head of the stack; keep the stack without repeating the message.
    let head = desc.lines().next().unwrap_or_default();
    let prefix = text.strip_suffix(head).unwrap_or(text).trim_end();
    format!("{prefix} {desc}")
}

/// Renders a CDP `RemoteObject` roughly the way DevTools' console would.
pub(super) fn remote_object_text(obj: &Value) -> String {
    // Thrown Errors carry their stack in `description`, which beats the bare `value`.
    if let Some(desc) = obj.get("description").and_then(Value::as_str)
        && obj.get("subtype").and_then(Value::as_str) == Some("error")
    {
        return desc.to_owned();
    }
    match obj.get("value") {
        Some(Value::String(s)) => return s.clone(),
        Some(other) => return other.to_string(),
        None => {}
    }
    if let Some(v) = obj.get("unserializableValue").and_then(Value::as_str) {
        return v.to_owned();
    }
    if let Some(desc) = obj.get("description").and_then(Value::as_str) {
        return desc.to_owned();
    }
    obj.get("type")
        .and_then(Value::as_str)
        .unwrap_or("undefined")
        .to_owned()
}
