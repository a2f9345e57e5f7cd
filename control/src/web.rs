//! The browser client, compiled into the binary so `bridgemesh up` needs no files on disk.

pub const INDEX_HTML: &str = include_str!("../web/index.html");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file of the web client but the page itself: (path, content type, body). index.html
/// says the order the scripts load in.
pub const ASSETS: &[(&str, &str, &str)] = &[
    ("/style.css", CSS, include_str!("../web/style.css")),
    // Host login, invite links and the host-only messages (`docs/hosts.md`).
    ("/hosts.js", JS, include_str!("../web/hosts.js")),
    // Parts of the meeting that app.js builds with what they read (loaded before it).
    ("/tiles.js", JS, include_str!("../web/tiles.js")),
    ("/local-media.js", JS, include_str!("../web/local-media.js")),
    ("/moderation.js", JS, include_str!("../web/moderation.js")),
    ("/session.js", JS, include_str!("../web/session.js")),
    ("/lobby.js", JS, include_str!("../web/lobby.js")),
    ("/app.js", JS, include_str!("../web/app.js")),
    // Chat, raised hands and reactions (loaded after `app.js`, as the rest).
    ("/meeting.js", JS, include_str!("../web/meeting.js")),
    ("/meeting.css", CSS, include_str!("../web/meeting.css")),
    ("/simulcast.js", JS, include_str!("../web/simulcast.js")),
    // End-to-end encryption (`docs/e2ee.md`): the page's part, the frame format and keys (page,
    // worker and node's tests), and the worker that transforms every frame.
    ("/e2ee.js", JS, include_str!("../web/e2ee.js")),
    ("/e2ee.css", CSS, include_str!("../web/e2ee.css")),
    ("/sframe.js", JS, include_str!("../web/sframe.js")),
    ("/e2ee-worker.js", JS, include_str!("../web/e2ee-worker.js")),
    // The recording indicator and the moderators' record button.
    ("/recording.js", JS, include_str!("../web/recording.js")),
    ("/recording.css", CSS, include_str!("../web/recording.css")),
];
